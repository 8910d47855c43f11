"""Scenarios as data: workload, fault schedule, expectations; parsed and validated up front.

A scenario file is TOML (or JSON) holding `[[scenario]]` tables:

    [[scenario]]
    name = "redis-blackhole"
    description = "Redis swallows every packet for 6 s"
    duration_s = 14
    target_env = { CIRCUIT_BREAKER_RESET_TIMEOUT = "2000" }
    workload = { rate_per_s = 200, concurrency = 16 }
    faults = [ { at_s = 3, fault = "redis-blackhole", duration_s = 6 } ]
    [scenario.expect]
    audit = {}
    cache_availability = { max_failed_reads = 0 }
    latency = { fault = { p99_s = 0.6 } }
    breaker = { open_within_s = 2, close_within_s = 5 }
    health = { grace_s = 2 }

Bounds are relative to the fault edge they judge (breaker: from the start / the heal;
health: grace after each edge); staleness says what is allowed during a fault and what
is bounded after its heal: `staleness = { during_fault = "allowed", after_heal_s = 3 }`.
Everything is checked before anything starts; errors are one line naming the scenario.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scenarios.checkers import (
    AuditChecker,
    BeneficiosChecker,
    BreakerTimelineChecker,
    CacheAvailabilityChecker,
    Checker,
    HealthChecker,
    LatencyChecker,
    PhaseThresholds,
    PrometheusAlertsChecker,
    StalenessChecker,
    SteadyStateChecker,
    WriteAvailabilityChecker,
)
from scenarios.checkers.alerts import AlertsChecker
from scenarios.checkers.final_read import FinalReadChecker
from scenarios.checkers.metrics import MetricsChecker
from scenarios.faults import FaultError, FaultSpec
from scenarios.workload import WorkloadError, WorkloadSpec

EXPECTATIONS = (
    "audit",
    "cache_availability",
    "staleness",
    "latency",
    "breaker",
    "health",
    "prometheus_alerts",
    "steady_state",
    "write_availability",
    "beneficios",
    "alerts",
    "metrics",
    "final_read",
)
WRITES = ("cache_put", "cache_delete", "beneficio_put")
"""A workload with any of these gets the final-read check by default (see `checkers`)."""
PHASES = ("baseline", "fault", "between", "recovery")
STACK_OPTIONS = (
    "redis_aof",
    "redis_proxy_per_instance",
    "redis_appendfsync",
    "redis_config",
    "prometheus",
    "redis",
)
OBSERVED: dict[str, type[AlertsChecker] | type[MetricsChecker]] = {
    "alerts": AlertsChecker,
    "metrics": MetricsChecker,
}
"""What an operator sees (alerts received, dashboards), recorded by scenarios/observe.py."""
FULL_SCALE = 3.0
RECOVERY_MODES = ("admin", "scheduled")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class ScenarioError(ValueError):
    """A scenario (file, schedule or option) that is invalid: nothing was started."""


@dataclass(frozen=True)
class ScheduledFault:
    """Apply `fault` at `at_s` seconds into the run, revert it `duration_s` later."""

    at_s: float
    duration_s: float
    fault: FaultSpec

    def to_json(self) -> dict[str, Any]:
        """The schedule entry as JSON (the `--schedule` format)."""
        return {
            "at_s": self.at_s,
            "duration_s": self.duration_s,
            "fault": self.fault.name,
            "params": dict(self.fault.params),
        }


@dataclass(frozen=True)
class Scenario:
    """One scenario: a workload, a fault schedule, the target's settings, expectations."""

    name: str
    description: str
    duration_s: float
    workload: WorkloadSpec
    faults: tuple[ScheduledFault, ...] = ()
    expect: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    target_env: Mapping[str, str] = field(default_factory=dict)
    instances: int = 1
    stack: Mapping[str, Any] = field(default_factory=dict)
    settle_s: float = 15.0
    """Longest wait after healing for the target to recover and drain its backlog."""
    recovery: str = "admin"
    """"admin": the harness calls POST /admin/recovery while it waits for the backlog to
    drain; "scheduled": it never does (the service's own recovery job must drain it)."""

    def scaled(self, factor: float) -> Scenario:
        """The same scenario with every time multiplied (the full mode of the catalogue)."""
        if factor == 1:
            return self
        faults = tuple(
            replace(f, at_s=f.at_s * factor, duration_s=f.duration_s * factor) for f in self.faults
        )
        return replace(self, duration_s=self.duration_s * factor, faults=faults)

    def checkers(self) -> list[Checker]:
        """The steady-state check (always: an unsteady baseline makes the run INVALID),
        then one checker per expectation."""
        steady = _checker("steady_state", self.expect.get("steady_state", {}))
        rest = [
            _checker(kind, opts) for kind, opts in self.expect.items() if kind != "steady_state"
        ]
        if "final_read" not in self.expect and any(self.workload.mix.get(f) for f in WRITES):
            # on by default wherever keys are written (before the named ones: the last
            # checker stays the last expectation's)
            return [steady, FinalReadChecker(), *rest]
        return [steady, *rest]

    def final_read(self) -> FinalReadChecker | None:
        """The final-read check of this scenario, if it has one (the runner's phase)."""
        found = [c for c in self.checkers() if isinstance(c, FinalReadChecker)]
        return found[0] if found else None


def _checker(kind: str, options: Mapping[str, Any]) -> Checker:
    if not isinstance(options, Mapping):
        raise ScenarioError(f"expectation {kind!r} must be a table, got {options!r}")
    if kind == "steady_state":
        return SteadyStateChecker(**options)
    if kind == "audit":
        return AuditChecker(**_with_tuple(_with_tuple(options, "fs"), "exempt_windows"))
    if kind == "beneficios":
        return BeneficiosChecker(**options)
    if kind == "final_read":
        return FinalReadChecker(**options)
    if kind == "write_availability":
        return WriteAvailabilityChecker.from_options(options)
    if kind == "cache_availability":
        return CacheAvailabilityChecker(**_with_tuple(options, "fs"))
    if kind == "staleness":
        return StalenessChecker(**_with_tuple(options, "targets"))
    if kind == "breaker":
        return BreakerTimelineChecker(**_with_tuple(options, "targets"))
    if kind == "health":
        kwargs = {k: v for k, v in options.items() if k not in ("during", "after")}
        during = options.get("during")
        if during is not None:
            if not isinstance(during, Mapping):
                raise ScenarioError("health.during must map a target to a list of statuses")
            kwargs["expect_during"] = {t: frozenset(_statuses(v)) for t, v in during.items()}
        if "after" in options:
            kwargs["expect_after"] = frozenset(_statuses(options["after"]))
        return HealthChecker(**kwargs)
    if kind == "prometheus_alerts":
        return PrometheusAlertsChecker(**options)
    if kind == "latency":
        unknown = set(options) - {*PHASES, "fs"}
        if unknown:
            raise ScenarioError(
                f"latency: unknown key(s) {sorted(unknown)} (phases: {', '.join(PHASES)}; fs)"
            )
        thresholds = {
            phase: PhaseThresholds(**limits) for phase, limits in options.items() if phase in PHASES
        }
        if "fs" in options:
            return LatencyChecker(thresholds=thresholds, fs=tuple(options["fs"]))
        return LatencyChecker(thresholds=thresholds)
    if kind in OBSERVED:
        return OBSERVED[kind](**_with_tuple(options, "fire") if "fire" in options else options)
    raise ScenarioError(f"unknown expectation {kind!r} (choose {', '.join(EXPECTATIONS)})")


def _statuses(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError(f"health statuses must be a list of strings, got {value!r}")
    return value


def _with_tuple(options: Mapping[str, Any], key: str) -> dict[str, Any]:
    out = dict(options)
    if key in out:
        out[key] = tuple(out[key])
    return out


def parse_schedule(
    raw: Sequence[Mapping[str, Any]] | str, where: str = "schedule"
) -> tuple[ScheduledFault, ...]:
    """Faults from a list of {at_s, fault, duration_s, params?} (or its JSON text)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{where}: not valid JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(raw, list):
        raise ScenarioError(f"{where}: expected a list of faults")
    faults = []
    for number, item in enumerate(raw, 1):
        if not isinstance(item, Mapping):
            raise ScenarioError(f"{where} #{number}: expected a table/object")
        unknown = set(item) - {"at_s", "duration_s", "fault", "params"}
        if unknown:
            raise ScenarioError(f"{where} #{number}: unknown field(s) {sorted(unknown)}")
        try:
            at_s, duration_s = float(item["at_s"]), float(item["duration_s"])
            spec = FaultSpec.parse(str(item["fault"]), item.get("params"))
        except KeyError as exc:
            raise ScenarioError(f"{where} #{number}: missing {exc.args[0]}") from exc
        except (TypeError, ValueError) as exc:
            raise ScenarioError(f"{where} #{number}: {exc}") from exc
        if at_s < 0:
            raise ScenarioError(f"{where} #{number}: at_s must not be negative ({at_s})")
        if duration_s <= 0:
            raise ScenarioError(f"{where} #{number}: duration_s must be positive ({duration_s})")
        faults.append(ScheduledFault(at_s, duration_s, spec))
    return tuple(sorted(faults, key=lambda f: f.at_s))


def parse_scenario(raw: Mapping[str, Any]) -> Scenario:
    """A validated scenario from its TOML/JSON table; ScenarioError when bad."""
    name = str(raw.get("name") or "")
    if not name:
        raise ScenarioError("scenario without a name")
    where = f"scenario {name!r}"
    if not _NAME.fullmatch(name) or name in (".", ".."):
        # the name becomes a directory under the report: no separators, no "..", no spaces
        raise ScenarioError(f"{where}: name must be letters, digits, '.', '_' or '-'")
    known = {
        "name",
        "description",
        "duration_s",
        "workload",
        "faults",
        "expect",
        "target_env",
        "instances",
        "stack",
        "settle_s",
        "recovery",
    }
    unknown = set(raw) - known
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {sorted(unknown)}")
    try:
        workload = WorkloadSpec.from_dict(raw.get("workload", {}))
    except WorkloadError as exc:
        raise ScenarioError(f"{where}: {exc}") from exc
    faults = parse_schedule(raw.get("faults", []), f"{where} fault")
    duration = float(raw.get("duration_s", 10))
    if duration <= 0:
        raise ScenarioError(f"{where}: duration_s must be positive")
    for scheduled in faults:
        if scheduled.at_s + scheduled.duration_s > duration:
            raise ScenarioError(
                f"{where}: fault {scheduled.fault.name} ends after the run ({duration} s)"
            )
    instances = int(raw.get("instances", 1))
    if not 1 <= instances <= 8:
        raise ScenarioError(f"{where}: instances must be between 1 and 8")
    raw_stack = raw.get("stack", {})
    if not isinstance(raw_stack, Mapping):
        raise ScenarioError(f"{where}: stack must be a table")
    stack = dict(raw_stack)
    if set(stack) - set(STACK_OPTIONS):
        raise ScenarioError(
            f"{where}: unknown stack option(s) {sorted(set(stack) - set(STACK_OPTIONS))}"
        )
    redis_config = stack.get("redis_config", {})
    if not isinstance(redis_config, Mapping) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in redis_config.values()
    ):
        raise ScenarioError(f"{where}: stack.redis_config must be a table of parameter = value")
    if stack.get("redis", "single") not in ("single", "replicated"):
        raise ScenarioError(f'{where}: stack.redis must be "single" or "replicated"')
    raw_env = raw.get("target_env", {})
    if not isinstance(raw_env, Mapping):
        raise ScenarioError(f"{where}: target_env must be a table of VARIABLE = value")
    env = {str(k): str(v) for k, v in raw_env.items()}
    scenario = Scenario(
        name=name,
        description=str(raw.get("description", "")),
        duration_s=duration,
        workload=workload,
        faults=faults,
        expect=dict(raw.get("expect", {})),
        target_env=env,
        instances=instances,
        stack=stack,
        settle_s=float(raw.get("settle_s", 15.0)),
        recovery=str(raw.get("recovery", "admin")),
    )
    if scenario.recovery not in RECOVERY_MODES:
        raise ScenarioError(
            f"{where}: recovery must be one of {', '.join(RECOVERY_MODES)}, "
            f"got {scenario.recovery!r}"
        )
    try:
        scenario.checkers()
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{where}: bad expectation: {exc}") from exc
    if not isinstance(raw.get("expect", {}), Mapping):
        raise ScenarioError(f"{where}: expect must be a table")
    if "prometheus_alerts" in scenario.expect and not stack.get("prometheus"):
        raise ScenarioError(f"{where}: prometheus_alerts needs stack = {{ prometheus = true }}")
    return scenario


def load_scenarios(path: Path) -> list[Scenario]:
    """Parse a TOML or JSON scenario file; raises ScenarioError naming the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}"
        ) from exc
    return scenarios_from_data(data, str(path))


def scenarios_from_data(data: Any, where: str) -> list[Scenario]:
    """Scenarios from parsed TOML/JSON: `[[scenario]]` entries plus `[defaults.target_env]`
    (merged under each scenario's own target_env)."""
    items = data.get("scenario") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ScenarioError(f"{where}: no [[scenario]] entries")
    defaults_raw = data.get("defaults", {}) if isinstance(data, dict) else {}
    env_raw = defaults_raw.get("target_env", {}) if isinstance(defaults_raw, dict) else None
    if not isinstance(env_raw, dict):
        raise ScenarioError(f"{where}: defaults.target_env must be a table")
    defaults = {str(k): str(v) for k, v in env_raw.items()}
    try:
        scenarios = [parse_scenario(item) for item in items]
    except (ScenarioError, TypeError, ValueError, AttributeError) as exc:
        raise ScenarioError(f"{where}: {exc}") from exc
    scenarios = [replace(s, target_env={**defaults, **s.target_env}) for s in scenarios]
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ScenarioError(f"{where}: duplicate scenario names")
    return scenarios


__all__ = [
    "FaultError",
    "Scenario",
    "ScenarioError",
    "ScheduledFault",
    "load_scenarios",
    "parse_scenario",
    "parse_schedule",
]
