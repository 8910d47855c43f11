"""Is the Redis behind the audit queue able to keep what it acknowledges?

An XADD acknowledged by Redis is only as durable as that Redis:

- `maxmemory-policy allkeys-*` (normal for a cache) may evict the stream itself;
- `appendonly no`, or `appendfsync` other than `always`, loses acknowledged entries on a
  restart or a host crash (up to a second with `everysec`);
- a replica (`role:slave`) does not take writes at all.

`QueueGuard` holds the verdict. It is re-read on every new connection of the queue's
client (start-up and every reconnect) through `guarded_connection_class`, before that
connection carries any XADD, so a Redis reconfigured or replaced behind the same address
is noticed. When the queue is unsafe the audit does not use it (database, then journal)
unless the operator accepted the risk (`AUDITORIA_QUEUE_ACCEPT_UNSAFE=true`); either way
`/health`, `/resilience`, the gauge `stormproof_audit_queue_unsafe` and the alert
AUDIT_QUEUE_UNSAFE say so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["QueueGuard", "QueueSafety", "assess", "guarded_connection_class"]

_log = logging.getLogger(__name__)
CONFIG_KEYS = ("appendonly", "appendfsync", "maxmemory-policy")


@dataclass(frozen=True)
class QueueSafety:
    """The verdict on one Redis: `problems` empty means the queue can be durable there."""

    problems: tuple[str, ...] = ()
    checked: bool = True

    @property
    def safe(self) -> bool:
        return self.checked and not self.problems


UNCHECKED = QueueSafety(("not checked yet",), checked=False)


def assess(config: Mapping[str, str], role: str) -> QueueSafety:
    """The problems with a Redis whose CONFIG GET says `config` and INFO says `role`."""
    problems = []
    if config.get("appendonly", "").lower() != "yes":
        problems.append(f"appendonly is {config.get('appendonly', '?')!r} (needs yes)")
    elif config.get("appendfsync", "").lower() != "always":
        problems.append(
            f"appendfsync is {config.get('appendfsync', '?')!r} (needs always: "
            "acknowledged XADDs are lost on a crash otherwise)"
        )
    policy = config.get("maxmemory-policy", "").lower()
    if policy.startswith("allkeys-"):
        problems.append(f"maxmemory-policy is {policy!r} (the stream itself can be evicted)")
    if role and role != "master":
        problems.append(f"role is {role!r} (a replica does not take writes)")
    return QueueSafety(tuple(problems))


class QueueGuard:
    """The current verdict on the queue's Redis, and whether the audit may use the queue."""

    def __init__(
        self,
        accept_unsafe: bool = False,
        on_change: Callable[[QueueSafety], None] | None = None,
    ) -> None:
        self.accept_unsafe = accept_unsafe
        self._safety = UNCHECKED
        self._on_change = on_change

    @property
    def safety(self) -> QueueSafety:
        return self._safety

    @property
    def usable(self) -> bool:
        """True when the queue may take events: checked and safe, or the risk explicitly
        accepted. Not checked yet (Redis not reached since start-up): not used."""
        return self.accept_unsafe or self._safety.safe

    @property
    def known_unsafe(self) -> bool:
        """Checked, and unsafe (what the gauge and the alert say; unchecked is neither)."""
        return self._safety.checked and not self._safety.safe

    def update(self, safety: QueueSafety) -> None:
        """Record a new verdict; logs and notifies when it changes."""
        previous, self._safety = self._safety, safety
        if previous.problems != safety.problems or previous.checked != safety.checked:
            if safety.safe:
                _log.info("audit queue: Redis can keep the queue durably")
            else:
                _log.warning(
                    "audit queue: Redis cannot keep the queue durably (%s); %s",
                    "; ".join(safety.problems),
                    "using it anyway (risk accepted)"
                    if self.accept_unsafe
                    else "events go to the database or the journal instead",
                )
            if self._on_change is not None:
                self._on_change(safety)

    def to_dict(self) -> dict[str, Any]:
        """For /health: safe, used, problems."""
        return {
            "safe": self._safety.safe,
            "used": self.usable,
            "accepted_risk": self.accept_unsafe,
            "problems": list(self._safety.problems),
        }

    async def check_connection(self, connection: AbstractConnection) -> None:
        """Read the settings on a fresh `connection` and update the verdict. A connection
        failure propagates (the connect fails); anything else is a verdict."""
        try:
            await connection.send_command("CONFIG", "GET", *CONFIG_KEYS)
            config = _pairs(await connection.read_response())
            await connection.send_command("INFO", "replication")
            role = _role(await connection.read_response())
        except (RedisConnectionError, RedisTimeoutError, OSError):
            raise
        except ResponseError as exc:
            self.update(QueueSafety((f"cannot read the configuration ({exc})",)))
            return
        self.update(assess(config, role))


def guarded_connection_class(
    guard: QueueGuard, base: type[AbstractConnection] = Connection
) -> type[AbstractConnection]:
    """A subclass of `base` that checks Redis with `guard` as soon as it connects."""

    async def on_connect_check_health(self: AbstractConnection, check_health: bool = True) -> None:
        await base.on_connect_check_health(self, check_health=check_health)
        await guard.check_connection(self)

    return type(
        f"Guarded{base.__name__}", (base,), {"on_connect_check_health": on_connect_check_health}
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):
        return {_text(k).lower(): _text(v) for k, v in reply.items()}
    items = list(reply or [])
    return {_text(items[i]).lower(): _text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def _role(reply: Any) -> str:
    for line in _text(reply).splitlines():
        if line.startswith("role:"):
            return line.split(":", 1)[1].strip()
    return ""
