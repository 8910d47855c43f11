"""What every stack provider gives: URLs, a Toxiproxy client, and (local only) processes."""

from __future__ import annotations

import atexit
import signal
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from scenarios.stack.errors import StackError
from scenarios.toxiproxy import Proxy, Toxiproxy

if TYPE_CHECKING:
    from scenarios.fs.disks import StackDisks
    from scenarios.stack.prometheus import PrometheusServer
    from scenarios.stack.replicated import ReplicatedRedis

REDIS_PROXY = "redis"
POSTGRES_PROXY = "postgres"
_ENV_KEYS = {
    "toxiproxy_url": "STORMPROOF_TOXIPROXY_URL",
    "redis_url": "REDIS_URL",
    "database_url": "DATABASE_URL",
    "redis_direct_url": "REDIS_DIRECT_URL",
    "database_direct_url": "DATABASE_DIRECT_URL",
}
_SENTINEL_KEYS = {
    "redis_sentinel_urls": "REDIS_SENTINEL_URLS",
    "redis_sentinel_master": "REDIS_SENTINEL_MASTER",
    "redis_sentinel_address_map": "REDIS_SENTINEL_ADDRESS_MAP",
}


@dataclass(frozen=True)
class StackUrls:
    """Where things are: the target uses the proxied URLs, truth checks the direct ones."""

    toxiproxy_url: str
    redis_url: str
    database_url: str
    redis_direct_url: str
    database_direct_url: str
    redis_sentinel_urls: str = ""
    """A replicated Redis: its Sentinels (comma-separated redis:// URLs), else empty."""
    redis_sentinel_master: str = ""
    redis_sentinel_address_map: str = ""
    """`announced=reachable` address pairs (scenarios/stack/replicated.py)."""

    def as_env(self) -> dict[str, str]:
        """The URLs as environment variables (stack.env, the target's environment)."""
        return {var: getattr(self, attr) for attr, var in _ENV_KEYS.items()} | self.sentinel_env()

    def sentinel_env(self) -> dict[str, str]:
        """REDIS_SENTINEL_* for a replicated Redis (empty for a single node)."""
        return {var: getattr(self, a) for a, var in _SENTINEL_KEYS.items() if getattr(self, a)}

    @classmethod
    def from_env(cls, env: Mapping[str, str], source: str = "environment") -> StackUrls:
        """The URLs from environment variables; StackError naming the missing ones."""
        missing = [var for var in _ENV_KEYS.values() if not env.get(var)]
        if missing:
            raise StackError(f"{source}: missing {', '.join(missing)}")
        for var in _ENV_KEYS.values():
            value = env[var]
            if "://" not in value:
                raise StackError(f"{source}: {var} is not a URL: {value!r}")
        sentinel = {attr: env[var] for attr, var in _SENTINEL_KEYS.items() if env.get(var)}
        return cls(**{attr: env[var] for attr, var in _ENV_KEYS.items()}, **sentinel)


class Service(Protocol):
    """A dependency process the harness may crash, pause and restart."""

    name: str

    @property
    def pid(self) -> int | None:
        """The process id, None when not running."""

    @property
    def running(self) -> bool:
        """True while the process is alive."""

    def kill(self) -> None:
        """SIGKILL the process."""

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the process and wait until it is ready."""

    def restart(self, timeout_s: float = 30.0) -> None:
        """Kill, then start again."""

    def pause(self) -> None:
        """SIGSTOP the process."""

    def resume(self) -> None:
        """SIGCONT the process."""


@dataclass
class Stack:
    """A running stack. `services` is empty when the provider cannot touch processes."""

    provider: str
    urls: StackUrls
    toxiproxy: Toxiproxy
    services: Mapping[str, Service] = field(default_factory=dict)
    disks: StackDisks | None = None  # forgetful disks (local stack with FUSE): power cuts
    _closers: list[object] = field(default_factory=list, repr=False)
    prometheus: PrometheusServer | None = None
    """A Prometheus scraping the targets (started on request: `open_stack(prometheus=True)`)."""
    redis_set: ReplicatedRedis | None = None
    """The replicated Redis (`--redis replicated`): healed and reset with the stack."""

    def proxy(self, name: str) -> Proxy:
        """The named Toxiproxy proxy."""
        return self.toxiproxy.proxy(name)

    @property
    def redis_proxy(self) -> Proxy:
        """The proxy in front of Redis."""
        return self.proxy(REDIS_PROXY)

    @property
    def postgres_proxy(self) -> Proxy:
        """The proxy in front of PostgreSQL."""
        return self.proxy(POSTGRES_PROXY)

    def heal(self) -> None:
        """Undo every fault: resume and restart services, enable proxies, drop toxics."""
        for service in self.services.values():
            service.resume()
            if not service.running:
                service.start()
        self.toxiproxy.reset()
        if self.disks is not None:
            self.disks.heal()
        if self.redis_set is not None:
            self.redis_set.heal()  # one primary again, every other node its replica

    def close(self) -> None:
        """Stop everything this stack started (idempotent)."""
        closers, self._closers = self._closers, []
        self.toxiproxy.close()
        for closer in reversed(closers):
            close = getattr(closer, "close", None)
            if callable(close):
                close()
        _live.discard(self)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __hash__(self) -> int:
        return id(self)


_live: weakref.WeakSet[Stack] = weakref.WeakSet()


def track(stack: Stack) -> Stack:
    """Register a stack so that process exit (and SIGTERM) closes it."""
    _live.add(stack)
    return stack


def close_all() -> None:
    """Close every tracked stack (at exit, on SIGTERM); errors are ignored."""
    for stack in list(_live):
        try:
            stack.close()
        except Exception:
            pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install_sigterm_cleanup() -> None:
    """Turn SIGTERM into KeyboardInterrupt so `finally` blocks and atexit tear stacks down."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)


atexit.register(close_all)
