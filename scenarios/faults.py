"""Faults: reversible network faults (Toxiproxy) and process faults (signals).

A `FaultSpec` is data (kind, target, params); `FaultInjector.apply(spec)` makes it happen
and remembers how to undo it; `revert_all()` undoes whatever is still active, whatever
happened (call it in `finally`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from scenarios.fs import power
from scenarios.redis_data import fill_redis
from scenarios.stack.base import Stack
from scenarios.stack.errors import StackError
from scenarios.toxiproxy import Proxy, Toxiproxy, ToxiproxyError

if TYPE_CHECKING:
    from scenarios.fs.disks import StackDisks

NETWORK_TARGETS = ("redis", "postgres")
# A per-instance proxy is named like "redis.i2" (scenarios with per-instance proxies).
_INSTANCE_PROXY = re.compile(r"^(redis|postgres)\.i[1-9]$")
# The replicated Redis (scenarios/stack/replicated.py): node proxies "redis.n1", peer
# proxies "redis.peer", "redis.n1.peer"; node and Sentinel processes "redis.n1", "sentinel.2".
_REPLICATED_PROXY = re.compile(r"^redis(\.n[1-9])?\.peer$|^redis\.n[1-9]$")
_REPLICATED_PROCESS = re.compile(r"^(redis\.n[1-9]|sentinel\.[1-9])$")
PROCESS_TARGETS = ("redis", "postgres", "target")

# kind -> (toxic type, default attributes, streams); "down" and "flapping" are handled apart.
_TOXICS: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "blackhole": ("timeout", {"timeout": 0}, ("upstream", "downstream")),
    "latency": ("latency", {"latency": 500, "jitter": 0}, ("downstream",)),
    "bandwidth": ("bandwidth", {"rate": 1}, ("downstream",)),
    "reset_peer": ("reset_peer", {"timeout": 0}, ("upstream",)),
    "slicer": ("slicer", {"average_size": 16, "size_variation": 8, "delay": 1000}, ("downstream",)),
    "limit_data": ("limit_data", {"bytes": 512}, ("downstream",)),
    "slow_close": ("slow_close", {"delay": 2000}, ("downstream",)),
}
NETWORK_KINDS = ("down", "flapping", *_TOXICS)
STREAMS = ("upstream", "downstream")
"""A toxic fault's optional `stream` parameter makes it one-way (default: the kind's own)."""
PROCESS_KINDS = ("sigkill", "sigstop")
# Forgetful-disk faults (scenarios/fs, docs/powercut.md): a power cut of a process's disk,
# and the journal disk refusing writes.
POWER_TARGETS = ("redis", "target")
DISK_TARGETS = ("journal",)
DISK_KINDS = ("disk_full", "disk_eio", "disk_readonly")
# Data faults act on a store's contents over its direct URL (scenarios/redis_data.py).
DATA_KINDS = ("fill",)
DATA_TARGETS = ("redis",)
KINDS = (*NETWORK_KINDS, *PROCESS_KINDS, "powercut", *DISK_KINDS, *DATA_KINDS)
_PARAMS: dict[str, set[str]] = {
    **{kind: {*attrs, "stream"} for kind, (_, attrs, _) in _TOXICS.items()},
    "down": set(),
    "flapping": {"period_s"},
    "sigkill": {"restart"},
    "sigstop": set(),
    "powercut": set(),
    **{kind: set() for kind in DISK_KINDS},
    "fill": {"mb"},
}


class FaultError(ValueError):
    """A fault spec that cannot be applied (unknown kind, target or parameter)."""


@dataclass(frozen=True)
class FaultSpec:
    """What to break: e.g. FaultSpec("latency", "redis", {"latency": 500, "jitter": 50})."""

    kind: str
    target: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The fault's name in histories and reports, e.g. "redis-latency"."""
        return f"{self.target}-{self.kind}"

    def validate(self) -> FaultSpec:
        """This spec, or FaultError naming what is wrong (kind, target, parameter)."""
        if self.kind not in KINDS:
            raise FaultError(f"unknown fault {self.kind!r} (choose one of {', '.join(KINDS)})")
        targets: tuple[str, ...] = (
            NETWORK_TARGETS if self.kind in NETWORK_KINDS else PROCESS_TARGETS
        )
        targets = POWER_TARGETS if self.kind == "powercut" else targets
        targets = DISK_TARGETS if self.kind in DISK_KINDS else targets
        targets = DATA_TARGETS if self.kind in DATA_KINDS else targets
        per_instance = self.kind in NETWORK_KINDS and _INSTANCE_PROXY.match(self.target)
        replicated = (self.kind in NETWORK_KINDS and _REPLICATED_PROXY.match(self.target)) or (
            self.kind in PROCESS_KINDS and _REPLICATED_PROCESS.match(self.target)
        )
        if self.target not in targets and not per_instance and not replicated:
            raise FaultError(
                f"fault {self.kind!r} cannot target {self.target!r} (choose {', '.join(targets)})"
            )
        unknown = set(self.params) - _PARAMS[self.kind]
        if unknown:
            raise FaultError(f"fault {self.kind!r}: unknown parameter(s) {sorted(unknown)}")
        for key, value in self.params.items():
            if key == "stream":
                if value not in STREAMS:
                    raise FaultError(f"fault {self.kind!r}: stream must be one of {STREAMS}")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                if key != "restart":
                    raise FaultError(f"fault {self.kind!r}: {key} must be a number")
            elif value < 0:
                raise FaultError(f"fault {self.kind!r}: {key} must not be negative")
        if self.kind == "flapping" and float(self.params.get("period_s", 2.0)) <= 0:
            raise FaultError("fault 'flapping': period_s must be positive")
        return self

    @classmethod
    def parse(cls, name: str, params: Mapping[str, Any] | None = None) -> FaultSpec:
        """'redis-blackhole' -> FaultSpec("blackhole", "redis")."""
        target, sep, kind = name.partition("-")
        if not sep:
            raise FaultError(f"fault {name!r}: expected TARGET-KIND, e.g. redis-blackhole")
        return cls(kind.replace("-", "_"), target, dict(params or {})).validate()


class ProcessHandle(Protocol):
    """What a process fault needs (ManagedProcess implements it)."""

    def kill(self) -> None:
        """SIGKILL the process."""

    def start(self, timeout_s: float = 30.0) -> None:
        """Start (or restart) the process and wait until it is ready."""

    def pause(self) -> None:
        """SIGSTOP the process."""

    def resume(self) -> None:
        """SIGCONT the process (a no-op when it is not paused)."""


Revert = Callable[[], None]


class FaultInjector:
    """Applies faults through a Toxiproxy client (and to processes) and reverts them reliably.

    Network faults need only `toxiproxy`; process faults need the stack's `services` (the
    local stack's Redis and PostgreSQL) or the `targets` (the target instances).
    """

    def __init__(
        self,
        toxiproxy: Toxiproxy,
        services: Mapping[str, ProcessHandle] | None = None,
        targets: Callable[[], list[ProcessHandle]] | None = None,
        disks: StackDisks | None = None,
        redis_direct_url: str | None = None,
    ) -> None:
        self._toxiproxy = toxiproxy
        self._redis_direct_url = redis_direct_url  # for data faults (redis-fill)
        self._disks = disks  # the local stack's forgetful disks: power-cut and disk faults
        self._services: Mapping[str, ProcessHandle] = services or {}
        self._targets = targets or (lambda: [])
        self._active: list[tuple[FaultSpec, Revert]] = []
        self._lock = threading.Lock()
        # a kill waits for a restart still under way (a process killed while starting
        # would fail the restart, not test the target)
        self._process_lock = threading.Lock()

    @classmethod
    def on_stack(
        cls, stack: Stack, targets: Callable[[], list[ProcessHandle]] | None = None
    ) -> FaultInjector:
        """An injector on a running stack: its Toxiproxy and the services it can signal."""
        return cls(
            stack.toxiproxy, stack.services, targets, stack.disks, stack.urls.redis_direct_url
        )

    @property
    def active(self) -> list[FaultSpec]:
        """The faults applied and not yet reverted, oldest first."""
        with self._lock:
            return [spec for spec, _ in self._active]

    def apply(self, spec: FaultSpec) -> FaultSpec:
        """Make the fault happen and remember how to undo it; returns the spec."""
        spec.validate()
        revert = self._apply(spec)
        with self._lock:
            self._active.append((spec, revert))
        return spec

    def revert(self, spec: FaultSpec) -> None:
        """Undo one applied fault (the same spec object); a no-op when not active."""
        with self._lock:
            index = next((i for i, (s, _) in enumerate(self._active) if s is spec), None)
            if index is None:
                return
            _, undo = self._active.pop(index)
        undo()

    def revert_all(self) -> list[str]:
        """Undo every active fault (newest first); returns the errors met, never raises."""
        errors: list[str] = []
        while True:
            with self._lock:
                if not self._active:
                    break
                spec, undo = self._active.pop()
            try:
                undo()
            except Exception as exc:
                errors.append(f"{spec.name}: {exc}")
        return errors

    def _apply(self, spec: FaultSpec) -> Revert:
        if spec.kind == "powercut" or spec.kind in DISK_KINDS:
            return self._apply_disk(spec)
        if spec.kind in PROCESS_KINDS:
            return self._apply_process(spec)
        if spec.kind == "fill":
            if self._redis_direct_url is None:
                raise FaultError("redis-fill needs the stack's direct Redis URL")
            return fill_redis(self._redis_direct_url, float(spec.params.get("mb", 16)))
        proxy = self._toxiproxy.proxy(spec.target)
        if spec.kind == "down":
            proxy.disable()
            return lambda: _ignore(proxy.enable())
        if spec.kind == "flapping":
            return _Flapper(proxy, float(spec.params.get("period_s", 2.0))).start()
        toxic_type, defaults, streams = _TOXICS[spec.kind]
        attributes = {**defaults, **spec.params}
        if "stream" in attributes:
            streams = (str(attributes.pop("stream")),)
        names: list[str] = []

        def remove() -> None:
            for name in names:
                try:
                    proxy.remove_toxic(name)
                except ToxiproxyError as exc:
                    if exc.status != 404:
                        raise

        try:
            for stream in streams:
                toxic = proxy.add_toxic(toxic_type, attributes, stream=stream)  # type: ignore[arg-type]
                names.append(toxic.name)
        except BaseException:
            remove()  # a half-applied fault (the second toxic failed) is undone at once
            raise
        return remove

    def _apply_process(self, spec: FaultSpec) -> Revert:
        handles = self._process_handles(spec.target)
        if spec.kind == "sigstop":
            for handle in handles:
                handle.pause()

            def resume() -> None:
                for handle in handles:
                    handle.resume()

            return resume
        with self._process_lock:
            for handle in handles:
                handle.kill()

        def restart() -> None:
            if spec.params.get("restart", True) is not False:
                with self._process_lock:
                    for handle in handles:
                        handle.start()

        return restart

    def _apply_disk(self, spec: FaultSpec) -> Revert:
        disks = self._disks
        if disks is None:
            raise FaultError("this stack has no forgetful disks (the local stack has them)")
        disk = "journal" if spec.target in ("target", "journal") else spec.target
        try:
            mount = disks.mount(disk)
        except StackError as exc:
            raise FaultError(str(exc)) from exc
        if spec.kind == "powercut":
            return power.power_cut(self._process_handles(spec.target), mount)
        return power.disk_fault(mount, spec.kind)

    def _process_handles(self, target: str) -> list[ProcessHandle]:
        if target == "target":
            handles = self._targets()
            if not handles:
                raise FaultError("no target process to signal")
            return handles
        service = self._services.get(target)
        if service is None:
            raise FaultError(f"this stack cannot signal {target!r} (not a local process)")
        return [service]


class _Flapper:
    """Disables and enables a proxy every half period until reverted."""

    def __init__(self, proxy: Proxy, period_s: float) -> None:
        self._proxy = proxy
        self._half = period_s / 2
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"flap-{proxy.name}", daemon=True)

    def start(self) -> Revert:
        self._proxy.disable()
        self._thread.start()
        return self.stop

    def _run(self) -> None:
        enabled = False
        while not self._stop.wait(self._half):
            enabled = not enabled
            try:
                self._proxy.update(enabled=enabled)
            except ToxiproxyError:
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._proxy.enable()


def _ignore(_: object) -> None:
    return None
