"""A dependency running in a container, crashed and paused the Docker way.

`kill()` is `docker kill -s KILL` (the container's whole process tree dies, its file
system stays: Redis' AOF and PostgreSQL's data survive), `start()` is `docker start` and
waits until the service answers, `pause()`/`resume()` are `docker pause`/`unpause`
(the cgroup freezer: every process stops, as SIGSTOP of the local process group does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from scenarios.stack.errors import StackError

KILL_TIMEOUT_S = 10.0


class ContainerService:
    """A `Service` (see stack.base) backed by a started Docker container."""

    def __init__(self, name: str, container: Any, ready: Callable[[], bool]) -> None:
        self.name = name
        self._container = container
        self._ready = ready

    def _status(self) -> str:
        self._container.reload()
        return str(self._container.status)

    @property
    def pid(self) -> int | None:
        self._container.reload()
        pid = int(self._container.attrs.get("State", {}).get("Pid") or 0)
        return pid or None

    @property
    def running(self) -> bool:
        """Running or paused (a paused process is alive, as after SIGSTOP)."""
        return self._status() in ("running", "paused")

    def kill(self) -> None:
        """SIGKILL every process of the container, as a crash would; waits until it is down."""
        status = self._status()
        if status == "paused":
            self._container.unpause()  # a frozen cgroup would hold the SIGKILL
        if status in ("running", "paused", "restarting"):
            self._container.kill(signal="SIGKILL")
        deadline = time.monotonic() + KILL_TIMEOUT_S
        while self._status() in ("running", "paused", "restarting"):
            if time.monotonic() > deadline:
                raise StackError(f"{self.name} container survived SIGKILL for {KILL_TIMEOUT_S}s")
            time.sleep(0.05)

    def start(self, timeout_s: float = 30.0) -> None:
        """`docker start` (no-op when running) and wait until the service answers."""
        if not self.running:
            self._container.start()
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            status = self._status()
            if status in ("exited", "dead"):
                raise StackError(f"{self.name} container {status}: {self.log_tail()}")
            if status == "running" and _quietly(self._ready):
                return
            if time.monotonic() > deadline:
                raise StackError(f"{self.name} not ready after {timeout_s:.0f}s: {self.log_tail()}")
            time.sleep(0.1)

    def restart(self, timeout_s: float = 30.0) -> None:
        self.kill()
        self.start(timeout_s)

    def pause(self) -> None:
        if self._status() == "running":
            self._container.pause()

    def resume(self) -> None:
        if self._status() == "paused":
            self._container.unpause()

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self._container.logs(tail=lines).decode(errors="replace")
        except Exception as exc:
            return f"(no log: {exc})"
        return " | ".join(text.strip().splitlines()) or "(empty log)"


def _quietly(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except Exception:
        return False
