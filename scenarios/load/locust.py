"""Locust processes: one headless run, a single process or a master and N workers.

Locust is never imported here (it monkey-patches the whole process with gevent): it runs as
`python -m locust` subprocesses, each with a timeout and killed (its process group) at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from scenarios.load.options import REPO_ROOT, LoadOptions, say
from scenarios.ports import free_port

LOCUST_GRACE_S = 60.0
"""Beyond warm-up + duration: Locust start-up, workers connecting, reports written."""


class LocustRun:
    """One headless Locust run: a single process, or a master and N workers."""

    def __init__(self, options: LoadOptions, host: str, run_dir: Path, env: Mapping[str, str]):
        """`env`: the load contract's variables, on top of this process's environment."""
        self.options = options
        self.host = host
        self.run_dir = run_dir
        self.env = dict(env)
        self.csv_prefix = run_dir / "locust"
        self.html = run_dir / "locust.html"
        self._procs: list[subprocess.Popen[bytes]] = []

    def _argv(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(self.options.locustfile),
            "--headless",
            "--host",
            self.host,
            "--exit-code-on-error",
            "0",
            "--only-summary",
            *extra,
        ]

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.run_dir / f"{name}.log").open("wb")
        try:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},  # Locust needs PATH, the venv, ...
                cwd=REPO_ROOT,
                start_new_session=True,  # its own process group: killed as a whole
            )
        finally:
            log.close()
        self._procs.append(proc)
        return proc

    def run(self) -> int:
        """Run to completion (or timeout); returns the master's exit status."""
        reports = ["--csv", str(self.csv_prefix), "--html", str(self.html)]
        timeout = self.options.warmup_s + self.options.duration_s + LOCUST_GRACE_S
        try:
            if self.options.workers <= 0:
                main = self._spawn("locust", self._argv(*reports))
            else:
                port = free_port()
                main = self._spawn(
                    "locust-master",
                    self._argv(
                        "--master",
                        "--master-bind-host",
                        "127.0.0.1",
                        "--master-bind-port",
                        str(port),
                        "--expect-workers",
                        str(self.options.workers),
                        "--expect-workers-max-wait",
                        "30",
                        *reports,
                    ),
                )
                for n in range(1, self.options.workers + 1):
                    self._spawn(
                        f"locust-worker-{n}",
                        self._argv(
                            "--worker",
                            "--master-host",
                            "127.0.0.1",
                            "--master-port",
                            str(port),
                        ),
                    )
            try:
                code = main.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                say(f"locust did not finish within {timeout:.0f}s: killed")
                return -1
            for proc in self._procs[1:]:  # workers quit when the master tells them
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=15)
            return code
        finally:
            self.kill()

    def kill(self) -> None:
        """Stop every Locust process this run started that is still alive (group-wide)."""
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
