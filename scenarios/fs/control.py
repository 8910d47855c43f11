"""The filesystem's control socket: one JSON request per line, one JSON answer per line.

Requests: {"cmd": "status"} |
{"cmd": "powercut", "tear": bool, "seed": int?, "halt": bool, "after_writes": int?} |
{"cmd": "fault", "name": "disk-full"|"eio"|"read-only", "on": bool, "pattern": str?} |
{"cmd": "clear"} (every fault off) | {"cmd": "sync"} (make everything durable).
`after_writes` arms the cut to happen right after that many more writes (mid-stream).
`halt`: after the cut every change fails with EIO (the machine is off) until "clear".
Answers: {"ok": true, "counters": {...}} or {"ok": false, "error": "..."}.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any, Protocol


class Controlled(Protocol):
    """What the control socket drives (the FUSE operations)."""

    def power_cut(
        self, tear: bool = False, seed: int | None = None, halt: bool = False
    ) -> dict[str, Any]: ...

    def arm_cut(
        self, after_writes: int, tear: bool = False, seed: int | None = None, halt: bool = False
    ) -> dict[str, Any]: ...

    def sync_all(self) -> dict[str, Any]: ...

    def counters(self) -> dict[str, Any]: ...

    def set_fault(self, name: str, on: bool, pattern: str) -> dict[str, Any]: ...


def handle_request(target: Controlled, request: dict[str, Any]) -> dict[str, Any]:
    """One request -> one answer (never raises)."""
    try:
        cmd = request.get("cmd")
        if cmd == "status":
            counters = target.counters()
        elif cmd == "powercut":
            seed = request.get("seed")
            tear, halt = bool(request.get("tear", False)), bool(request.get("halt", False))
            after = request.get("after_writes")
            if after is None:
                counters = target.power_cut(tear, seed, halt)
            else:
                counters = target.arm_cut(int(after), tear, seed, halt)
        elif cmd == "fault":
            name, on = str(request["name"]), bool(request.get("on", True))
            counters = target.set_fault(name, on, str(request.get("pattern") or "*"))
        elif cmd == "clear":
            counters = target.set_fault("", False, "*")
        elif cmd == "sync":
            counters = target.sync_all()
        else:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
    except (KeyError, ValueError, TypeError, OSError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "counters": counters}


class ControlServer:
    """A unix-socket server on its own thread."""

    def __init__(self, path: Path, target: Controlled) -> None:
        self.path = path
        self._target = target
        outer = self

        class _Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    try:
                        request = json.loads(line)
                        answer = (
                            handle_request(outer._target, request)
                            if isinstance(request, dict)
                            else {"ok": False, "error": "request must be a JSON object"}
                        )
                    except json.JSONDecodeError as exc:
                        answer = {"ok": False, "error": f"bad JSON: {exc}"}
                    self.wfile.write(json.dumps(answer).encode() + b"\n")
                    self.wfile.flush()

        path.unlink(missing_ok=True)
        self._server = socketserver.ThreadingUnixStreamServer(str(path), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)


class ControlError(Exception):
    """The filesystem refused a request or did not answer."""


def request(path: Path, payload: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """Send one request; returns the counters, raises ControlError on refusal or timeout."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            sock.sendall(json.dumps(payload).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise ControlError(f"control socket {path}: {exc}") from exc
    try:
        answer = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ControlError(f"control socket {path}: bad answer {data[:80]!r}") from exc
    if not answer.get("ok"):
        raise ControlError(f"control socket {path}: {answer.get('error')}")
    counters: dict[str, Any] = answer["counters"]
    return counters
