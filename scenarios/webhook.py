"""The harness's alert webhook receiver: what an operator's alert channel would receive.

A small HTTP server on a loopback port (a thread of the harness) whose URL is given to
the target as `ALERT_WEBHOOK_URL`. It keeps every JSON alert POSTed to it with the
harness's monotonic receive time, and answers what an operator would ask:

    GET /alerts          every alert received, oldest first
    GET /alerts/NAME     {"name", "firing": bool, "fired": n, "resolved": n}

so a drill's step can check an alert with `curl -s $ALERTS_URL/alerts/NAME`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class ReceivedAlert:
    """One alert notification as received: its name, state, instance and receive time."""

    name: str
    state: str
    instance_id: str
    received_s: float
    body: dict[str, Any]


class WebhookReceiver:
    """Collects alerts POSTed by the target; a context manager (start/stop)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._alerts: list[ReceivedAlert] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.listener: Callable[[dict[str, Any]], None] | None = None
        """Also called with each notification's body as it arrives (e.g. a history)."""

    @property
    def url(self) -> str:
        """The URL to give the target as ALERT_WEBHOOK_URL."""
        if self._server is None:
            raise RuntimeError("webhook receiver not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def alerts(self) -> list[ReceivedAlert]:
        """Every alert received so far, oldest first."""
        with self._lock:
            return list(self._alerts)

    def status(self, name: str) -> dict[str, Any]:
        """Whether `name` is firing (its last notification), and how often it fired/resolved."""
        mine = [a for a in self.alerts() if a.name == name]
        return {
            "name": name,
            "firing": bool(mine) and mine[-1].state == "firing",
            "fired": sum(a.state == "firing" for a in mine),
            "resolved": sum(a.state == "resolved" for a in mine),
        }

    def clear(self) -> None:
        """Forget every alert received."""
        with self._lock:
            self._alerts.clear()

    def record(self, body: dict[str, Any]) -> None:
        """Keep one notification (called by the HTTP handler)."""
        alert = ReceivedAlert(
            name=str(body.get("name", "")),
            state=str(body.get("state", "")),
            instance_id=str(body.get("instance_id", "")),
            received_s=self._clock(),
            body=body,
        )
        with self._lock:
            self._alerts.append(alert)
        listener = self.listener
        if listener is not None:
            listener(body)

    def start(self) -> WebhookReceiver:
        """Listen on a free loopback port (a daemon thread)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(min(length, MAX_BODY)))
                    if not isinstance(body, dict):
                        raise ValueError("not an object")
                except ValueError:
                    self._answer(400, {"error": "expected a JSON object"})
                    return
                receiver.record(body)
                self._answer(204, None)

            def do_GET(self) -> None:
                path = self.path.split("?")[0].rstrip("/")
                if path == "/alerts":
                    data: Any = [a.body | {"received_s": a.received_s} for a in receiver.alerts()]
                    self._answer(200, data)
                elif path.startswith("/alerts/"):
                    self._answer(200, receiver.status(path.removeprefix("/alerts/")))
                else:
                    self._answer(404, {"error": "not found"})

            def _answer(self, code: int, data: Any) -> None:
                payload = b"" if data is None else json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
