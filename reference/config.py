"""Settings: one frozen object built from the environment at the edge and passed in.

Every value is parsed and validated up front; a bad one raises `ConfigError`, whose
message is one line naming the variable. An empty value means "unset" (the default
applies), as in the seed's `process.env.X || default`. Durations are stored in
seconds (float) in fields named `*_s`, whatever unit the variable uses.
Secrets are `Secret` objects and URLs are redacted wherever settings are shown.
"""

from __future__ import annotations

import hmac
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import NoReturn
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit, urlunsplit

from reference.sentinel import SentinelConfig, sentinel_config_from_env

__all__ = [
    "ConfigError",
    "LogFormat",
    "Secret",
    "Settings",
    "load_settings_or_exit",
    "redact_opaque_url",
    "redact_url",
]

_MASK = "***"
_INT = re.compile(r"[+-]?[0-9]+")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_DATABASE_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
_SECRET_QUERY_KEYS = ("pass", "pwd", "token", "secret", "key")


MIN_HMAC_KEY_BYTES = 16
"""The journal's HMAC chain key must be at least this long (see journal_format)."""
MIN_ADMIN_TOKEN_CHARS = 16
"""ADMIN_TOKEN must be at least this long (a short bearer token can be guessed)."""
MAX_RECORD_BYTES = 4 * 1024 * 1024
"""The largest journal record (journal_format.MAX_RECORD_BYTES, repeated: no import cycle)."""


class ConfigError(ValueError):
    """A configuration value that cannot be used; `str()` is one line."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = " ".join(problem.split())
        super().__init__(f"{variable}: {self.problem}")


class Secret:
    """A string that never shows itself: repr and str are `***`; `reveal()` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value itself (never logged: `repr` and `str` mask it)."""
        return self._value

    def matches(self, candidate: str) -> bool:
        """Constant-time comparison (for tokens presented by clients)."""
        return hmac.compare_digest(self._value.encode(), candidate.encode())

    def __repr__(self) -> str:
        return _MASK

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.matches(other._value)

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> tuple[Callable[[str], Secret], tuple[str]]:
        return (Secret, (self._value,))


class LogFormat(StrEnum):
    """LOG_FORMAT: `json`, `text`, or `auto` (JSON unless the stream is a TTY)."""

    AUTO = "auto"
    JSON = "json"
    TEXT = "text"


def redact_url(url: str) -> str:
    """`url` with its password (and secret-looking query values) replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed netloc: never echo what we cannot take apart
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{_MASK}@{hostport}" if has_password else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, _MASK if _secret_key(k) else v) for k, v in pairs], safe="*/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secret_key(name: str) -> bool:
    return any(s in name.lower() for s in _SECRET_QUERY_KEYS)


def redact_opaque_url(url: str) -> str:
    """Keep only scheme and host: webhook URLs carry their secret in the path or query
    (used for the settings' public view and the alert webhook's log lines)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "<unparseable url>"
    if parts.path.strip("/") or parts.query:
        return f"{parts.scheme}://{host}/{_MASK}"
    return redact_url(url)


@dataclass(frozen=True, repr=False)
class Settings:
    """All of the reference service's configuration (see `from_env` for the variables)."""

    disable_redis: bool = False
    redis_host: str = "localhost"
    redis_port: int = 6379
    redis_password: Secret | None = None
    redis_url: str = "redis://localhost:6379/0"
    redis_op_timeout_s: float = 0.25
    database_url: str = "postgresql://postgres@localhost:5432/postgres"
    db_op_timeout_s: float = 2.0
    db_connect_timeout_s: float = 2.0
    cache_ttl_s: float = 3600.0
    cache_l1_ttl_s: float = 300.0
    cache_l1_max_items: int = 1000
    cache_stale_window_s: float = 300.0
    cache_l2_key_prefix: str = "stormproof:"
    breaker_failure_threshold: int = 5
    breaker_reset_timeout_s: float = 30.0
    breaker_half_open_max_calls: int = 3
    audit_sync_fallback: bool = True
    audit_file_backup: bool = True
    audit_backup_path: Path = Path("./logs/audit-backup")
    audit_recovery_interval_s: float = 300.0
    audit_hmac_key: Secret | None = None
    audit_journal_segment_bytes: int = 16_777_216
    audit_queue_stream: str = "audit:events"
    audit_max_deliveries: int = 5
    audit_timeout_s: float = 1.0
    audit_redis_url: str | None = None
    audit_queue_accept_unsafe: bool = False
    audit_queue_min_replicas: int = 0
    cache_min_replicas: int = 0
    redis_sentinels: SentinelConfig | None = None
    audit_journal_max_pending_bytes: int = 8 * 1024 * 1024
    metrics_enabled: bool = True
    alerts_enabled: bool = True
    health_check_interval_s: float = 60.0
    alert_webhook_url: str | None = None
    alert_cooldown_s: float = 300.0
    alert_eval_interval_s: float = 5.0
    alert_redis_failures_threshold: int = 5
    alert_fallback_usage_threshold: float = 0.5
    admin_token: Secret | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    instance_id: str = "default"
    log_format: LogFormat = LogFormat.AUTO

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse and validate `env` (normally `os.environ`); raise `ConfigError` on a bad value."""
        r = _Reader(env)
        redis_host = r.text("REDIS_HOST", "localhost")
        redis_port = r.port("REDIS_PORT", 6379)
        redis_password = r.secret("REDIS_PASSWORD")
        cache_ttl_s = float(r.integer("CACHE_TTL", 3600, minimum=1, unit="seconds"))
        cache_l1_ttl_s = float(r.integer("CACHE_L1_TTL", 300, minimum=1, unit="seconds"))
        if cache_l1_ttl_s > cache_ttl_s:
            raise ConfigError(
                "CACHE_L1_TTL",
                f"must not exceed CACHE_TTL ({cache_ttl_s:g} s), got {cache_l1_ttl_s:g}",
            )
        hmac_key = r.secret("AUDITORIA_HMAC_KEY")
        if hmac_key is not None and len(hmac_key.reveal().encode()) < MIN_HMAC_KEY_BYTES:
            raise ConfigError(
                "AUDITORIA_HMAC_KEY", f"must be at least {MIN_HMAC_KEY_BYTES} bytes long"
            )
        admin_token = r.secret("ADMIN_TOKEN")
        if admin_token is not None and len(admin_token.reveal()) < MIN_ADMIN_TOKEN_CHARS:
            raise ConfigError(
                "ADMIN_TOKEN", f"must be at least {MIN_ADMIN_TOKEN_CHARS} characters long"
            )
        return cls(
            disable_redis=r.boolean("DISABLE_REDIS", False),
            redis_host=redis_host,
            redis_port=redis_port,
            redis_password=redis_password,
            redis_url=r.url(
                "REDIS_URL",
                _default_redis_url(redis_host, redis_port, redis_password),
                _check_redis_url,
            ),
            redis_op_timeout_s=r.millis("REDIS_OP_TIMEOUT_MS", 250, minimum=1),
            database_url=r.url(
                "DATABASE_URL", "postgresql://postgres@localhost:5432/postgres", _check_db_url
            ),
            db_op_timeout_s=r.millis("DB_OP_TIMEOUT_MS", 2000, minimum=1),
            db_connect_timeout_s=r.millis("DB_CONNECT_TIMEOUT_MS", 2000, minimum=1),
            cache_ttl_s=cache_ttl_s,
            cache_l1_ttl_s=cache_l1_ttl_s,
            cache_l1_max_items=r.integer("CACHE_L1_MAX_ITEMS", 1000, minimum=1),
            cache_stale_window_s=float(
                r.integer("CACHE_STALE_WINDOW", 300, minimum=0, unit="seconds")
            ),
            cache_l2_key_prefix=r.text("CACHE_L2_KEY_PREFIX", "stormproof:"),
            breaker_failure_threshold=r.integer("CIRCUIT_BREAKER_FAILURE_THRESHOLD", 5, minimum=1),
            breaker_reset_timeout_s=r.millis("CIRCUIT_BREAKER_RESET_TIMEOUT", 30_000, minimum=0),
            breaker_half_open_max_calls=r.integer(
                "CIRCUIT_BREAKER_HALF_OPEN_MAX_CALLS", 3, minimum=1
            ),
            audit_sync_fallback=r.boolean("AUDITORIA_ENABLE_SYNC_FALLBACK", True),
            audit_file_backup=r.boolean("AUDITORIA_ENABLE_FILE_BACKUP", True),
            audit_backup_path=Path(r.text("AUDITORIA_BACKUP_PATH", "./logs/audit-backup")),
            audit_recovery_interval_s=r.millis("AUDITORIA_RECOVERY_INTERVAL", 300_000, minimum=1),
            audit_hmac_key=hmac_key,
            audit_journal_segment_bytes=r.integer(
                "AUDITORIA_JOURNAL_SEGMENT_BYTES", 16_777_216, minimum=4096, unit="bytes"
            ),
            audit_queue_stream=r.text("AUDITORIA_QUEUE_STREAM", "audit:events"),
            audit_max_deliveries=r.integer("AUDITORIA_MAX_DELIVERIES", 5, minimum=1),
            audit_timeout_s=r.millis("AUDITORIA_TIMEOUT_MS", 1000, minimum=1),
            audit_redis_url=r.optional_url("AUDITORIA_REDIS_URL", _check_redis_url),
            audit_queue_accept_unsafe=r.boolean("AUDITORIA_QUEUE_ACCEPT_UNSAFE", False),
            audit_queue_min_replicas=r.integer("AUDITORIA_QUEUE_MIN_REPLICAS", 0, minimum=0),
            cache_min_replicas=r.integer("CACHE_MIN_REPLICAS", 0, minimum=0),
            redis_sentinels=sentinel_config_from_env(r.raw, ConfigError),
            audit_journal_max_pending_bytes=r.integer(
                "AUDITORIA_JOURNAL_MAX_PENDING_BYTES",
                8 * 1024 * 1024,
                minimum=MAX_RECORD_BYTES,
                unit="bytes",
            ),
            metrics_enabled=r.boolean("RESILIENCE_METRICS_ENABLED", True),
            alerts_enabled=r.boolean("RESILIENCE_ALERTS_ENABLED", True),
            health_check_interval_s=r.millis("HEALTH_CHECK_INTERVAL", 60_000, minimum=1),
            alert_webhook_url=r.optional_url(
                "ALERT_WEBHOOK_URL", _check_webhook_url, redact_opaque_url
            ),
            alert_cooldown_s=r.millis("ALERT_COOLDOWN", 300_000, minimum=0),
            alert_eval_interval_s=r.millis("ALERT_EVAL_INTERVAL", 5000, minimum=1),
            alert_redis_failures_threshold=r.integer(
                "ALERT_REDIS_FAILURES_THRESHOLD", 5, minimum=1
            ),
            alert_fallback_usage_threshold=r.fraction("ALERT_FALLBACK_USAGE_THRESHOLD", 0.5),
            admin_token=admin_token,
            host=r.text("HOST", "127.0.0.1"),
            port=r.port("PORT", 8000),
            instance_id=r.text("INSTANCE_ID", "default"),
            log_format=r.choice("LOG_FORMAT", LogFormat, LogFormat.AUTO),
        )

    @property
    def sqlalchemy_url(self) -> str:
        """`database_url` with the `postgresql+psycopg://` scheme (credentials included)."""
        _, sep, rest = self.database_url.partition("://")
        return f"postgresql+psycopg://{rest}" if sep else self.database_url

    @property
    def admin_enabled(self) -> bool:
        """Admin endpoints answer only when a token is configured."""
        return self.admin_token is not None

    def public_dict(self) -> dict[str, str | int | float | bool | None]:
        """A JSON-safe view for logs and JSON output: secrets as `***`, URLs redacted."""
        out: dict[str, str | int | float | bool | None] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                out[f.name] = _MASK
            elif isinstance(value, Path | StrEnum):
                out[f.name] = str(value)
            elif isinstance(value, SentinelConfig):
                out[f.name] = value.describe()
            elif f.name == "alert_webhook_url" and value is not None:
                out[f.name] = redact_opaque_url(value)
            elif f.name.endswith("_url") and value is not None:
                out[f.name] = redact_url(value)
            else:
                out[f.name] = value
        return out

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.public_dict().items())
        return f"Settings({body})"


def load_settings_or_exit(env: Mapping[str, str]) -> Settings:
    """`Settings.from_env(env)`, or the one-line error on stderr and exit status 2."""
    try:
        return Settings.from_env(env)
    except ConfigError as exc:
        _exit_with(exc)


def _exit_with(exc: ConfigError) -> NoReturn:
    print(f"configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2)


class _Reader:
    """Reads one variable at a time; empty means unset."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def raw(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def secret(self, name: str) -> Secret | None:
        value = self._env.get(name, "")
        return Secret(value) if value else None

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.raw(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(name, f"expected true/false (or 1/0, yes/no, on/off), got {raw!r}")

    def integer(self, name: str, default: int, *, minimum: int, unit: str = "") -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        expected = f"expected {kind}{f' ({unit})' if unit else ''}"
        if not _INT.fullmatch(raw) or int(raw) < minimum:
            raise ConfigError(name, f"{expected}, got {raw!r}")
        return int(raw)

    def millis(self, name: str, default: int, *, minimum: int) -> float:
        return self.integer(name, default, minimum=minimum, unit="milliseconds") / 1000.0

    def port(self, name: str, default: int) -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        if not _INT.fullmatch(raw) or not 1 <= int(raw) <= 65535:
            raise ConfigError(name, f"expected a TCP port (1-65535), got {raw!r}")
        return int(raw)

    def fraction(self, name: str, default: float) -> float:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise ConfigError(name, f"expected a number between 0 and 1, got {raw!r}")
        return value

    def choice(self, name: str, enum: type[LogFormat], default: LogFormat) -> LogFormat:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            return enum(raw.lower())
        except ValueError:
            options = "|".join(m.value for m in enum)
            raise ConfigError(name, f"expected one of {options}, got {raw!r}") from None

    def url(self, name: str, default: str, check: Callable[[str], str | None]) -> str:
        return self.optional_url(name, check) or default

    def optional_url(
        self,
        name: str,
        check: Callable[[str], str | None],
        redact: Callable[[str], str] = redact_url,
    ) -> str | None:
        raw = self.raw(name)
        if raw is None:
            return None
        problem = check(raw)
        if problem is not None:
            raise ConfigError(name, f"{problem}, got {redact(raw)!r}")
        return raw


def _default_redis_url(host: str, port: int, password: Secret | None) -> str:
    auth = f":{quote(password.reveal(), safe='')}@" if password else ""
    netloc_host = f"[{host}]" if ":" in host else host
    return f"redis://{auth}{netloc_host}:{port}/0"


def _parse_url(url: str, schemes: tuple[str, ...]) -> SplitResult | str:
    """The parts of `url` when it has one of `schemes` and a valid port; else the problem."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return "bad host or port"
    if parts.scheme not in schemes or "://" not in url:
        return "unsupported scheme"
    return parts


def _check_redis_url(url: str) -> str | None:
    parts = _parse_url(url, _REDIS_SCHEMES)
    problem: str | None
    if isinstance(parts, str):
        problem = parts
    elif parts.scheme == "unix":
        problem = None if parts.path else "no socket path"
    elif not parts.hostname:
        problem = "no host"
    elif parts.path.strip("/") and not parts.path.strip("/").isdigit():
        problem = "the path must be a database number"
    else:
        problem = None
    return problem and f"expected a redis://, rediss:// or unix:// URL ({problem})"


def _check_db_url(url: str) -> str | None:
    parts = _parse_url(url, _DATABASE_SCHEMES)
    if isinstance(parts, str):
        return f"expected a postgresql://, postgres:// or postgresql+psycopg:// URL ({parts})"
    return None


def _check_webhook_url(url: str) -> str | None:
    parts = _parse_url(url, ("http", "https"))
    problem = parts if isinstance(parts, str) else None if parts.hostname else "no host"
    return problem and f"expected an http:// or https:// URL ({problem})"
