"""An operator's step: run the runbook's command in a shell, judge its expectation.

The command runs with bash and the variables the runbook uses: `$URL` (the instance),
`$ADMIN_TOKEN`, `$AUTH` (the admin header), `$DATABASE_URL` (the audit database),
`$BACKUP_DIR` (the instance's AUDITORIA_BACKUP_PATH), `$ALERTS_URL` (the webhook
receiver), `$AUDITORIA_HMAC_KEY` when the drill's target has one; `stormproof` is on PATH.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenarios.drill.incident import DrillState
from scenarios.drill.spec import Step
from scenarios.target import inherited_env
from scenarios.truth import read_truth

COMMAND_TIMEOUT_S = 120.0
RETRY_EVERY_S = 0.5


@dataclass(frozen=True)
class Outcome:
    """A command's result and the verdict on it."""

    passed: bool
    summary: str
    exit_code: int | None
    output: str
    attempts: int


def command_env(state: DrillState, target_env: Mapping[str, str]) -> dict[str, str]:
    """The operator's shell environment for this drill."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **inherited_env(),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "URL": state.url,
        "ADMIN_TOKEN": state.targets.admin_token,
        "AUTH": f"Authorization: Bearer {state.targets.admin_token}",
        "DATABASE_URL": state.stack.urls.database_direct_url,
        "BACKUP_DIR": str(state.backup_dir),
        "ALERTS_URL": state.receiver.url,
    }
    if "AUDITORIA_HMAC_KEY" in target_env:
        env["AUDITORIA_HMAC_KEY"] = target_env["AUDITORIA_HMAC_KEY"]
    return env


async def run_step(state: DrillState, step: Step, env: Mapping[str, str]) -> Outcome:
    """Run the step's command (again, until `until_s`) until its expectation holds."""
    deadline = time.monotonic() + step.until_s
    attempts = 0
    while True:
        attempts += 1
        code, output = await asyncio.to_thread(_shell, step.run, env)
        problem = await judge(state, step.expect, code, output)
        if problem is None:
            return Outcome(True, _brief(output), code, output, attempts)
        if time.monotonic() >= deadline:
            return Outcome(False, problem, code, output, attempts)
        await asyncio.sleep(RETRY_EVERY_S)


def _shell(command: str, env: Mapping[str, str]) -> tuple[int | None, str]:
    try:
        done = subprocess.run(
            ["bash", "-c", command],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"(no answer within {COMMAND_TIMEOUT_S:.0f}s)"
    return done.returncode, (done.stdout + done.stderr).strip()


def variables(state: DrillState) -> dict[str, int]:
    """What `{ACKED}` and `{INTACT}` stand for in expectations."""
    return {"ACKED": len(state.acked), "INTACT": len(set(state.acked) - state.corrupted)}


def expand(value: Any, state: DrillState) -> Any:
    """`value` with `{ACKED}`/`{INTACT}` substituted (strings only)."""
    if not isinstance(value, str) or "{" not in value:
        return value
    names = variables(state)
    if value.startswith("{") and value.endswith("}") and value[1:-1] in names:
        return names[value[1:-1]]  # a number alone stays a number (for JSON fields)
    return value.format(**names)


async def judge(
    state: DrillState, expect: Mapping[str, Any], code: int | None, output: str
) -> str | None:
    """None when every expectation holds, else every reason why not (one line)."""
    problems = _output_problems(state, expect, code, output)
    if expect.get("audit") == "exactly-once":
        audit = await asyncio.to_thread(audit_problem, state)
        if audit is not None:
            problems.append(audit)
    return "; ".join(problems) if problems else None


def _output_problems(
    state: DrillState, expect: Mapping[str, Any], code: int | None, output: str
) -> list[str]:
    problems = []
    if "exit" in expect and code != int(expect["exit"]):
        problems.append(f"exit code {code}, expected {expect['exit']}: {_brief(output)}")
    if "stdout" in expect:
        wanted = str(expand(expect["stdout"], state))
        if output.strip() != wanted:
            problems.append(f"output {_brief(output)!r}, expected {wanted!r}")
    for text in expect.get("stdout_has", []):
        wanted = str(expand(text, state))
        if wanted not in output:
            problems.append(f"output lacks {wanted!r}: {_brief(output)}")
    if "json" in expect or "json_min" in expect:
        try:
            document = json.loads(output)
        except ValueError:
            return [*problems, f"output is not JSON: {_brief(output)}"]
        for path, wanted in dict(expect.get("json", {})).items():
            got = _field(document, path)
            wanted = expand(wanted, state)
            if got != wanted:
                problems.append(f"{path} = {got!r}, expected {wanted!r}")
        for path, least in dict(expect.get("json_min", {})).items():
            got = _field(document, path)
            least = int(expand(least, state))
            if not isinstance(got, int | float) or got < least:
                problems.append(f"{path} = {got!r}, expected >= {least}")
    return problems


def audit_problem(state: DrillState) -> str | None:
    """Every acknowledged event (but those the drill destroyed) in audit_log exactly once,
    and no row for an event nobody sent; None when so."""
    rows = read_truth(state.stack)
    expected = set(state.acked) - state.corrupted
    lost = sorted(e for e in expected if rows.get(e, 0) == 0)
    doubled = sorted(e for e in expected if rows.get(e, 0) > 1)
    unexpected = sorted(e for e in rows if e not in state.sent)
    if not expected:
        return "insufficient evidence: no acknowledged event to look for"
    if lost or doubled or unexpected:
        return (
            f"{len(lost)} acknowledged events lost, {len(doubled)} doubled, "
            f"{len(unexpected)} unexpected (of {len(expected)}; e.g. "
            f"{(lost + doubled + unexpected)[:3]})"
        )
    return None


def _field(document: Any, path: str) -> Any:
    value = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _brief(output: str, limit: int = 160) -> str:
    line = " | ".join(output.splitlines()[-3:])
    return line if len(line) <= limit else line[: limit - 3] + "..."
