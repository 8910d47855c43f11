"""The target launcher: start the service under test with the contract's environment.

Any command that honours the target contract (docs/contract in DESIGN) can be driven;
the default is the reference service. Each instance gets its own port, INSTANCE_ID and
journal directory; its output goes to `<run_dir>/target-<id>.log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from scenarios.ports import free_port
from scenarios.stack.base import StackUrls
from scenarios.stack.process import ManagedProcess

DEFAULT_COMMAND = (sys.executable, "-m", "reference.service")
# The seed's variables (and the reference's own) are never inherited from the caller's
# shell: a DISABLE_REDIS or CACHE_TTL left there would silently change what a scenario
# tests. Only the contract's values and the scenario's target_env reach the target.
_NOT_INHERITED = re.compile(
    r"^(DISABLE_REDIS|REDIS_.*|CACHE_.*|CIRCUIT_BREAKER_.*|AUDITORIA_.*|RESILIENCE_.*"
    r"|HEALTH_CHECK_INTERVAL|ALERT_.*|DATABASE_URL|DB_.*|ADMIN_TOKEN|INSTANCE_ID|HOST|PORT"
    r"|LOG_FORMAT)$"
)


def inherited_env() -> dict[str, str]:
    """The caller's environment (PATH, PYTHONPATH, ...) minus the service's settings."""
    return {k: v for k, v in os.environ.items() if not _NOT_INHERITED.match(k)}


@dataclass(frozen=True)
class TargetSpec:
    """How to run the target: command, number of instances, extra environment."""

    command: tuple[str, ...] = DEFAULT_COMMAND
    instances: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 30.0

    @classmethod
    def from_command_line(cls, command: str | None, **kwargs: object) -> TargetSpec:
        """A spec running `command` (shell words; None: the reference)."""
        argv = tuple(shlex.split(command)) if command else DEFAULT_COMMAND
        return cls(command=argv, **kwargs)  # type: ignore[arg-type]


def _answers(url: str) -> bool:
    """The target is up when /health answers at all (200 or 503)."""
    response = httpx.get(f"{url}/health", timeout=1.0)
    return response.status_code in (200, 503)


class TargetInstance:
    """One target process (implements the harness's ProcessHandle)."""

    def __init__(self, index: int, process: ManagedProcess, url: str, backup_path: Path) -> None:
        self.index = index
        self.instance_id = f"i{index}"
        self.process = process
        self.url = url
        self.backup_path = backup_path

    @property
    def pid(self) -> int | None:
        """The process id, None when not running."""
        return self.process.pid

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.process.running

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the instance and wait until /health answers."""
        self.process.start(timeout_s)

    def kill(self) -> None:
        """SIGKILL the instance."""
        self.process.kill()

    def pause(self) -> None:
        """SIGSTOP the instance."""
        self.process.pause()

    def resume(self) -> None:
        """SIGCONT the instance."""
        self.process.resume()

    def stop(self) -> None:
        """Stop the instance gracefully, SIGKILL after 15 s."""
        self.process.stop(timeout_s=15.0)


class TargetGroup:
    """Starts, restarts and stops the target instances of one run."""

    def __init__(
        self,
        spec: TargetSpec,
        urls: StackUrls,
        run_dir: Path,
        admin_token: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        instance_env: Callable[[int], Mapping[str, str]] | None = None,
        backup_root: Path | None = None,
    ) -> None:
        self.spec = spec
        self.admin_token = admin_token or secrets.token_urlsafe(16)
        self.instances: list[TargetInstance] = []
        run_dir.mkdir(parents=True, exist_ok=True)
        for index in range(1, spec.instances + 1):
            port = free_port()
            # backup_root: the stack's forgetful journal disk (power cuts), if it has one
            backup = (backup_root or run_dir) / f"instance-{index}" / "audit-backup"
            env = {
                **inherited_env(),
                "REDIS_URL": urls.redis_url,
                "DATABASE_URL": urls.database_url,
                **urls.sentinel_env(),
                "AUDITORIA_BACKUP_PATH": str(backup),
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "INSTANCE_ID": f"i{index}",
                "ADMIN_TOKEN": self.admin_token,
                "LOG_FORMAT": "json",
                **spec.env,
                **(extra_env or {}),
                **(instance_env(index) if instance_env else {}),
            }
            url = f"http://127.0.0.1:{port}"
            process = ManagedProcess(
                f"target-i{index}",
                spec.command,
                log_path=run_dir / f"target-i{index}.log",
                ready=lambda url=url: _answers(url),  # type: ignore[misc]
                env=env,
            )
            self.instances.append(TargetInstance(index, process, url, backup))

    @property
    def urls(self) -> list[str]:
        """The base URL of each instance."""
        return [instance.url for instance in self.instances]

    def start(self) -> None:
        """Start every instance and wait until each answers /health."""
        for instance in self.instances:
            instance.start(self.spec.startup_timeout_s)

    def ensure_running(self) -> None:
        """Restart every instance that died (after a SIGKILL fault)."""
        for instance in self.instances:
            instance.resume()
            if not instance.running:
                instance.start(self.spec.startup_timeout_s)

    def stop(self) -> None:
        """Stop every instance."""
        for instance in self.instances:
            instance.stop()

    def log_excerpt(self, lines: int = 60) -> str:
        """The last lines of each instance's log."""
        parts = []
        for instance in self.instances:
            try:
                text = instance.process.log_path.read_text(errors="replace").splitlines()
            except OSError:
                text = []
            parts.append(f"== {instance.instance_id} ==")
            parts.extend(text[-lines:])
        return "\n".join(parts)

    def __enter__(self) -> TargetGroup:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def wait_healthy(urls: Sequence[str], timeout_s: float) -> None:
    """Wait until every URL's /health says HEALTHY; TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        for url in urls:
            while True:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    response = await client.get(f"{url}/health")
                    if response.json().get("status") == "HEALTHY":
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} not HEALTHY within {timeout_s:.0f}s")
                await asyncio.sleep(0.1)


async def settle(targets: TargetGroup, timeout_s: float, *, admin: bool = True) -> int | None:
    """After healing: wait for HEALTHY, run recovery until the audit backlog is empty
    (`admin=False`: never call POST /admin/recovery; the service's own job must drain it).

    Returns the backlog left (journal + queue) when time ran out, 0 when drained,
    None when the target never answered the backlog endpoint.
    """
    deadline = time.monotonic() + timeout_s
    headers = {"Authorization": f"Bearer {targets.admin_token}"}
    pending: int | None = None
    async with httpx.AsyncClient(timeout=5.0, headers=headers) as client:
        with contextlib.suppress(TimeoutError):
            await wait_healthy(targets.urls, max(1.0, timeout_s / 2))
        while True:
            total = 0
            answered = True
            for url in targets.urls:
                try:
                    if admin:
                        await client.post(f"{url}/admin/recovery")
                    backlog = (await client.get(f"{url}/admin/audit/backlog")).json()
                    total += int(backlog["journal_pending"]) + int(backlog["queue_pending"])
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    answered = False
            if answered:
                pending = total
            if pending == 0 or time.monotonic() > deadline:
                return pending
            await asyncio.sleep(0.25)
