"""The load contract: what `stormproof load` tells the locustfile, through its environment.

Locust runs in its own processes (it monkey-patches with gevent), so the only channel is the
environment. `LoadEnv` is that contract, typed: the command builds one and passes `to_env()`;
the locustfile reads it back with `from_env()` (every variable optional, for runs by hand).
A bad value stops start-up with an error naming the variable.

This module imports nothing from `reference` (the locustfile must not, see its docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

PREFIX = "STORMPROOF_LOAD_"
TOXIPROXY_URL = "STORMPROOF_TOXIPROXY_URL"
_T = TypeVar("_T")


def beneficio_ids(n: int) -> tuple[str, ...]:
    """The beneficio ids the load reads and writes (seeded before it starts)."""
    return tuple(f"load-{i}" for i in range(1, n + 1))


def cache_keys(n: int) -> tuple[str, ...]:
    """The cache keys the load reads and writes (seeded before it starts)."""
    return tuple(f"load-k{i}" for i in range(1, n + 1))


_DEFAULT_IDS = beneficio_ids(20)
_DEFAULT_KEYS = cache_keys(20)


@dataclass(frozen=True)
class LoadEnv:
    """The locustfile's settings; the defaults are those of a run by hand."""

    phases: tuple[float, float, float] = (20.0, 20.0, 20.0)
    """Seconds of baseline, fault and recovery."""
    warmup_s: float = 2.0
    users: int = 20
    spawn_rate: float | None = None
    """Users started per second; None: all at once."""
    user_rps: float = 10.0
    timeout_s: float = 5.0
    fault: str = "redis-blackhole"
    """A network fault of scenarios.faults, or "none"."""
    toxiproxy_url: str = ""
    ids: tuple[str, ...] = _DEFAULT_IDS
    cache_keys: tuple[str, ...] = _DEFAULT_KEYS
    acks: Path | None = None
    """File for acknowledged audit event ids; a distributed worker appends ".<pid>"."""
    phase_log: Path | None = None
    """JSON file: when each phase started and ended, and the fault."""

    @property
    def users_per_s(self) -> float:
        """The spawn rate, all users at once when none was given."""
        return self.spawn_rate if self.spawn_rate is not None else float(self.users)

    def to_env(self) -> dict[str, str]:
        """The environment variables that carry these settings."""
        env = {
            TOXIPROXY_URL: self.toxiproxy_url,
            f"{PREFIX}PHASES": ",".join(f"{p:g}" for p in self.phases),
            f"{PREFIX}WARMUP_S": f"{self.warmup_s:g}",
            f"{PREFIX}USERS": str(self.users),
            f"{PREFIX}USER_RPS": f"{self.user_rps:g}",
            f"{PREFIX}TIMEOUT_S": f"{self.timeout_s:g}",
            f"{PREFIX}FAULT": self.fault,
            f"{PREFIX}IDS": ",".join(self.ids),
            f"{PREFIX}CACHE_KEYS": ",".join(self.cache_keys),
            f"{PREFIX}ACKS": str(self.acks) if self.acks else "",
            f"{PREFIX}PHASE_LOG": str(self.phase_log) if self.phase_log else "",
        }
        if self.spawn_rate is not None:
            env[f"{PREFIX}SPAWN_RATE"] = f"{self.spawn_rate:g}"
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LoadEnv:
        """Read the settings back; an unset or empty variable keeps its default."""
        default = cls()

        def get(name: str, parse: Callable[[str], _T], fallback: _T) -> _T:
            raw = environ.get(name, "").strip()
            if not raw:
                return fallback
            try:
                return parse(raw)
            except ValueError as exc:
                raise ValueError(f"{name}={raw!r}: {exc}") from None

        return cls(
            phases=get(f"{PREFIX}PHASES", _phases, default.phases),
            warmup_s=get(f"{PREFIX}WARMUP_S", _non_negative, default.warmup_s),
            users=get(f"{PREFIX}USERS", _positive_int, default.users),
            spawn_rate=get(f"{PREFIX}SPAWN_RATE", _positive, default.spawn_rate),
            user_rps=get(f"{PREFIX}USER_RPS", _positive, default.user_rps),
            timeout_s=get(f"{PREFIX}TIMEOUT_S", _positive, default.timeout_s),
            fault=get(f"{PREFIX}FAULT", str, default.fault),
            toxiproxy_url=get(TOXIPROXY_URL, str, default.toxiproxy_url),
            ids=get(f"{PREFIX}IDS", _names, default.ids),
            cache_keys=get(f"{PREFIX}CACHE_KEYS", _names, default.cache_keys),
            acks=get(f"{PREFIX}ACKS", Path, default.acks),
            phase_log=get(f"{PREFIX}PHASE_LOG", Path, default.phase_log),
        )


def _positive(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("expected a number > 0")
    return value


def _non_negative(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError("expected a number >= 0")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("expected an integer >= 1")
    return value


def _names(raw: str) -> tuple[str, ...]:
    names = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not names:
        raise ValueError("expected a comma-separated list")
    return names


def _phases(raw: str) -> tuple[float, float, float]:
    parts = _names(raw)
    if len(parts) != 3:
        raise ValueError(f"expected 3 durations (baseline, fault, recovery), got {len(parts)}")
    baseline, fault, recovery = (_non_negative(p) for p in parts)
    return baseline, fault, recovery
