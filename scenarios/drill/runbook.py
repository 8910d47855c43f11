"""The runbook's drill sections, generated from the drills: prose and drill cannot drift.

Each drill is rendered between `<!-- drill:NAME -->` and `<!-- /drill:NAME -->` in
docs/runbook.md: its steps in order, each operator step with the exact command and the
check that proves it. `write_runbook` (`stormproof drill --write-runbook`) regenerates
them; `check_runbook` (a test, and `--check-runbook`) lists every difference.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scenarios.drill.spec import Drill, Step

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"
HEADING = "## 6. Drills: the procedures, executed"
INTRO = (
    "Each procedure below is executed by `stormproof drill NAME` (every one: "
    "`stormproof drill --all --quick`) against the reference or, with `--target-cmd`, "
    "your service. Steps marked *incident* are what the drill does to the system; the "
    "others are yours, with the check that proves each worked. These sections are "
    "generated from `scenarios/drill/drills.toml` (`stormproof drill --write-runbook`); "
    "a test fails when they differ.\n\n"
    "Variables: `$URL` the instance, `$AUTH` the header "
    "`Authorization: Bearer $ADMIN_TOKEN`, `$DATABASE_URL` the audit database, "
    "`$BACKUP_DIR` the instance's `AUDITORIA_BACKUP_PATH`, `$ALERTS_URL` your alert "
    "receiver (the harness runs one that answers `GET /alerts/NAME`). In checks, "
    "`{ACKED}` is the number of audit events acknowledged during the incident and "
    "`{INTACT}` those whose journal record the drill did not destroy."
)
_BLOCK = re.compile(r"<!-- drill:(?P<name>[\w-]+) -->\n.*?<!-- /drill:(?P=name) -->\n", re.S)


def describe(expect: Mapping[str, Any], until_s: float) -> str:
    """The check, in words (markdown)."""
    parts = []
    if "exit" in expect:
        parts.append(f"exit code {expect['exit']}")
    if "stdout" in expect:
        parts.append(f"the output is `{expect['stdout']}`")
    for text in expect.get("stdout_has", []):
        parts.append(f"the output contains `{text}`")
    for path, value in dict(expect.get("json", {})).items():
        parts.append(f"`{path}` is `{json.dumps(value)}`")
    for path, least in dict(expect.get("json_min", {})).items():
        parts.append(f"`{path}` is at least {least}")
    if expect.get("audit") == "exactly-once":
        parts.append("every acknowledged audit event is in `audit_log` exactly once")
    text = "; ".join(parts)
    if until_s:
        text += f" (repeat for up to {until_s:g} s)"
    return text


def render_step(number: int, step: Step) -> str:
    """One numbered step."""
    if step.is_incident:
        return f"{number}. *Incident*: {step.say}.\n"
    lines = [f"{number}. {step.say}:", "   ```", f"   {step.run}", "   ```"]
    lines.append(f"   Check: {describe(step.expect, step.until_s)}.")
    if step.why:
        lines.append(f"   ({step.why})")
    return "\n".join(lines) + "\n"


def render_drill(drill: Drill) -> str:
    """The drill's section, markers included."""
    body = [
        f"<!-- drill:{drill.name} -->",
        f"### {drill.title} (`stormproof drill {drill.name}`)",
        "",
        f"Proves: {drill.proves}",
        "",
    ]
    text = "\n".join(body) + "\n"
    text += "".join(render_step(n, s) for n, s in enumerate(drill.steps, 1))
    return text + f"<!-- /drill:{drill.name} -->\n"


def check_runbook(drills: Sequence[Drill], path: Path = RUNBOOK) -> list[str]:
    """Every difference between the runbook's drill sections and the drills (one line each)."""
    try:
        text = path.read_text()
    except OSError as exc:
        return [f"{path}: {exc.strerror}"]
    found = {m.group("name"): m.group(0) for m in _BLOCK.finditer(text)}
    problems = []
    for drill in drills:
        if drill.name not in found:
            problems.append(f"{path.name}: no section for drill {drill.name!r}")
        elif found[drill.name] != render_drill(drill):
            problems.append(
                f"{path.name}: the section of drill {drill.name!r} differs from drills.toml "
                "(run `stormproof drill --write-runbook`)"
            )
    names = {d.name for d in drills}
    problems.extend(
        f"{path.name}: section for unknown drill {name!r}" for name in found if name not in names
    )
    return problems


def write_runbook(drills: Sequence[Drill], path: Path = RUNBOOK) -> None:
    """Replace the drill sections (the whole generated chapter) with fresh ones."""
    text = path.read_text()
    chapter = HEADING + "\n\n" + INTRO + "\n\n" + "\n".join(render_drill(d) for d in drills)
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + chapter
    else:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + chapter + (text[end:] if end >= 0 else "")
    path.write_text(text)
