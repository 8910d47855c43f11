"""Logging set-up: JSON/text selection, JSON line shape, idempotence, secret redaction."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from reference.config import LogFormat, Secret, Settings
from reference.logs import HANDLER_NAME, RedactingFilter, configure_logging
from reference.service.configs import log_secrets, setup_logging

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class Tty(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A private logger (propagating, so pytest's capture runs after our filter)."""
    log = logging.getLogger("test.logs.private")
    try:
        yield log
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)
        log.setLevel(logging.NOTSET)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_line_shape(logger: logging.Logger) -> None:
    """auto on a non-TTY stream gives one JSON object per record with the core fields."""
    stream = io.StringIO()
    configure_logging("auto", stream, instance_id="node-7", logger=logger)
    logger.info("hello %s\nsecond line", "world", extra={"event_id": "e-1", "n": 3})
    (line,) = lines(stream)
    record = json.loads(line)
    assert ISO_UTC.fullmatch(record.pop("ts"))
    assert record == {
        "level": "INFO",
        "logger": "test.logs.private",
        "msg": "hello world\nsecond line",
        "instance_id": "node-7",
        "event_id": "e-1",
        "n": 3,
    }


def test_json_extras_do_not_override_core_fields_and_exceptions_are_kept(
    logger: logging.Logger,
) -> None:
    """An extra named like a core field is renamed; a traceback goes under "exc"."""
    stream = io.StringIO()
    configure_logging(LogFormat.JSON, stream, logger=logger)
    try:
        raise ValueError("bad thing")
    except ValueError:
        logger.exception("failed", extra={"level": "mine"})
    record = json.loads(stream.getvalue())
    assert (record["level"], record["extra_level"]) == ("ERROR", "mine")
    assert "ValueError: bad thing" in record["exc"]
    assert record["instance_id"] == "default"


def test_json_when_asked_even_on_a_tty(logger: logging.Logger) -> None:
    """format=json wins over the TTY check."""
    stream = Tty()
    configure_logging("json", stream, logger=logger)
    logger.warning("x")
    assert json.loads(stream.getvalue())["level"] == "WARNING"


@pytest.mark.parametrize(("fmt", "stream_type"), [("auto", Tty), ("text", io.StringIO)])
def test_text_on_tty_or_when_asked(
    logger: logging.Logger, fmt: str, stream_type: type[io.StringIO]
) -> None:
    """auto on a TTY, or format=text anywhere, gives plain text lines."""
    stream = stream_type()
    configure_logging(fmt, stream, instance_id="n1", logger=logger)
    logger.info("plain %d", 5, extra={"path": "db"})
    (line,) = lines(stream)
    assert not line.startswith("{")
    assert re.fullmatch(
        ISO_UTC.pattern + r' INFO test\.logs\.private \[n1\] plain 5 path="db"', line
    ), line


def test_settings_choose_format_and_instance(logger: logging.Logger) -> None:
    """Given Settings, LOG_FORMAT and INSTANCE_ID come from them."""
    stream = Tty()
    setup_logging(Settings(log_format=LogFormat.JSON, instance_id="blue"), stream, logger=logger)
    logger.info("m")
    assert json.loads(stream.getvalue())["instance_id"] == "blue"


def test_idempotent_on_the_root_logger() -> None:
    """Calling twice leaves one stormproof handler on root (the latest) and one line."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        configure_logging("json", first)
        configure_logging("json", second)
        ours = [h for h in root.handlers if h.name == HANDLER_NAME]
        assert len(ours) == 1
        logging.getLogger("test.logs.child").info("once")
    finally:
        for handler in [h for h in root.handlers if h not in saved_handlers]:
            root.removeHandler(handler)
        root.setLevel(saved_level)
    assert first.getvalue() == ""
    assert [json.loads(line)["msg"] for line in lines(second)] == ["once"]


def test_level_is_applied(logger: logging.Logger) -> None:
    """Records below the configured level are not written."""
    stream = io.StringIO()
    configure_logging("text", stream, level=logging.WARNING, logger=logger)
    logger.info("hidden")
    logger.warning("shown")
    assert [line.endswith("shown") for line in lines(stream)] == [True]


# -- redaction --------------------------------------------------------------------------

SECRET_SETTINGS = Settings(
    redis_password=Secret("r3dis-pw"),
    redis_url="redis://:r3dis%40pw@cache:6379/0",
    database_url="postgresql://app:db-pa55@db:5432/app",
    admin_token=Secret("adm1n-t0ken"),
    audit_hmac_key=Secret("hmac-k3y-value"),
    alert_webhook_url="https://hooks.example.com/services/T0/B0/whs3cret",
)
ALL_SECRETS = ["r3dis-pw", "r3dis@pw", "r3dis%40pw", "db-pa55", "adm1n-t0ken", "hmac-k3y-value"]


def test_settings_secrets_lists_every_secret() -> None:
    """Tokens, keys, URL passwords (raw and decoded) and the webhook URL/path are secrets."""
    found = log_secrets(SECRET_SETTINGS)
    for secret in [*ALL_SECRETS, "/services/T0/B0/whs3cret"]:
        assert secret in found
    assert log_secrets(Settings()) == []


def test_secrets_redacted_from_message_args_extras_and_exceptions(
    logger: logging.Logger,
) -> None:
    """Known secret values never reach the output, wherever they appear in the record."""
    stream = io.StringIO()
    setup_logging(SECRET_SETTINGS, stream, logger=logger)
    logger.warning("token is adm1n-t0ken")
    logger.warning("connecting with %s and %r", "r3dis-pw", {"key": "hmac-k3y-value"})
    logger.warning("encoded %s", "r3dis%40pw", extra={"dsn": "db-pa55", "nested": ["adm1n-t0ken"]})
    logger.warning("posting to %s", "https://hooks.example.com/services/T0/B0/whs3cret")
    try:
        raise ConnectionError("auth failed for r3dis@pw")
    except ConnectionError:
        logger.exception("boom")
    out = stream.getvalue()
    for secret in [*ALL_SECRETS, "whs3cret"]:
        assert secret not in out, secret
    assert out.count("***") >= 8
    assert len(lines(stream)) == 5  # exception text is inside its JSON line


@pytest.mark.parametrize(
    ("message", "leak", "kept"),
    [
        ("redis://user:hunter2@h:6379/0 down", "hunter2", "redis://user:***@h:6379/0 down"),
        ("see postgresql://u:p4ss@db/x.", "p4ss", "postgresql://u:***@db/x."),
        ("GET http://api/x?token=abc123&page=2", "abc123", "page=2"),
        ("dsn host=db password=s3cr3t user=app", "s3cr3t", "password=*** user=app"),
        ("Authorization: Bearer eyJhbGciOi", "eyJhbGciOi", "Bearer ***"),
    ],
    ids=["url-password", "url-trailing-dot", "query-token", "kv-password", "bearer"],
)
def test_unknown_secrets_in_urls_and_pairs(
    logger: logging.Logger, message: str, leak: str, kept: str
) -> None:
    """Passwords in URLs, secret query values, password= pairs and bearer tokens are
    redacted even when the filter was not told the value."""
    stream = io.StringIO()
    configure_logging("text", stream, logger=logger)
    logger.info("%s", message)
    out = stream.getvalue()
    assert leak not in out and kept in out


def test_harmless_urls_are_untouched() -> None:
    """URLs without credentials or queries are left exactly as written."""
    redact = RedactingFilter([]).redact
    assert redact("listening on http://127.0.0.1:8000/health") == (
        "listening on http://127.0.0.1:8000/health"
    )


def test_extra_secrets_and_bad_format_args(logger: logging.Logger) -> None:
    """Explicit secrets are redacted too, even when the args do not match the format."""
    stream = io.StringIO()
    configure_logging("json", stream, secrets=["t0psecret"], logger=logger)
    logger.error("two %s %s", "t0psecret")
    record = json.loads(stream.getvalue())
    assert "t0psecret" not in stream.getvalue() and "***" in record["msg"]


def test_percent_encoded_form_of_a_secret_is_redacted() -> None:
    """A secret given in clear is also caught in its URL-encoded form."""
    redact = RedactingFilter(["p@ss word/1"]).redact
    assert redact("cfg pw=p%40ss%20word%2F1 end") == "cfg pw=*** end"
    assert redact("raw p@ss word/1 end") == "raw *** end"
