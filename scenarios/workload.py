"""Workloads: async drivers of the target contract that record every operation.

Each worker is a history `process`. Writes are partitioned (a key or beneficio is only
written by its own worker, one write at a time) so versions per key increase in the
order they were acknowledged, which the staleness checker relies on. Reads go anywhere.
Every call is recorded as invoke, then ok / fail / info (unknown: timeout, reset).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from scenarios.history import JSON, Event
from scenarios.history_recorder import HistoryRecorder

OPERATIONS = ("cache_get", "cache_put", "cache_delete", "beneficio_get", "beneficio_put", "audit")
HEALTH_PROCESS = 10_000


class WorkloadError(ValueError):
    """A workload spec that cannot run."""


@dataclass(frozen=True)
class WorkloadSpec:
    """What to drive: operation mix (weights), rate, concurrency, key space, health polling."""

    mix: Mapping[str, float] = field(
        default_factory=lambda: {
            "cache_get": 4,
            "cache_put": 1,
            "cache_delete": 0.25,
            "beneficio_get": 3,
            "beneficio_put": 1,
            "audit": 3,
        }
    )
    rate_per_s: float = 200.0
    concurrency: int = 16
    keys_per_worker: int = 4
    request_timeout_s: float = 5.0
    health_poll_s: float = 0.2

    def validate(self) -> WorkloadSpec:
        """This spec, or WorkloadError naming what is wrong."""
        unknown = set(self.mix) - set(OPERATIONS)
        if unknown:
            raise WorkloadError(f"workload: unknown operation(s) {sorted(unknown)}")
        if not self.mix or any(w < 0 for w in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise WorkloadError("workload: mix needs positive weights")
        for name in ("rate_per_s", "request_timeout_s", "health_poll_s"):
            if getattr(self, name) <= 0:
                raise WorkloadError(f"workload: {name} must be positive")
        if self.concurrency < 1 or self.keys_per_worker < 1:
            raise WorkloadError("workload: concurrency and keys_per_worker must be >= 1")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkloadSpec:
        """A validated spec from its TOML/JSON table."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise WorkloadError(f"workload: unknown field(s) {sorted(unknown)}")
        try:
            return cls(**data).validate()
        except TypeError as exc:
            raise WorkloadError(f"workload: {exc}") from exc


def seeded_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from `rng`: the same seed gives the same event ids (replays)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _classify(status: int, f: str) -> str:
    if f == "health" and status in (200, 503):  # 503 = UNHEALTHY, still an answer
        return "ok"
    if 200 <= status < 300 or (status == 404 and f in ("cache_get", "beneficio_get")):
        return "ok"
    return "fail"


def _body(response: httpx.Response) -> JSON:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return {"text": response.text[:200]}


class Workload:
    """Runs a WorkloadSpec against target instances until stopped."""

    def __init__(
        self,
        spec: WorkloadSpec,
        urls: Sequence[str],
        recorder: HistoryRecorder,
        *,
        seed: int = 0,
        instance_ids: Sequence[str] | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.spec = spec.validate()
        self._urls = list(urls)
        self._ids = list(instance_ids or [f"i{n + 1}" for n in range(len(urls))])
        self._recorder = recorder
        self._seed = seed
        self._stop = asyncio.Event()
        self._versions: dict[str, int] = {}
        self._ops = list(spec.mix)
        self._weights = [spec.mix[op] for op in self._ops]
        self.acked_events: list[str] = []

    def stop(self) -> None:
        """Ask the workload to stop (`run` returns soon after)."""
        self._stop.set()

    async def run(self) -> None:
        """Drive until `stop()`; then wait for in-flight calls (bounded by their timeout)."""
        limits = httpx.Limits(max_connections=self.spec.concurrency * 2 + 4)
        timeout = httpx.Timeout(self.spec.request_timeout_s)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            tasks = [
                asyncio.create_task(self._worker(client, worker))
                for worker in range(self.spec.concurrency)
            ]
            tasks += [asyncio.create_task(self._health(client, n)) for n in range(len(self._urls))]
            await asyncio.gather(*tasks)

    async def _worker(self, client: httpx.AsyncClient, worker: int) -> None:
        rng = random.Random(self._seed * 1_000_003 + worker)
        interval = self.spec.concurrency / self.spec.rate_per_s
        loop = asyncio.get_running_loop()
        next_at = loop.time() + rng.random() * interval
        while not self._stop.is_set():
            delay = next_at - loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
            next_at = max(next_at + interval, loop.time())
            op = rng.choices(self._ops, self._weights)[0]
            target = rng.randrange(len(self._urls))
            await self._one(client, worker, op, target, rng)

    async def _one(
        self, client: httpx.AsyncClient, worker: int, op: str, target: int, rng: random.Random
    ) -> None:
        url = self._urls[target]
        instance = self._ids[target]
        own = f"w{worker}-{rng.randrange(self.spec.keys_per_worker)}"
        anyone = (
            f"w{rng.randrange(self.spec.concurrency)}-{rng.randrange(self.spec.keys_per_worker)}"
        )
        method: str
        path: str
        body: JSON = None
        key: str | None
        if op == "cache_get":
            key, method, path = anyone, "GET", f"/cache/{anyone}"
        elif op == "cache_put":
            key, method, path = own, "PUT", f"/cache/{own}"
            body = {"value": {"v": self._next_version(f"c:{own}"), "by": worker}}
        elif op == "cache_delete":
            key, method, path = own, "DELETE", f"/cache/{own}"
        elif op == "beneficio_get":
            key, method, path = anyone, "GET", f"/beneficios/{anyone}"
        elif op == "beneficio_put":
            key, method, path = own, "PUT", f"/beneficios/{own}"
            body = {
                "nome": f"beneficio {own}",
                "valor": rng.randrange(100, 10_000),
                "v": self._next_version(f"b:{own}"),
                "event_id": seeded_uuid(rng),
            }
        else:
            key, method, path = None, "POST", "/audit"
            body = {
                "event_id": seeded_uuid(rng),
                "actor": f"worker-{worker}",
                "action": "chaos",
                "entity": "workload",
                "entity_id": str(worker),
                "payload": {"n": rng.random()},
            }
        request_value = body if body is not None else {}
        invoked = self._recorder.invoke(worker, op, key, request_value, instance)
        await self._send(client, invoked, method, url + path, body)

    async def _send(
        self, client: httpx.AsyncClient, invoked: Event, method: str, url: str, body: JSON
    ) -> None:
        try:
            response = await client.request(method, url, json=body)
        except httpx.TimeoutException as exc:
            self._recorder.complete(invoked, "info", error=f"timeout: {type(exc).__name__}")
            return
        except httpx.HTTPError as exc:
            # a refused connection never reached the target: a definite failure
            outcome = "fail" if isinstance(exc, httpx.ConnectError) else "info"
            self._recorder.complete(invoked, outcome, error=f"{type(exc).__name__}: {exc}")  # type: ignore[arg-type]
            return
        outcome = _classify(response.status_code, invoked.f)
        value = _body(response)
        self._recorder.complete(invoked, outcome, value, status=response.status_code)  # type: ignore[arg-type]
        if outcome == "ok" and invoked.f == "audit" and isinstance(invoked.value, dict):
            self.acked_events.append(str(invoked.value["event_id"]))

    async def _health(self, client: httpx.AsyncClient, target: int) -> None:
        url, instance = self._urls[target] + "/health", self._ids[target]
        process = HEALTH_PROCESS + target
        while not self._stop.is_set():
            invoked = self._recorder.invoke(process, "health", None, {}, instance)
            await self._send(client, invoked, "GET", url, None)
            try:
                await asyncio.wait_for(self._stop.wait(), self.spec.health_poll_s)
            except TimeoutError:
                pass

    def _next_version(self, key: str) -> int:
        version = self._versions.get(key, 0) + 1
        self._versions[key] = version
        return version
