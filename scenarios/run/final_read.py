"""The final-read phase: read every written key everywhere until it converges (bounded).

After the workload stopped, the faults were healed and the recovery ran, `read_live`
reads every cache key and beneficio the workload wrote through every target instance
(`GET /cache/{key}`, `GET /beneficios/{id}`) and directly from Redis (the checker's
`redis_keys` templates) and PostgreSQL (`SELECT id, v FROM beneficios`), over the
stack's direct URLs. What is not yet converged is read again every `ROUND_S` until
`converge_within_s` has passed. After the target's SIGTERM stop, `read_after_stop` reads
Redis and PostgreSQL once more (what a service writes, or undoes, at shutdown counts).
The verdict is `scenarios/checkers/final_read.py`'s, on the observations recorded here
(also written to `final_reads.jsonl` in the scenario's directory).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import redis

from scenarios.checkers.cache import version_of
from scenarios.checkers.final_read import (
    ABSENT,
    AFTER_STOP,
    LIVE,
    POSTGRES,
    REDIS,
    Expected,
    FinalReadChecker,
    FinalReads,
    Observation,
    expected_states,
)
from scenarios.history import JSON, History
from scenarios.stack import Stack
from scenarios.target import TargetGroup

ROUND_S = 0.25
"""Pause between two rounds of reads of what has not converged yet."""
REQUEST_TIMEOUT_S = 2.0
DIRECT_TIMEOUT_S = 5.0
PATHS = {"cache": "/cache/{key}", "beneficio": "/beneficios/{key}"}

Read = tuple[str, str, str]
"""(source, kind, key)"""


@dataclass(frozen=True)
class FinalReadPlan:
    """What to read, where: the checker's options, the instances and the direct URLs."""

    checker: FinalReadChecker
    urls: Sequence[str]
    instance_ids: Sequence[str]
    redis_url: str
    database_url: str

    @classmethod
    def of(cls, checker: FinalReadChecker, targets: TargetGroup, stack: Stack) -> FinalReadPlan:
        """The plan for a running target group on `stack` (its direct URLs)."""
        ids = [i.instance_id for i in targets.instances]
        urls = stack.urls
        return cls(checker, targets.urls, ids, urls.redis_direct_url, urls.database_direct_url)

    @property
    def sources(self) -> list[str]:
        """Every source read: the instances, Redis (if a kind is mapped), PostgreSQL."""
        out = list(self.instance_ids)
        if self.checker.redis_keys:
            out.append(REDIS)
        if self.checker.postgres:
            out.append(POSTGRES)
        return out

    def reads(self, expected: Iterable[tuple[str, str]]) -> list[Read]:
        """Every (source, kind, key) to read for the written keys."""
        out: list[Read] = []
        for kind, key in sorted(expected):
            out += [(i, kind, key) for i in self.instance_ids]
            if kind in self.checker.redis_keys:
                out.append((REDIS, kind, key))
            if kind == "beneficio" and self.checker.postgres:
                out.append((POSTGRES, kind, key))
        return out


@dataclass
class LiveReads:
    """The live phase's observations, kept for the reads after the stop."""

    plan: FinalReadPlan
    expected: dict[tuple[str, str], Expected]
    observations: list[Observation]
    started: float


async def read_live(plan: FinalReadPlan, history: History) -> LiveReads:
    """Read every written key on every source until all converged or the bound passed."""
    expected = expected_states(history)
    started = time.monotonic()
    bound = plan.checker.converge_within_s
    pending = plan.reads(expected)
    observations: list[Observation] = []
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        while pending:
            t = time.monotonic() - started
            got = await _round(plan, client, pending, t)
            observations += got
            pending = [
                (o.source, o.kind, o.key)
                for o in got
                if o.state is None or not expected[(o.kind, o.key)].allows(o.state, o.source)
            ]
            left = bound - (time.monotonic() - started)
            if not pending or left <= 0:
                break
            await asyncio.sleep(min(ROUND_S, left))
    return LiveReads(plan, expected, observations, started)


def read_after_stop(live: LiveReads, scenario_dir: Path | None = None) -> FinalReads:
    """Redis and PostgreSQL read once more after the stop; all observations, recorded."""
    t = time.monotonic() - live.started
    direct = [r for r in live.plan.reads(live.expected) if r[0] in (REDIS, POSTGRES)]
    after = _direct(live.plan, direct, t, AFTER_STOP)
    planned = {source for source, _, _ in live.plan.reads(live.expected)}
    reads = FinalReads(
        tuple(live.observations + after),
        tuple(s for s in live.plan.sources if s in planned),  # those with keys to read
        live.plan.checker.converge_within_s,
    )
    if scenario_dir is not None:
        with (scenario_dir / "final_reads.jsonl").open("w") as out:
            for obs in reads.observations:
                out.write(json.dumps(obs.to_json()) + "\n")
    return reads


async def _round(
    plan: FinalReadPlan, client: httpx.AsyncClient, reads: Sequence[Read], t: float
) -> list[Observation]:
    urls = dict(zip(plan.instance_ids, plan.urls, strict=True))
    through = [r for r in reads if r[0] in urls]
    direct = [r for r in reads if r[0] not in urls]
    sent = asyncio.gather(*(_instance(client, urls[s], s, k, key, t) for s, k, key in through))
    answered, read = await asyncio.gather(sent, asyncio.to_thread(_direct, plan, direct, t, LIVE))
    return [*answered, *read]


async def _instance(
    client: httpx.AsyncClient, url: str, source: str, kind: str, key: str, t: float
) -> Observation:
    try:
        response = await client.get(url + PATHS[kind].format(key=key))
    except httpx.HTTPError as exc:
        return Observation(source, kind, key, t, None, error=f"{type(exc).__name__}")
    if response.status_code == 404:
        return Observation(source, kind, key, t, ABSENT)
    if response.status_code != 200:
        return Observation(source, kind, key, t, None, error=f"HTTP {response.status_code}")
    try:
        body: JSON = response.json()
    except ValueError:
        body = None
    version = version_of(body)  # the cache's {"value": {"v"}} or the beneficio's {"v"}
    if version is None:
        return Observation(source, kind, key, t, None, error="no version in the answer")
    return Observation(source, kind, key, t, version)


def _direct(plan: FinalReadPlan, reads: Sequence[Read], t: float, phase: str) -> list[Observation]:
    out: list[Observation] = []
    from_redis = [(kind, key) for source, kind, key in reads if source == REDIS]
    from_db = [key for source, _, key in reads if source == POSTGRES]
    if from_redis:
        out += _redis(plan, from_redis, t, phase)
    if from_db:
        out += _postgres(plan, from_db, t, phase)
    return out


def _redis(
    plan: FinalReadPlan, keys: Sequence[tuple[str, str]], t: float, phase: str
) -> list[Observation]:
    names = [plan.checker.redis_keys[kind].format(key=key) for kind, key in keys]
    client = redis.Redis.from_url(
        plan.redis_url, socket_timeout=DIRECT_TIMEOUT_S, socket_connect_timeout=DIRECT_TIMEOUT_S
    )
    try:
        raw = client.mget(names)
    except redis.RedisError as exc:
        return [Observation(REDIS, k, key, t, None, phase, repr(exc)) for k, key in keys]
    finally:
        client.close()
    out = []
    for (kind, key), value in zip(keys, raw, strict=True):
        if value is None:
            out.append(Observation(REDIS, kind, key, t, ABSENT, phase))
            continue
        try:
            version = version_of(json.loads(value))
        except ValueError:
            version = None
        error = None if version is not None else "unreadable value"
        out.append(Observation(REDIS, kind, key, t, version, phase, error))
    return out


def _postgres(plan: FinalReadPlan, ids: Sequence[str], t: float, phase: str) -> list[Observation]:
    try:
        with psycopg.connect(plan.database_url, connect_timeout=int(DIRECT_TIMEOUT_S)) as conn:
            try:
                rows = conn.execute(
                    "SELECT id, v FROM beneficios WHERE id = ANY(%s)", (list(ids),)
                ).fetchall()
            except psycopg.errors.UndefinedTable:
                rows = []
    except psycopg.Error as exc:
        return [Observation(POSTGRES, "beneficio", i, t, None, phase, repr(exc)) for i in ids]
    held = {str(i): int(v) for i, v in rows}
    return [Observation(POSTGRES, "beneficio", i, t, held.get(i, ABSENT), phase) for i in ids]
