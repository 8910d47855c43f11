"""Expectations of a generated schedule, derived from the catalogue's (never hand-copied).

The catalogue states, per scenario, what must hold under its faults. A generated schedule
mixes fault kinds, so its expectations are derived:

- `E(kind)`: the *meet* of the expectations of the comparable catalogue scenarios whose
  faults are all of that kind (e.g. "redis-down"); failing those, of the ones with a fault
  of that kind among others (e.g. "target-sigkill" during a PostgreSQL outage). A kind no
  comparable scenario exercises gets `E(universal)`, the meet over all of them: what the
  catalogue demands whatever the fault.
- `E(schedule)`: the meet of `E(kind)` over the schedule's kinds.

The meet keeps what holds under both sides, at the looser bound: a checker survives only
when both sides have it; numeric bounds take the larger (the smaller for `min_*` keys);
the operations judged (`fs`) the common ones; lists of allowed values (paths, statuses)
their union; a key bounded on one side only is unbounded; a setting that differs (a
string, a flag) drops the checker, since no bound is known to hold for both.

Comparable scenarios run like a property example: one instance, no special stack, the
catalogue's common target settings (a bound measured with another reset timeout would
not hold here). Observation-only options do not change what the target does, so they do
not make a scenario incomparable: a Prometheus beside the stack, how often the target
evaluates its own alerts. An expectation that needs such an observer (`prometheus_alerts`)
is not derived: a property example runs without it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from scenarios.faults import FaultSpec
from scenarios.run.scenario import Scenario

Expect = dict[str, dict[str, Any]]
UNIVERSAL = "*"


OPTIONAL = frozenset({"paths"})
"""Keys whose absence means "no requirement" (so dropping one only loosens)."""
OBSERVATION_STACK = frozenset({"prometheus"})
"""Stack options that only watch the target (a property example runs without them)."""
OBSERVATION_ENV = frozenset({"ALERT_EVAL_INTERVAL"})
"""Target settings that only change how often it evaluates its own alerts (so how soon an
alert resolves: the `alerts` expectation of a scenario that tunes them is not derived)."""
TUNED_BY_OBSERVATION_ENV = frozenset({"alerts"})
NEEDS_OBSERVER = frozenset({"prometheus_alerts"})
"""Expectations that need an observation-only stack option (not derived)."""
EXEMPTIONS = frozenset({"exempt_windows"})
"""Lists of exemptions: absence means none, so the meet is their union (it only loosens,
and an exemption names a fault kind, so it matters only when that kind is drawn)."""


class _Drop(Exception):
    """The two sides disagree in a way no looser bound covers: drop the checker."""


class _DropKey(Exception):
    """Two lists of allowed values differ: what holds when both faults overlap is known to
    neither (e.g. Redis and PostgreSQL down at once put audit on a third path)."""


def _numeric(value: Any) -> bool:
    if isinstance(value, Mapping):
        return all(_numeric(v) for v in value.values())
    return isinstance(value, int | float) and not isinstance(value, bool)


def _meet_value(key: str, a: Any, b: Any, optional: bool) -> Any:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return _meet_table(a, b, optional or key in OPTIONAL)
    if isinstance(a, bool) or isinstance(b, bool):
        if a != b:
            raise _Drop
        return a
    if isinstance(a, int | float) and isinstance(b, int | float):
        return min(a, b) if key.startswith("min_") else max(a, b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if key == "fs":
            common = [x for x in a if x in b]
            if not common:
                raise _Drop
            return common
        if key in EXEMPTIONS:
            return [*a, *(x for x in b if x not in a)]
        if sorted(map(str, a)) != sorted(map(str, b)):
            raise _DropKey
        return list(a)
    if a != b:
        raise _Drop
    return a


def _meet_table(
    a: Mapping[str, Any], b: Mapping[str, Any], optional: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(a.keys() | b.keys()):
        inner = optional or key in OPTIONAL
        if key in a and key in b:
            try:
                out[key] = _meet_value(key, a[key], b[key], optional)
            except _DropKey:
                if not inner:
                    raise _Drop from None
        elif key in EXEMPTIONS:
            out[key] = list(a.get(key, b.get(key)))
        elif not (inner or _numeric(a.get(key, b.get(key)))):
            raise _Drop  # a setting on one side only, whose default is not known here
        # else: bounded (or required) on one side only: unbounded in the meet
    return out


def meet(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]]) -> Expect:
    """What holds under both expectation sets, at the looser bound (see the module doc)."""
    out: Expect = {}
    for checker in a.keys() & b.keys():
        try:
            out[checker] = _meet_table(a[checker], b[checker])
        except _Drop:
            continue
    return dict(sorted(out.items()))


def observation_env(catalogue: Sequence[Scenario]) -> dict[str, str | None]:
    """The most common value of each observation-only setting (what an example runs with)."""
    return {
        key: Counter(s.target_env.get(key) for s in catalogue).most_common(1)[0][0]
        for key in OBSERVATION_ENV
    }


def not_derived(scenario: Scenario, observed: Mapping[str, str | None]) -> frozenset[str]:
    """The expectations of `scenario` a property example cannot meet: those needing an
    observer it runs without, and `alerts` when the scenario tuned the alert timing."""
    tuned = any(scenario.target_env.get(k) != observed.get(k) for k in OBSERVATION_ENV)
    return NEEDS_OBSERVER | (TUNED_BY_OBSERVATION_ENV if tuned else frozenset())


def _normalized(scenario: Scenario, observed: Mapping[str, str | None]) -> Expect:
    """Its expectations with the judged operations (`fs`) spelled out (the checker's default
    when the catalogue left it out), so a meet intersects real sets; less those a property
    example cannot meet (`not_derived`)."""
    skipped = not_derived(scenario, observed)
    expect: Expect = {}
    for name, options in scenario.expect.items():
        if name in skipped:
            continue
        options = dict(options)
        checker = replace(scenario, expect={name: options}).checkers()[-1]
        fs = getattr(checker, "fs", None)
        if "fs" not in options and isinstance(fs, tuple):
            options["fs"] = list(fs)
        expect[name] = options
    return expect


def _behaviour_env(scenario: Scenario) -> dict[str, str]:
    """Its target settings less the observation-only ones."""
    return {k: v for k, v in scenario.target_env.items() if k not in OBSERVATION_ENV}


def common_env(catalogue: Sequence[Scenario]) -> dict[str, str]:
    """The target settings most catalogue scenarios share (its defaults)."""
    counts = Counter(tuple(sorted(_behaviour_env(s).items())) for s in catalogue)
    return dict(counts.most_common(1)[0][0])


def comparable(catalogue: Sequence[Scenario]) -> list[Scenario]:
    """The scenarios whose bounds apply to a property example (see the module doc)."""
    env = common_env(catalogue)
    return [
        s
        for s in catalogue
        if s.instances == 1
        and not (set(s.stack) - OBSERVATION_STACK)
        and _behaviour_env(s) == env
        and s.faults
    ]


def _meet_all(sets: Iterable[Expect]) -> Expect:
    result: Expect | None = None
    for expect in sets:
        result = expect if result is None else meet(result, expect)
    return result or {}


def kind_expectations(catalogue: Sequence[Scenario]) -> dict[str, Expect]:
    """`E(kind)` for every fault name the comparable scenarios use, plus `UNIVERSAL`."""
    scenarios = comparable(catalogue)
    observed = observation_env(catalogue)
    normalized = {s.name: _normalized(s, observed) for s in scenarios}
    names = sorted({f.fault.name for s in scenarios for f in s.faults})
    table = {}
    for name in names:
        alone = [s for s in scenarios if {f.fault.name for f in s.faults} == {name}]
        among = alone or [s for s in scenarios if name in {f.fault.name for f in s.faults}]
        table[name] = _meet_all(normalized[s.name] for s in among)
    table[UNIVERSAL] = _meet_all(normalized.values())
    return table


def kind_key(spec: FaultSpec) -> str:
    """The key of a fault in the table: its name, with its direction when one-way (no
    catalogue scenario has a one-way fault, so those get the universal expectations)."""
    stream = spec.params.get("stream")
    return f"{spec.name}:{stream}" if stream else spec.name


def schedule_expectations(faults: Iterable[FaultSpec], table: Mapping[str, Expect]) -> Expect:
    """`E(schedule)`: the meet of its faults' expectations (unknown kinds: universal)."""
    names = sorted({kind_key(f) for f in faults}) or [UNIVERSAL]
    return _meet_all(table.get(name, table[UNIVERSAL]) for name in names)
