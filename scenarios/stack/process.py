"""A child process we own: started in its own process group, waited for, always stopped."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from scenarios.stack.errors import StackError

_PR_SET_PDEATHSIG = 1


def _death_signal_setter(sig: int) -> Callable[[], None] | None:
    """Ask the kernel to signal the child when we die (only safe from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def setter() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return setter


class ManagedProcess:
    """Start, readiness-wait, stop, kill, pause and restart one service process.

    Every signal goes to the whole process group (PostgreSQL's backends die with
    their postmaster). `log_path` collects stdout and stderr.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        death_signal: int = signal.SIGKILL,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._ready = ready
        self._env = dict(env) if env is not None else None
        self._user = user
        self._stop_signal = stop_signal
        self._death_signal = death_signal
        self._cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id, None when not started."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 30.0) -> None:
        """Spawn the process and wait until `ready()` is true (or fail with the log's tail)."""
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                user=self._user,
                group=self._user,
                extra_groups=[] if self._user else None,
                start_new_session=True,
                preexec_fn=_death_signal_setter(self._death_signal),
            )
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until `ready` answers; StackError on exit or after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise StackError(
                    f"{self.name} exited during start-up (code {code}): {self.log_tail()}"
                )
            if _quietly(self._ready):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise StackError(f"{self.name} not ready after {timeout_s:.0f}s: {self.log_tail()}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        """Send `sig` to the process group (no-op when not running)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop, then SIGKILL after `timeout_s`; reaps the group."""
        if self._proc is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(self._stop_signal)
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
        self._kill_group()

    def kill(self) -> None:
        """SIGKILL the whole group, as a crash would."""
        if self._proc is None:
            return
        self._kill_group()

    def pause(self) -> None:
        """SIGSTOP the process group."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the process group."""
        self.signal(signal.SIGCONT)

    def restart(self, timeout_s: float = 30.0) -> None:
        """Kill, then start again."""
        self.kill()
        self.start(timeout_s)

    def _kill_group(self) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"{self.name} (pid {self._proc.pid}) survived SIGKILL") from exc
        _wait_group_gone(self._proc.pid, 10)

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the process's log."""
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


def _quietly(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except Exception:
        return False
