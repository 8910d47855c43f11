"""Where alert events go. Sinks must not block: `LogSink` writes a log record,
`WebhookSink` hands the event to a bounded queue drained by a background task (full
queue → dropped and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

import httpx

from reference.alerts.rules import AlertEvent
from reference.config import redact_opaque_url

__all__ = ["AlertSink", "LogSink", "WebhookSink"]


class AlertSink(Protocol):
    """Where events go; `send` must return at once (no I/O wait) and should not raise."""

    def send(self, event: AlertEvent) -> None:
        """Take one event without waiting (no I/O wait) and without raising."""


class LogSink:
    """Writes each event as one log record (the event's fields under `extra["alert"]`)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def send(self, event: AlertEvent) -> None:
        """Log the event (ERROR for critical firings, WARNING for warnings, INFO for
        resolutions)."""
        if event.state == "resolved":
            level = logging.INFO
        else:
            level = logging.ERROR if event.severity == "critical" else logging.WARNING
        self._logger.log(
            level,
            "alert %s %s [%s]: %s",
            event.state,
            event.name,
            event.severity,
            event.message,
            extra={"alert": event.to_dict()},
        )


class WebhookSink:
    """POSTs each event as JSON from a background task fed by a bounded queue.

    `send` never waits: a full queue (or a closed sink) drops the event and counts it.
    Each POST is bounded by `timeout_s`; a non-2xx answer or an error counts as failed.
    Events sent before `start()` wait in the queue. Call `send` from the event loop's
    thread (the queue is an `asyncio.Queue`).
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        queue_size: int = 100,
        logger: logging.Logger | None = None,
    ) -> None:
        if timeout_s <= 0 or queue_size < 1:
            raise ValueError("timeout_s must be > 0 and queue_size >= 1")
        self._url = url
        self._timeout_s = timeout_s
        self._transport = transport
        self._queue: asyncio.Queue[AlertEvent] = asyncio.Queue(maxsize=queue_size)
        self._log = logger or logging.getLogger("reference.alerts")
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._dropping = False
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Events queued and not yet attempted."""
        return self._queue.qsize()

    def send(self, event: AlertEvent) -> None:
        """Queue the event for the background POST; a full queue or a closed sink drops it
        (counted)."""
        if self._closed:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if not self._dropping:
                self._log.warning("alert webhook queue full: dropping alerts")
            self._dropping = True
        else:
            self._dropping = False

    async def start(self) -> None:
        """Start the background sender (idempotent)."""
        if self._task is not None or self._closed:
            return
        self._client = httpx.AsyncClient(transport=self._transport, timeout=self._timeout_s)
        self._task = asyncio.create_task(self._run(), name="alert-webhook")

    async def aclose(self, timeout_s: float | None = None) -> None:
        """Drain the queue for at most `timeout_s` (default: the POST timeout), then stop.

        Events still queued (or cancelled in flight) are counted as dropped.
        """
        self._closed = True
        bound = self._timeout_s if timeout_s is None else timeout_s
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(bound):
                    await self._queue.join()
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            self.dropped += 1
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await client.aclose()

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._post(event)
            except asyncio.CancelledError:
                self.dropped += 1
                raise
            finally:
                self._queue.task_done()

    async def _post(self, event: AlertEvent) -> None:
        assert self._client is not None
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.post(self._url, json=event.to_dict())
        except Exception as exc:  # any failure of the POST: counted, logged, never raised
            self.failed += 1
            self._log.warning(
                "alert webhook %s failed: %s", redact_opaque_url(self._url), type(exc).__name__
            )
            return
        if response.is_success:
            self.sent += 1
        else:
            self.failed += 1
            self._log.warning(
                "alert webhook %s answered %d", redact_opaque_url(self._url), response.status_code
            )
