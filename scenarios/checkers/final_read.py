"""Final reads (Jepsen style): after the heal, every key converges to the truth.

Once the workload stopped, every fault was healed and the recovery ran, the harness reads
every cache key and beneficio the workload wrote through every target instance and
directly from Redis and PostgreSQL (`scenarios/run/final_read.py`), retrying what is not
yet right until `converge_within_s`; after the SIGTERM stop it reads Redis and
PostgreSQL once more. This module is the pure part: what each key may hold, and the
verdict on the recorded observations.

What a key may hold (`expected_states`): a key is written by one worker, one change at a
time, so its changes are ordered by invocation. The state after the last acknowledged
change (a PUT's version, or absent after a DELETE; absent when none was acknowledged),
or the state of any later change whose outcome was not acknowledged (unknown, or
refused: a refused beneficio PUT may have landed, see `checkers/beneficios.py`).

Per source: a value must be one of those states; a miss is allowed where the source may
forget (every cache source: a cache may drop an entry, e.g. the reference deletes keys
written during an outage from Redis after it heals; the beneficio entry in Redis: it is
a cache-aside copy), and otherwise only when the key may be absent. Categories:

- stale: a version older than the truth; resurrected: a value of a deleted key;
- diverged: a version that is neither (newer than any write, or never sent);
- missing: absent where the source must hold it (a beneficio row, or GET /beneficios);
- error: the source did not answer (5xx, timeout, unreadable value);
- late: right, but only after `converge_within_s`;
- disagree: sources holding different values at the end;
- after_stop: Redis or PostgreSQL wrong once the target was stopped (SIGTERM).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from scenarios.checkers.base import MAX_SAMPLES, CheckResult, Truth
from scenarios.checkers.cache import version_of
from scenarios.history import JSON, History

KINDS = ("cache", "beneficio")
ABSENT = -1
"""The state "no value" (versions are positive integers)."""
REDIS, POSTGRES = "redis", "postgres"
LIVE, AFTER_STOP = "live", "after_stop"
CATEGORIES = (
    "stale",
    "resurrected",
    "diverged",
    "missing",
    "error",
    "late",
    "disagree",
    "after_stop",
)
DEFAULT_REDIS_KEYS: Mapping[str, str] = {
    "cache": "stormproof:kv:{key}",
    "beneficio": "stormproof:beneficio:{key}",
}
"""Where the reference keeps each kind in Redis (a target with another layout sets
`final_read.redis_keys`, or `{}` to skip the direct Redis reads)."""


@dataclass(frozen=True)
class Expected:
    """What one key may hold at the end: versions, or ABSENT."""

    kind: str
    key: str
    states: frozenset[int]
    acked: int | None
    """The state after the last acknowledged change (None: no change acknowledged)."""

    def allows(self, state: int, source: str) -> bool:
        """Whether `source` holding `state` is converged."""
        if state == ABSENT and may_forget(self.kind, source):
            return True
        return state in self.states


@dataclass(frozen=True)
class Observation:
    """One read of one key from one source during the final-read phase."""

    source: str
    """An instance id (i1, ...), "redis" or "postgres"."""
    kind: str
    key: str
    t: float
    """Seconds since the final-read phase began."""
    state: int | None
    """A version, ABSENT, or None when the source did not answer (see `error`)."""
    phase: str = LIVE
    error: str | None = None

    def to_json(self) -> dict[str, JSON]:
        """The observation as JSON (final_reads.jsonl)."""
        return {
            "source": self.source,
            "kind": self.kind,
            "key": self.key,
            "t": self.t,
            "state": self.state,
            "phase": self.phase,
            "error": self.error,
        }


@dataclass(frozen=True)
class FinalReads:
    """Everything the final-read phase saw."""

    observations: Sequence[Observation] = ()
    sources: Sequence[str] = ()
    """Every source that was to be read (one without an observation is a failure)."""
    deadline_s: float = 0.0
    """How long the reader retried."""


def may_forget(kind: str, source: str) -> bool:
    """Whether `source` may hold no value of a key that has one (a cache may forget)."""
    return kind == "cache" or (kind == "beneficio" and source == REDIS)


def expected_states(history: History) -> dict[tuple[str, str], Expected]:
    """Per (kind, key) the workload wrote: the states it may hold at the end."""
    changes: dict[tuple[str, str], list[tuple[float, int, str]]] = defaultdict(list)
    for op in history.ops_for("cache_put", "cache_delete", "beneficio_put"):
        if op.key is None:
            continue
        kind = op.f.split("_", 1)[0]
        if op.f.endswith("_delete"):
            state: int | None = ABSENT
        else:
            state = version_of(op.request)
        if state is None:
            continue
        changes[(kind, op.key)].append((op.start, state, op.outcome))
    out = {}
    for (kind, key), items in changes.items():
        items.sort(key=lambda c: c[0])
        last_ok = max((n for n, c in enumerate(items) if c[2] == "ok"), default=-1)
        acked = items[last_ok][1] if last_ok >= 0 else None
        states = {ABSENT if acked is None else acked}
        states.update(c[1] for c in items[last_ok + 1 :])
        out[(kind, key)] = Expected(kind, key, frozenset(states), acked)
    return out


@dataclass(frozen=True)
class FinalReadChecker:
    """Every written key, read through every instance and directly, converges in time."""

    converge_within_s: float = 5.0
    """Seconds from the start of the final-read phase (after heal and recovery)."""
    redis_keys: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_REDIS_KEYS))
    """Per kind, the Redis key of `{key}`; a kind left out is not read from Redis."""
    postgres: bool = True
    """Read beneficios directly from PostgreSQL (`SELECT id, v FROM beneficios`)."""
    min_keys: int = 5
    """Written keys needed: fewer is insufficient evidence."""
    name: str = "final_read"

    def __post_init__(self) -> None:
        if isinstance(self.converge_within_s, bool) or not self.converge_within_s > 0:
            raise ValueError("final_read: converge_within_s must be a positive number")
        unknown = set(self.redis_keys) - set(KINDS)
        if unknown or not all("{key}" in v for v in self.redis_keys.values()):
            raise ValueError(
                f"final_read: redis_keys maps {' or '.join(KINDS)} to a template with {{key}}"
            )

    def check(self, history: History, truth: Truth) -> CheckResult:
        expected = expected_states(history)
        reads = truth.final_reads
        thresholds: dict[str, JSON] = {
            "converge_within_s": self.converge_within_s,
            "min_keys": self.min_keys,
        }
        if reads is None:
            return CheckResult(
                self.name, False, "the final reads were not made: nothing shows convergence",
                {}, thresholds,
            )  # fmt: skip
        return judge(expected, reads, self.converge_within_s, self.min_keys, thresholds)


def judge(
    expected: Mapping[tuple[str, str], Expected],
    reads: FinalReads,
    bound_s: float,
    min_keys: int,
    thresholds: Mapping[str, JSON] | None = None,
) -> CheckResult:
    """The verdict on the observations of a final-read phase."""
    by_read: dict[tuple[str, str, str, str], list[Observation]] = defaultdict(list)
    for obs in reads.observations:
        by_read[(obs.source, obs.kind, obs.key, obs.phase)].append(obs)
    found: dict[str, list[dict[str, JSON]]] = {c: [] for c in CATEGORIES}
    per_source: dict[str, dict[str, int]] = {}
    worst = 0.0
    for (source, kind, key, phase), seen in sorted(by_read.items()):
        exp = expected.get((kind, key))
        if exp is None:
            continue  # a key nobody wrote: nothing to converge to
        seen.sort(key=lambda o: o.t)
        last = seen[-1]
        counts = per_source.setdefault(source, {"keys": 0, "wrong": 0})
        ok = last.state is not None and exp.allows(last.state, source)
        if phase == LIVE:
            counts["keys"] += 1
        sample = _sample(exp, last, source)
        if not ok:
            counts["wrong"] += 1
            found["after_stop" if phase == AFTER_STOP else _category(exp, last, source)].append(
                sample
            )
        elif phase == LIVE and last.t > bound_s:
            found["late"].append(sample)
        if ok and phase == LIVE:
            worst = max(worst, last.t)
    silent = [s for s in reads.sources if s not in per_source]
    found["disagree"] = _disagreements(by_read, expected)
    counts_out = {c: len(v) for c, v in found.items()}
    problems = [_describe(c, found[c], bound_s) for c in CATEGORIES if found[c]]
    if silent and expected:
        problems.append(f"no final read answered by {', '.join(sorted(silent))}")
    if len(expected) < min_keys:
        problems.append(f"insufficient evidence: {len(expected)} written keys (minimum {min_keys})")
    details: dict[str, JSON] = {
        "keys": len(expected),
        "sources": list(reads.sources),
        "per_source": {s: dict(c) for s, c in sorted(per_source.items())},
        "counts": counts_out,
        "slowest_convergence_s": worst,
        "samples": {c: v[:MAX_SAMPLES] for c, v in found.items() if v},
        "insufficient_evidence": [p for p in problems if p.startswith("insufficient")],
    }
    summary = (
        "; ".join(problems)
        if problems
        else f"{len(expected)} written keys converged on {len(reads.sources)} sources "
        f"(slowest {worst:.2f}s <= {bound_s}s)"
    )
    return CheckResult("final_read", not problems, summary, details, dict(thresholds or {}))


def _category(exp: Expected, obs: Observation, source: str) -> str:
    if obs.state is None:
        return "error"
    if obs.state == ABSENT:
        return "missing"
    if exp.acked == ABSENT:
        return "resurrected"
    versions = [s for s in exp.states if s != ABSENT]
    if versions and obs.state < min(versions):
        return "stale"
    return "diverged"


def _disagreements(
    by_read: Mapping[tuple[str, str, str, str], Sequence[Observation]],
    expected: Mapping[tuple[str, str], Expected],
) -> list[dict[str, JSON]]:
    """Keys whose sources hold different values at the end of the live reads."""
    values: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for (source, kind, key, phase), seen in by_read.items():
        last = max(seen, key=lambda o: o.t)
        if phase == LIVE and last.state is not None and last.state != ABSENT:
            values[(kind, key)][source] = last.state
    out: list[dict[str, JSON]] = []
    for (kind, key), held in sorted(values.items()):
        if (kind, key) in expected and len(set(held.values())) > 1:
            out.append({"kind": kind, "key": key, "held": dict(sorted(held.items()))})
    return out


def _sample(exp: Expected, obs: Observation, source: str) -> dict[str, JSON]:
    return {
        "source": source,
        "kind": exp.kind,
        "key": exp.key,
        "read": "absent" if obs.state == ABSENT else obs.state,
        "allowed": ["absent" if s == ABSENT else s for s in sorted(exp.states)],
        "last_acked": "absent" if exp.acked == ABSENT else exp.acked,
        "t": round(obs.t, 3),
        "error": obs.error,
    }


def _describe(category: str, items: list[dict[str, JSON]], bound_s: float) -> str:
    if category == "disagree":
        return f"{len(items)} keys held different values on different sources"
    by_source: dict[str, int] = defaultdict(int)
    for item in items:
        by_source[str(item["source"])] += 1
    where = ", ".join(f"{s}: {n}" for s, n in sorted(by_source.items()))
    text = {
        "stale": "keys stale (older than the last acknowledged write)",
        "resurrected": "deleted keys came back",
        "diverged": "keys hold a version never acknowledged or in flight",
        "missing": "keys missing that must be there",
        "error": "keys never answered",
        "late": f"keys converged only after {bound_s}s",
        "after_stop": "keys wrong in Redis/PostgreSQL after the SIGTERM stop",
    }[category]
    never = "" if category in ("late", "after_stop") else f" (not converged within {bound_s}s)"
    return f"{len(items)} {text}{never} [{where}]"
