"""The property run's report: `property.json`, `junit.xml` and `report.html` in its dir.

Each failure carries its minimal schedule, the replay command and the shrinking steps
(original schedule first, minimal last); the HTML shows those steps as a table. One
self-contained file, no script, everything escaped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from scenarios.run.generate.search import Failure, SearchResult, SearchSettings


def failure_json(failure: Failure, replay_args: Sequence[str]) -> dict[str, Any]:
    """A failure as JSON data (the schedules in their replayable form)."""
    return {
        "flaky": failure.flaky,
        "why": failure.why,
        "where": failure.where,
        "runs": failure.runs,
        "minimal": failure.minimal.to_json(),
        "replay": failure.minimal.replay_command(replay_args),
        "steps": [
            {"schedule": s.schedule.to_json(), "describe": s.schedule.describe(), "why": s.why}
            for s in failure.steps
        ],
    }


def result_json(
    result: SearchResult, search: SearchSettings, replay_args: Sequence[str]
) -> dict[str, Any]:
    """The whole property run as JSON data."""
    return {
        "passed": result.passed,
        "seed": search.seed,
        "runs": result.runs,
        "rounds": result.rounds,
        "wall_s": round(result.wall_s, 1),
        "time_budget_s": search.time_budget_s,
        "failures": [failure_json(f, replay_args) for f in result.failures],
    }


def _junit(data: dict[str, Any]) -> bytes:
    failures = data["failures"]
    suite = ElementTree.Element(
        "testsuite",
        name="stormproof-property",
        tests=str(max(1, len(failures))),
        failures=str(len(failures)),
        time=str(data["wall_s"]),
    )
    if not failures:
        ElementTree.SubElement(suite, "testcase", classname="property", name="property")
    for number, failure in enumerate(failures, 1):
        case = ElementTree.SubElement(
            suite, "testcase", classname="property", name=f"failure-{number}"
        )
        kind = "flaky" if failure["flaky"] else "failed"
        node = ElementTree.SubElement(case, "failure", message=f"{kind}: {failure['why']}")
        node.text = f"minimal: {failure['steps'][-1]['describe']}\nreplay: {failure['replay']}"
    text: bytes = ElementTree.tostring(suite, encoding="utf-8", xml_declaration=True)
    return text


_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
    "code{white-space:pre-wrap;word-break:break-all}.fail{color:#b00}.pass{color:#070}"
)


def _html(data: dict[str, Any]) -> str:
    verdict = "passed" if data["passed"] else f"{len(data['failures'])} failure(s)"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>stormproof property</title>",
        f"<style>{_STYLE}</style></head><body><h1>Property run: {escape(verdict)}</h1>",
        f"<p>{data['runs']} run(s) in {data['rounds']} round(s), {data['wall_s']} s, "
        f"seed {data['seed']}.</p>",
    ]
    for number, failure in enumerate(data["failures"], 1):
        kind = "flaky" if failure["flaky"] else "failed"
        parts.append(f"<h2 class='fail'>Failure {number} ({kind})</h2>")
        parts.append(f"<p>{escape(failure['why'])}</p>")
        parts.append(f"<p>Replay: <code>{escape(failure['replay'])}</code></p>")
        parts.append("<h3>Shrinking steps (original &rarr; minimal)</h3><table>")
        parts.append("<tr><th>step</th><th>faults</th><th>schedule</th><th>why</th></tr>")
        for index, step in enumerate(failure["steps"]):
            label = "original" if index == 0 else str(index)
            if index == len(failure["steps"]) - 1:
                label = "minimal" if index else "original = minimal"
            parts.append(
                f"<tr><td>{escape(label)}</td><td>{len(step['schedule']['faults'])}</td>"
                f"<td><code>{escape(step['describe'])}</code></td>"
                f"<td>{escape(step['why'])}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_property_report(
    out_dir: Path, result: SearchResult, search: SearchSettings, replay_args: Sequence[str]
) -> Path:
    """Write property.json, junit.xml and report.html in `out_dir`; returns the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result_json(result, search, replay_args)
    (out_dir / "property.json").write_text(json.dumps(data, indent=2) + "\n")
    (out_dir / "junit.xml").write_bytes(_junit(data))
    html = out_dir / "report.html"
    html.write_text(_html(data))
    return html
