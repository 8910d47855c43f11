"""Settings.from_env: defaults, parsing, one-line errors naming the variable, secrets hidden."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from reference.config import (
    ConfigError,
    LogFormat,
    Secret,
    Settings,
    load_settings_or_exit,
    redact_url,
)

SECRETS = {
    "REDIS_PASSWORD": "redis-pw-4f9a",
    "ADMIN_TOKEN": "admin-tok-77c1-5d9e",
    "AUDITORIA_HMAC_KEY": "hmac-key-0b3e-long-enough",
    "DATABASE_URL": "postgresql://app:db-pw-91d2@db:5432/app",
    "ALERT_WEBHOOK_URL": "https://hooks.example.com/services/webhook-secret-5e6f",
}
SECRET_VALUES = ("redis-pw-4f9a", "admin-tok-77c1-5d9e", "hmac-key-0b3e", "db-pw-91d2", "5e6f")


def error_for(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    return info.value


def test_defaults_are_the_seeds() -> None:
    """An empty environment gives the seed's defaults, durations converted to seconds."""
    s = Settings.from_env({})
    assert s.disable_redis is False
    assert (s.redis_host, s.redis_port, s.redis_password) == ("localhost", 6379, None)
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.database_url == "postgresql://postgres@localhost:5432/postgres"
    assert (s.cache_ttl_s, s.cache_l1_ttl_s, s.cache_l1_max_items) == (3600.0, 300.0, 1000)
    assert (s.breaker_failure_threshold, s.breaker_half_open_max_calls) == (5, 3)
    assert s.breaker_reset_timeout_s == 30.0
    assert s.audit_sync_fallback and s.audit_file_backup
    assert s.audit_backup_path == Path("./logs/audit-backup")
    assert s.audit_recovery_interval_s == 300.0
    assert s.metrics_enabled and s.alerts_enabled
    assert s.health_check_interval_s == 60.0
    assert (s.redis_op_timeout_s, s.db_op_timeout_s, s.db_connect_timeout_s) == (0.25, 2.0, 2.0)
    assert s.cache_stale_window_s == 300.0 and s.cache_l2_key_prefix == "stormproof:"
    assert s.admin_token is None and not s.admin_enabled and s.audit_hmac_key is None
    assert s.audit_journal_segment_bytes == 16_777_216
    assert (s.audit_queue_stream, s.audit_max_deliveries, s.audit_timeout_s) == (
        "audit:events",
        5,
        1.0,
    )
    assert s.alert_webhook_url is None
    assert (s.alert_cooldown_s, s.alert_eval_interval_s) == (300.0, 5.0)
    assert (s.alert_redis_failures_threshold, s.alert_fallback_usage_threshold) == (5, 0.5)
    assert (s.host, s.port, s.instance_id, s.log_format) == (
        "127.0.0.1",
        8000,
        "default",
        LogFormat.AUTO,
    )
    assert s == Settings(), "the dataclass defaults and from_env({}) must agree"


def test_values_are_parsed_and_converted() -> None:
    """Set values are parsed; milliseconds become seconds; empty means the default."""
    s = Settings.from_env(
        {
            "DISABLE_REDIS": "YES",
            "CACHE_TTL": "60",
            "CACHE_L1_TTL": "60",
            "CIRCUIT_BREAKER_RESET_TIMEOUT": "1500",
            "REDIS_OP_TIMEOUT_MS": " 100 ",
            "ALERT_FALLBACK_USAGE_THRESHOLD": "0.25",
            "AUDITORIA_ENABLE_FILE_BACKUP": "off",
            "LOG_FORMAT": "JSON",
            "PORT": "65535",
            "INSTANCE_ID": "a-1",
            "CACHE_L1_MAX_ITEMS": "",
        }
    )
    assert s.disable_redis is True and s.audit_file_backup is False
    assert (s.cache_ttl_s, s.cache_l1_ttl_s) == (60.0, 60.0)
    assert s.breaker_reset_timeout_s == 1.5
    assert s.redis_op_timeout_s == 0.1
    assert s.alert_fallback_usage_threshold == 0.25
    assert s.log_format is LogFormat.JSON
    assert (s.port, s.instance_id, s.cache_l1_max_items) == (65535, "a-1", 1000)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(v, True) for v in ("true", "TRUE", "1", "yes", "On")]
    + [(v, False) for v in ("false", "False", "0", "no", "OFF")],
)
def test_boolean_spellings(raw: str, expected: bool) -> None:
    """Booleans accept true/false/1/0/yes/no/on/off in any case."""
    assert Settings.from_env({"RESILIENCE_METRICS_ENABLED": raw}).metrics_enabled is expected


def test_redis_url_is_built_from_host_port_password() -> None:
    """Without REDIS_URL, the URL comes from host, port and (quoted) password."""
    s = Settings.from_env(
        {"REDIS_HOST": "cache", "REDIS_PORT": "6380", "REDIS_PASSWORD": "p@ss:word"}
    )
    assert s.redis_url == "redis://:p%40ss%3Aword@cache:6380/0"
    assert s.redis_password is not None and s.redis_password.reveal() == "p@ss:word"


def test_redis_url_wins_over_host_and_port() -> None:
    """REDIS_URL, when set, is used as is."""
    env = {"REDIS_HOST": "ignored", "REDIS_URL": "rediss://:pw@redis.example:6390/2"}
    assert Settings.from_env(env).redis_url == "rediss://:pw@redis.example:6390/2"
    assert Settings.from_env({"REDIS_URL": "unix:///run/redis.sock"}).redis_url.startswith("unix")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
    ],
)
def test_sqlalchemy_url(url: str, expected: str) -> None:
    """Every accepted database scheme converts to the psycopg 3 SQLAlchemy dialect."""
    assert Settings.from_env({"DATABASE_URL": url}).sqlalchemy_url == expected


BAD_VALUES = [
    ("CACHE_TTL", "abc", "positive integer"),
    ("CACHE_TTL", "0", "positive integer"),
    ("CACHE_TTL", "1.5", "positive integer"),
    ("CACHE_L1_MAX_ITEMS", "0", "positive integer"),
    ("CACHE_L1_MAX_ITEMS", "-3", "positive integer"),
    ("CACHE_STALE_WINDOW", "-1", "non-negative integer"),
    ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "0", "positive integer"),
    ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "-5", "positive integer"),
    ("CIRCUIT_BREAKER_HALF_OPEN_MAX_CALLS", "0", "positive integer"),
    ("CIRCUIT_BREAKER_RESET_TIMEOUT", "-1", "non-negative integer"),
    ("CIRCUIT_BREAKER_RESET_TIMEOUT", "30s", "non-negative integer"),
    ("ALERT_REDIS_FAILURES_THRESHOLD", "-1", "positive integer"),
    ("ALERT_FALLBACK_USAGE_THRESHOLD", "1.5", "between 0 and 1"),
    ("ALERT_FALLBACK_USAGE_THRESHOLD", "nan", "between 0 and 1"),
    ("ALERT_FALLBACK_USAGE_THRESHOLD", "half", "between 0 and 1"),
    ("AUDITORIA_MAX_DELIVERIES", "0", "positive integer"),
    ("AUDITORIA_JOURNAL_SEGMENT_BYTES", "100", ">= 4096"),
    ("HEALTH_CHECK_INTERVAL", "0", "positive integer"),
    ("DISABLE_REDIS", "maybe", "true/false"),
    ("AUDITORIA_ENABLE_SYNC_FALLBACK", "2", "true/false"),
    ("PORT", "0", "TCP port"),
    ("PORT", "65536", "TCP port"),
    ("PORT", "http", "TCP port"),
    ("REDIS_PORT", "-1", "TCP port"),
    ("LOG_FORMAT", "xml", "auto|json|text"),
    ("REDIS_URL", "http://localhost:6379", "redis://"),
    ("REDIS_URL", "localhost:6379", "redis://"),
    ("REDIS_URL", "redis://localhost:99999/0", "bad host or port"),
    ("REDIS_URL", "redis:///0", "no host"),
    ("REDIS_URL", "redis://localhost/zero", "database number"),
    ("DATABASE_URL", "mysql://u@h/d", "postgresql://"),
    ("DATABASE_URL", "postgresql://h:port/d", "bad host or port"),
    ("ALERT_WEBHOOK_URL", "ftp://hooks.example.com/x", "http://"),
]


@pytest.mark.parametrize(("variable", "raw", "problem"), BAD_VALUES)
def test_bad_value_names_the_variable_in_one_line(variable: str, raw: str, problem: str) -> None:
    """Each kind of bad value raises ConfigError naming the variable, on one line."""
    err = error_for({variable: raw})
    assert err.variable == variable
    text = str(err)
    assert text.startswith(f"{variable}: ")
    assert problem in text
    assert "\n" not in text


def test_error_message_shape() -> None:
    """The message says what was expected and echoes the bad value."""
    assert str(error_for({"CACHE_TTL": "abc"})) == (
        "CACHE_TTL: expected a positive integer (seconds), got 'abc'"
    )


def test_l1_ttl_longer_than_ttl_names_cache_l1_ttl() -> None:
    """CACHE_L1_TTL > CACHE_TTL is an error about CACHE_L1_TTL."""
    err = error_for({"CACHE_TTL": "100", "CACHE_L1_TTL": "101"})
    assert err.variable == "CACHE_L1_TTL"
    assert "CACHE_TTL" in err.problem
    assert Settings.from_env({"CACHE_TTL": "100", "CACHE_L1_TTL": "100"}).cache_l1_ttl_s == 100.0


def test_newlines_in_a_value_stay_out_of_the_message() -> None:
    """A value with a newline is quoted (escaped), so the message stays one line."""
    err = error_for({"CACHE_TTL": "1\n2"})
    assert "\n" not in str(err) and "'1\\n2'" in str(err)


def test_bad_url_error_does_not_echo_the_password() -> None:
    """The error for a bad URL shows it redacted."""
    err = error_for({"REDIS_URL": "http://:topsecret@host:6379"})
    assert "topsecret" not in str(err)
    assert "***" in str(err)
    err = error_for({"ALERT_WEBHOOK_URL": "ftp://hooks.example.com/T0/B0/topsecret"})
    assert "topsecret" not in str(err)


def test_secret_never_shows_itself() -> None:
    """Secret's repr and str are ***; reveal() and matches() use the value."""
    secret = Secret("hunter2")
    assert repr(secret) == str(secret) == f"{secret}" == "***"
    assert secret.reveal() == "hunter2"
    assert secret.matches("hunter2") and not secret.matches("hunter3")
    assert secret == Secret("hunter2") and secret != Secret("other")


def test_secrets_absent_from_repr_str_and_public_dict() -> None:
    """No secret value appears in repr, str or the JSON-safe public dict."""
    s = Settings.from_env(SECRETS)
    public = s.public_dict()
    dumped = json.dumps(public)  # must be JSON-safe
    for shown in (repr(s), str(s), dumped):
        for value in SECRET_VALUES:
            assert value not in shown
    assert public["redis_password"] == "***" and public["admin_token"] == "***"
    assert public["audit_hmac_key"] == "***"
    assert public["database_url"] == "postgresql://app:***@db:5432/app"
    assert public["alert_webhook_url"] == "https://hooks.example.com/***"
    assert public["redis_url"] == "redis://:***@localhost:6379/0"
    assert s.admin_enabled
    assert s.admin_token is not None and s.admin_token.reveal() == "admin-tok-77c1-5d9e"


def test_public_dict_has_every_field() -> None:
    """public_dict covers all fields with JSON scalar values."""
    public = Settings.from_env({}).public_dict()
    assert set(public) == {f.name for f in dataclasses.fields(Settings)}
    assert all(v is None or isinstance(v, str | int | float | bool) for v in public.values())
    assert public["log_format"] == "auto" and public["audit_backup_path"] == "logs/audit-backup"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:pw@h/0", "redis://user:***@h/0"),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        ("redis://h/0?password=pw&db=1", "redis://h/0?password=***&db=1"),
        ("redis://:p@ss@h/0", "redis://:***@h/0"),
        ("redis://[::1", "<unparseable url>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    """redact_url masks passwords in userinfo and secret-looking query values."""
    assert redact_url(url) == expected


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after construction."""
    s = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


def test_load_settings_or_exit_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad value prints one line to stderr and exits with status 2."""
    with pytest.raises(SystemExit) as info:
        load_settings_or_exit({"PORT": "99999", "REDIS_PASSWORD": "s3cr3t"})
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "PORT:" in captured.err
    assert "s3cr3t" not in captured.err


def test_load_settings_or_exit_returns_settings() -> None:
    """Good values pass straight through."""
    assert load_settings_or_exit({"PORT": "9000"}).port == 9000


def test_short_hmac_key_stops_start_up_naming_the_variable() -> None:
    """A journal HMAC key under 16 bytes is refused at start-up, not deep in the journal."""
    from reference.config import ConfigError, Settings

    with pytest.raises(ConfigError) as info:
        Settings.from_env({"AUDITORIA_HMAC_KEY": "short"})
    assert info.value.variable == "AUDITORIA_HMAC_KEY"
    assert "short" not in str(info.value)
    assert Settings.from_env({"AUDITORIA_HMAC_KEY": "k" * 16}).audit_hmac_key is not None
