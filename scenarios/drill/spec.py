"""Drills as data: an incident, then the runbook's steps, each proven by an expectation.

`scenarios/drill/drills.toml` holds `[[drill]]` tables; each has `[[drill.step]]`s run in
order. A step is either part of the incident (done by the harness) or an operator's
command (run by a shell, as the runbook shows it) with the expectation that proves it:

    [[drill.step]]                       # the incident
    say = "Redis goes down"
    incident = { fault = "redis-down" }  # or heal / kill_target / start_target /
                                         # audit_events = N / corrupt_journal / wait_s /
                                         # sql = "..." (on the database, directly)
    [[drill.step]]                       # an operator's step
    say = "The breaker opens"
    run = "curl -s $URL/resilience"
    expect = { json = { "redis.circuitState" = "OPEN" } }
    until_s = 10                         # retried until it holds, at most 10 s

Expectations: `exit` (code), `json` (dotted field = value), `json_min` (field >= n),
`stdout` (trimmed output equals), `stdout_has` (substrings), `audit = "exactly-once"`
(every acknowledged event in audit_log once, nothing else). Strings may name `{ACKED}`
(events acknowledged so far) and `{INTACT}` (those minus the records the drill corrupted).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenarios.faults import FaultError, FaultSpec

DRILLS_FILE = Path(__file__).with_name("drills.toml")
INCIDENTS = (
    "fault",
    "heal",
    "kill_target",
    "start_target",
    "audit_events",
    "corrupt_journal",
    "wait_s",
    "sql",
)
EXPECTATIONS = ("exit", "json", "json_min", "stdout", "stdout_has", "audit")
STEP_FIELDS = {"say", "incident", "run", "expect", "until_s", "why"}
DRILL_FIELDS = {"name", "title", "proves", "target_env", "step"}


class DrillError(ValueError):
    """A drill file that is invalid (one line naming the drill and step)."""


@dataclass(frozen=True)
class Step:
    """One step: an incident action, or an operator command with its expectation."""

    say: str
    incident: Mapping[str, Any] = field(default_factory=dict)
    run: str = ""
    expect: Mapping[str, Any] = field(default_factory=dict)
    until_s: float = 0.0
    why: str = ""

    @property
    def is_incident(self) -> bool:
        """True for the harness's incident actions (not the operator's)."""
        return bool(self.incident)

    @property
    def fault(self) -> FaultSpec | None:
        """The fault this incident step applies, if any."""
        name = self.incident.get("fault")
        return FaultSpec.parse(str(name), self.incident.get("params")) if name else None


@dataclass(frozen=True)
class Drill:
    """An incident and the runbook's steps that recover from it."""

    name: str
    title: str
    proves: str
    steps: tuple[Step, ...]
    target_env: Mapping[str, str] = field(default_factory=dict)


def parse_step(raw: Mapping[str, Any], where: str) -> Step:
    """A validated step; DrillError naming `where` when bad."""
    unknown = set(raw) - STEP_FIELDS
    if unknown:
        raise DrillError(f"{where}: unknown field(s) {sorted(unknown)}")
    say = str(raw.get("say") or "")
    if not say:
        raise DrillError(f"{where}: every step needs `say` (the runbook's sentence)")
    incident = raw.get("incident") or {}
    run = str(raw.get("run") or "")
    expect = raw.get("expect") or {}
    if not isinstance(incident, Mapping) or not isinstance(expect, Mapping):
        raise DrillError(f"{where}: incident and expect must be tables")
    if bool(incident) == bool(run):
        raise DrillError(f"{where}: a step is either an incident or a `run` command")
    if incident:
        actions = set(incident) - {"params"}
        if len(actions) != 1 or not actions <= set(INCIDENTS):
            raise DrillError(f"{where}: incident must be one of {', '.join(INCIDENTS)}")
    if run and not expect:
        raise DrillError(f"{where}: an operator's command needs the expectation that proves it")
    bad = set(expect) - set(EXPECTATIONS)
    if bad:
        raise DrillError(f"{where}: unknown expectation(s) {sorted(bad)}")
    if "audit" in expect and expect["audit"] != "exactly-once":
        raise DrillError(f'{where}: audit expectation must be "exactly-once"')
    step = Step(
        say=say,
        incident=dict(incident),
        run=run,
        expect=dict(expect),
        until_s=float(raw.get("until_s", 0.0)),
        why=str(raw.get("why") or ""),
    )
    try:
        step.fault  # noqa: B018 (validates the fault's name and parameters)
    except (FaultError, ValueError) as exc:
        raise DrillError(f"{where}: {exc}") from exc
    if step.until_s < 0:
        raise DrillError(f"{where}: until_s must not be negative")
    return step


def parse_drill(raw: Mapping[str, Any]) -> Drill:
    """A validated drill from its TOML table."""
    name = str(raw.get("name") or "")
    if not name:
        raise DrillError("a drill without a name")
    unknown = set(raw) - DRILL_FIELDS
    if unknown:
        raise DrillError(f"drill {name!r}: unknown field(s) {sorted(unknown)}")
    steps_raw = raw.get("step") or []
    if not isinstance(steps_raw, list) or not steps_raw:
        raise DrillError(f"drill {name!r}: no steps")
    steps = tuple(parse_step(s, f"drill {name!r} step {n}") for n, s in enumerate(steps_raw, 1))
    env = raw.get("target_env") or {}
    if not isinstance(env, Mapping):
        raise DrillError(f"drill {name!r}: target_env must be a table")
    return Drill(
        name=name,
        title=str(raw.get("title") or name),
        proves=str(raw.get("proves") or ""),
        steps=steps,
        target_env={str(k): str(v) for k, v in env.items()},
    )


def load_drills(path: Path = DRILLS_FILE) -> list[Drill]:
    """Every drill of the file, validated; DrillError naming the file when bad."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise DrillError(f"{path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise DrillError(f"{path}: not valid TOML: {exc}") from exc
    defaults = data.get("defaults", {}).get("target_env", {})
    drills = [parse_drill(item) for item in data.get("drill", [])]
    if not drills:
        raise DrillError(f"{path}: no [[drill]] entries")
    names = [d.name for d in drills]
    if len(set(names)) != len(names):
        raise DrillError(f"{path}: duplicate drill names")
    return [Drill(d.name, d.title, d.proves, d.steps, {**defaults, **d.target_env}) for d in drills]


def select_drills(drills: list[Drill], names: list[str]) -> list[Drill]:
    """The named drills, in the order given; DrillError for an unknown name."""
    by_name = {d.name: d for d in drills}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise DrillError(f"unknown drill(s) {missing} (choose {', '.join(by_name)})")
    return [by_name[n] for n in names]
