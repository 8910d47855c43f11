"""Where `Settings` becomes the small frozen configs of the components (the edge).

Nothing below `reference/service/` sees `Settings`: each component takes its own config,
built here, and its Redis clients, made here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple, TextIO
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis

from reference.alerts import AlertEvaluator, AlertSink, AlertThresholds
from reference.audit.db import DatabaseConfig
from reference.audit.journal_format import hmac_key_from_text
from reference.audit.queue import WorkerConfig
from reference.audit.queue_safety import QueueGuard, guarded_connection_class
from reference.audit.recovery import RecoveryConfig
from reference.audit.resilient import AuditConfig
from reference.breaker import BreakerConfig, CircuitBreaker
from reference.cache import CacheConfig
from reference.clock import SYSTEM_CLOCK, Clock
from reference.config import Settings
from reference.logs import configure_logging
from reference.redis_client import connection_class_for, make_redis
from reference.sentinel import FollowingConnection

__all__ = [
    "Breakers",
    "alert_evaluator",
    "alert_thresholds",
    "audit_config",
    "breaker_config",
    "breakers",
    "cache_config",
    "database_config",
    "log_secrets",
    "recovery_config",
    "redis_client",
    "setup_logging",
    "worker_config",
]


def breaker_config(settings: Settings) -> BreakerConfig:
    """The breaker settings shared by the Redis and database breakers."""
    return BreakerConfig(
        failure_threshold=settings.breaker_failure_threshold,
        reset_timeout_s=settings.breaker_reset_timeout_s,
        half_open_max_calls=settings.breaker_half_open_max_calls,
    )


class Breakers(NamedTuple):
    """The two shared breakers: Redis (cache and audit queue) and the database."""

    redis: CircuitBreaker
    database: CircuitBreaker


def breakers(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> Breakers:
    """The Redis and database breakers, both configured by `breaker_config`."""
    config = breaker_config(settings)
    return Breakers(
        CircuitBreaker("redis", config, clock), CircuitBreaker("database", config, clock)
    )


def cache_config(settings: Settings) -> CacheConfig:
    """The cache's part of the settings."""
    return CacheConfig(
        instance_id=settings.instance_id,
        key_prefix=settings.cache_l2_key_prefix,
        ttl_s=settings.cache_ttl_s,
        l1_ttl_s=settings.cache_l1_ttl_s,
        l1_max_items=settings.cache_l1_max_items,
        stale_window_s=settings.cache_stale_window_s,
        op_timeout_s=settings.redis_op_timeout_s,
        disabled=settings.disable_redis,
        min_replicas=settings.cache_min_replicas,
    )


def redis_client(
    settings: Settings,
    timeout_s: float,
    *,
    max_connections: int = 64,
    guard: QueueGuard | None = None,
) -> aioredis.Redis:
    """A Redis client on `settings.redis_url` (with its password), cut off at `timeout_s`.
    With `guard`: a client of the audit queue, on `AUDITORIA_REDIS_URL` when set, whose
    every new connection is checked by `guard` before it is used."""
    password = settings.redis_password.reveal() if settings.redis_password else None
    url = settings.redis_url
    # Sentinel (REDIS_SENTINEL_URLS): every client follows the primary it names, except
    # the audit queue's when AUDITORIA_REDIS_URL gives it a Redis of its own
    sentinel = settings.redis_sentinels
    connection_class = None
    if guard is not None:
        url = settings.audit_redis_url or settings.redis_url
        sentinel = None if settings.audit_redis_url else sentinel
        base = FollowingConnection if sentinel is not None else connection_class_for(url)
        connection_class = guarded_connection_class(guard, base)
    return make_redis(
        url,
        timeout_s,
        password=password,
        max_connections=max_connections,
        connection_class=connection_class,
        sentinel=sentinel,
    )


def audit_config(settings: Settings) -> AuditConfig:
    """The audit's attempt timeout and the paths the settings turn on."""
    return AuditConfig(
        timeout_s=settings.audit_timeout_s,
        queue=not settings.disable_redis,
        db=settings.audit_sync_fallback,
        file=settings.audit_file_backup,
    )


def worker_config(settings: Settings, **overrides: Any) -> WorkerConfig:
    """Stream, delivery limit and timeouts from `settings`; anything else overridden."""
    values: dict[str, Any] = {
        "stream": settings.audit_queue_stream,
        "max_deliveries": settings.audit_max_deliveries,
        "redis_timeout_s": settings.redis_op_timeout_s,
        "db_timeout_s": settings.db_op_timeout_s,
    }
    values.update(overrides)
    return WorkerConfig(**values)


def alert_thresholds(settings: Settings, *, min_cache_reads: int = 20) -> AlertThresholds:
    """The alert rules' thresholds from `settings`."""
    return AlertThresholds(
        redis_failures=settings.alert_redis_failures_threshold,
        fallback_usage=settings.alert_fallback_usage_threshold,
        min_cache_reads=min_cache_reads,
    )


def alert_evaluator(
    settings: Settings,
    sinks: Sequence[AlertSink],
    clock: Clock,
) -> AlertEvaluator:
    """The evaluator with the settings' thresholds, cooldown and instance id."""
    return AlertEvaluator(
        alert_thresholds(settings),
        sinks,
        clock,
        settings.alert_cooldown_s,
        settings.instance_id,
    )


def recovery_config(settings: Settings) -> RecoveryConfig:
    """The journal directory, the replay interval and the HMAC key (chain checked)."""
    key = settings.audit_hmac_key
    return RecoveryConfig(
        directory=settings.audit_backup_path,
        interval_s=settings.audit_recovery_interval_s,
        hmac_key=hmac_key_from_text(key.reveal()) if key else None,
    )


_MIN_PATH_SECRET = 8
"""A webhook URL's path or query at least this long is taken as a secret too."""


def log_secrets(settings: Settings) -> list[str]:
    """Every secret value `settings` holds: tokens, keys, URL passwords, the webhook URL
    (what `reference.logs.configure_logging` redacts)."""
    found = [
        s.reveal()
        for s in (settings.redis_password, settings.admin_token, settings.audit_hmac_key)
        if s is not None
    ]
    if settings.redis_sentinels is not None and settings.redis_sentinels.sentinel_password:
        found.append(settings.redis_sentinels.sentinel_password)
    for url in (settings.redis_url, settings.database_url, settings.audit_redis_url or ""):
        password = _url_password(url)
        if password:
            found += [password, unquote(password)]
    webhook = settings.alert_webhook_url
    if webhook:
        found.append(webhook)
        try:
            parts = urlsplit(webhook)
        except ValueError:
            parts = None
        if parts is not None:
            found += [p for p in (parts.path, parts.query) if len(p) >= _MIN_PATH_SECRET]
    return [s for s in found if s]


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def database_config(settings: Settings) -> DatabaseConfig:
    """The database URL (SQLAlchemy form) and its timeouts."""
    return DatabaseConfig(
        url=settings.sqlalchemy_url,
        op_timeout_s=settings.db_op_timeout_s,
        connect_timeout_s=settings.db_connect_timeout_s,
    )


def setup_logging(
    settings: Settings, stream: TextIO | None = None, *, logger: logging.Logger | None = None
) -> logging.Handler:
    """`configure_logging` with the settings' format, instance id and secrets."""
    return configure_logging(
        settings.log_format,
        stream,
        secrets=log_secrets(settings),
        instance_id=settings.instance_id,
        logger=logger,
    )
