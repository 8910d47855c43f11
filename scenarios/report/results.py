"""Scenario and run results, and their machine-readable forms: JSON and JUnit XML."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scenarios.checkers.base import CheckResult
from scenarios.history import JSON, FaultWindow
from scenarios.report.series import PlotSeries

RESULTS_FILE = "results.json"
SCHEMA_VERSION = 1
# Characters XML 1.0 cannot carry (ANSI escapes in logs are the usual culprits).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario's outcome: its checks' verdicts and what the report plots."""

    name: str
    description: str
    passed: bool
    checks: tuple[CheckResult, ...]
    wall_s: float
    fault_windows: tuple[FaultWindow, ...] = ()
    started_at: str = ""
    """ISO 8601 wall-clock time the scenario started."""
    run_dir: str = ""
    history_path: str = ""
    log_excerpt: str = ""
    series: PlotSeries | None = None
    error: str | None = None
    """Why the scenario could not run to its checks (then it did not pass)."""

    def __post_init__(self) -> None:
        if self.passed and (self.error is not None or any(not c.passed for c in self.checks)):
            raise ValueError(f"scenario {self.name!r} cannot pass with an error or failed check")

    @property
    def failed_checks(self) -> tuple[CheckResult, ...]:
        """The checks that failed."""
        return tuple(c for c in self.checks if not c.passed)

    @property
    def invalid(self) -> bool:
        """The baseline was not steady (the `steady-state` check failed): the run
        proves nothing either way."""
        return any(c.checker == "steady-state" and not c.passed for c in self.checks)

    @property
    def verdict(self) -> str:
        """PASS, FAIL, or INVALID (an unsteady baseline; not a pass either)."""
        if self.invalid:
            return "INVALID"
        return "PASS" if self.passed else "FAIL"

    def to_json(self) -> dict[str, JSON]:
        """The result as JSON (results.json)."""
        return {
            "name": self.name,
            "description": self.description,
            "passed": self.passed,
            "checks": [c.to_json() for c in self.checks],
            "wall_s": self.wall_s,
            "fault_windows": [w.to_json() for w in self.fault_windows],
            "started_at": self.started_at,
            "run_dir": self.run_dir,
            "history_path": self.history_path,
            "log_excerpt": self.log_excerpt,
            "series": None if self.series is None else self.series.to_json(),
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> ScenarioResult:
        """A result from its JSON form."""
        series = data.get("series")
        return cls(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            passed=bool(data["passed"]),
            checks=tuple(CheckResult.from_json(c) for c in data.get("checks", [])),
            wall_s=float(data.get("wall_s", 0.0)),
            fault_windows=tuple(FaultWindow.from_json(w) for w in data.get("fault_windows", [])),
            started_at=str(data.get("started_at", "")),
            run_dir=str(data.get("run_dir", "")),
            history_path=str(data.get("history_path", "")),
            log_excerpt=str(data.get("log_excerpt", "")),
            series=None if series is None else PlotSeries.from_json(series),
            error=None if data.get("error") is None else str(data["error"]),
        )


@dataclass(frozen=True)
class RunSummary:
    """Every scenario of one `stormproof run`."""

    scenarios: tuple[ScenarioResult, ...]
    passed: bool
    wall_s: float
    started_at: str = ""

    @classmethod
    def of(
        cls, scenarios: Sequence[ScenarioResult], wall_s: float, started_at: str = ""
    ) -> RunSummary:
        """A summary that passes iff there was a scenario and every one passed."""
        return cls(
            tuple(scenarios),
            bool(scenarios) and all(s.passed for s in scenarios),
            wall_s,
            started_at,
        )

    def to_json(self) -> dict[str, JSON]:
        """The summary as JSON (results.json, with its schema version)."""
        return {
            "stormproof_results": SCHEMA_VERSION,
            "passed": self.passed,
            "wall_s": self.wall_s,
            "started_at": self.started_at,
            "scenarios": [s.to_json() for s in self.scenarios],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> RunSummary:
        """A summary from its JSON form."""
        return cls(
            scenarios=tuple(ScenarioResult.from_json(s) for s in data.get("scenarios", [])),
            passed=bool(data["passed"]),
            wall_s=float(data.get("wall_s", 0.0)),
            started_at=str(data.get("started_at", "")),
        )


def write_results_json(run_dir: str | Path, summary: RunSummary) -> Path:
    """Write `run_dir/results.json` (atomically) and return its path."""
    path = Path(run_dir) / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_results_json(path: str | Path) -> RunSummary:
    """Read back what `write_results_json` wrote."""
    return RunSummary.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def xml_safe(text: str) -> str:
    """`text` without the characters XML 1.0 forbids."""
    return _XML_ILLEGAL.sub("\ufffd", text)


def write_junit_xml(path: str | Path, summary: RunSummary) -> Path:
    """JUnit XML: one testcase per scenario, one <failure> per failed check."""
    failures = sum(1 for s in summary.scenarios if s.error is None and not s.passed)
    errors = sum(1 for s in summary.scenarios if s.error is not None)
    counts = {
        "tests": str(len(summary.scenarios)),
        "failures": str(failures),
        "errors": str(errors),
        "time": f"{summary.wall_s:.3f}",
    }
    root = ET.Element("testsuites", {"name": "stormproof", **counts})
    suite = ET.SubElement(
        root, "testsuite", {"name": "stormproof.scenarios", **counts, "skipped": "0"}
    )
    if summary.started_at:
        suite.set("timestamp", summary.started_at)
    for result in summary.scenarios:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": "stormproof.scenarios",
                "name": xml_safe(result.name),
                "time": f"{result.wall_s:.3f}",
            },
        )
        props = ET.SubElement(case, "properties")
        for check in result.checks:
            ET.SubElement(
                props,
                "property",
                {
                    "name": xml_safe(f"check.{check.checker}"),
                    "value": xml_safe(f"{'pass' if check.passed else 'FAIL'}: {check.summary}"),
                },
            )
        if result.error is not None:
            err = ET.SubElement(
                case, "error", {"message": xml_safe(result.error), "type": "ScenarioError"}
            )
            err.text = xml_safe(result.error)
        for check in result.failed_checks:
            failure = ET.SubElement(
                case,
                "failure",
                {
                    "message": xml_safe(f"{check.checker}: {check.summary}"),
                    "type": "CheckFailed",
                },
            )
            failure.text = xml_safe(
                json.dumps(
                    {"details": check.details, "thresholds": check.thresholds},
                    indent=2,
                    default=str,
                )
            )
        if not result.passed and result.error is None and not result.failed_checks:
            ET.SubElement(
                case, "failure", {"message": "scenario did not pass", "type": "ScenarioFailed"}
            )
        if result.log_excerpt:
            ET.SubElement(case, "system-out").text = xml_safe(result.log_excerpt)
    ET.indent(root)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return out
