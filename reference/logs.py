"""Logging set-up: JSON lines or plain text, with secrets redacted before formatting.

`configure_logging` installs one stream handler on the root logger (replacing the one a
previous call installed). Its `RedactingFilter` rewrites each record before any formatter
sees it: the message (after `%` formatting, so args are covered), the exception and stack
text and the `extra` fields lose every known secret value (also percent-encoded), URL
passwords and secret-looking query values, `password=...`-style pairs and bearer tokens.
Handlers installed by others (uvicorn's, pytest's) are not filtered unless records reach
them after ours has rewritten them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import quote

from reference.config import LogFormat, Secret, redact_url

__all__ = [
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
]

HANDLER_NAME = "stormproof"
_MASK = "***"
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_PAIR = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key)(\s*[=:]\s*)([^\s,;&'\"]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s,;'\"]+")


class RedactingFilter(logging.Filter):
    """Removes secrets from a record's message, args, exception/stack text and extras."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        values = {v for s in secrets if s for v in (s, quote(s, safe=""))}
        ordered = sorted(values, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        """`text` with every known secret, URL password and secret-looking pair masked."""
        if self._secrets is not None:
            text = self._secrets.sub(_MASK, text)
        text = _URL.sub(_redact_url_match, text)
        text = _PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{_MASK}", text)
        return _BEARER.sub(lambda m: f"{m.group(1)}{_MASK}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record's message, arguments, extras and exception in place; keep it."""
        try:
            message = record.getMessage()
        except Exception:  # bad format args: keep both parts, still redacted
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in _extras(record).items():
            setattr(record, key, self._redact_value(value))
        return True

    def _redact_value(self, value: object) -> object:
        if isinstance(value, str):
            return self.redact(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Secret):
            return _MASK
        if isinstance(value, dict):
            return {str(k): self._redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._redact_value(v) for v in value]
        return self.redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, instance_id, then extras."""

    def __init__(self, instance_id: str) -> None:
        super().__init__()
        self._instance_id = instance_id

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object per line, extras included."""
        out: dict[str, object] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "instance_id": self._instance_id,
        }
        for key, value in _extras(record).items():
            out[f"extra_{key}" if key in out else key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger [instance] message key=value...`, then any traceback."""

    def __init__(self, instance_id: str) -> None:
        super().__init__()
        self._instance_id = instance_id

    def format(self, record: logging.LogRecord) -> str:
        """One human-readable line (plus the traceback, if any)."""
        extras = "".join(f" {k}={json.dumps(v, default=str)}" for k, v in _extras(record).items())
        line = (
            f"{_iso(record.created)} {record.levelname} {record.name} "
            f"[{self._instance_id}] {record.getMessage()}{extras}"
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


def configure_logging(
    log_format: LogFormat | str,
    stream: TextIO | None = None,
    *,
    secrets: Iterable[str] = (),
    instance_id: str | None = None,
    level: int | str = logging.INFO,
    logger: logging.Logger | None = None,
) -> logging.Handler:
    """Install (or replace) the stormproof handler on `logger` (default: the root logger).

    JSON when the format is `json`, or `auto` and `stream` (default stderr) is not a TTY;
    text otherwise. `secrets` are redacted from every record (the service passes
    `reference.service.configs.log_secrets(settings)`).
    """
    fmt = LogFormat(str(log_format).lower())
    instance = instance_id or "default"
    all_secrets = list(secrets)
    out = stream if stream is not None else sys.stderr
    use_json = fmt is LogFormat.JSON or (fmt is LogFormat.AUTO and not _isatty(out))
    target = logger if logger is not None else logging.getLogger()
    for old in [h for h in target.handlers if h.name == HANDLER_NAME]:
        target.removeHandler(old)
    handler = logging.StreamHandler(out)
    handler.name = HANDLER_NAME
    handler.addFilter(RedactingFilter(all_secrets))
    handler.setFormatter(JsonFormatter(instance) if use_json else TextFormatter(instance))
    target.addHandler(handler)
    target.setLevel(level)
    return handler


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


def _redact_url_match(match: re.Match[str]) -> str:
    url = match.group(0)
    return redact_url(url) if "@" in url or "?" in url else url


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
