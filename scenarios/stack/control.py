"""`stormproof stack up|status|down`: a background stack shared by shells and tools."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scenarios.stack.daemon import ENV_FILE, STATE_FILE
from scenarios.stack.envfile import read_stack_urls
from scenarios.stack.errors import StackError
from scenarios.stack.providers import resolve_provider

UP_TIMEOUT_S = 120.0
DOWN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class StackState:
    """What `stormproof stack up` recorded: the daemon's pid, provider, service pids."""

    pid: int
    provider: str
    services: dict[str, int | None]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def read_state(state_dir: Path) -> StackState | None:
    """The running background stack, or None (a stale state file is removed)."""
    path = state_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text())
        state = StackState(int(raw["pid"]), str(raw["provider"]), dict(raw["services"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise StackError(f"{path}: malformed state file ({exc}); remove it") from exc
    if not _alive(state.pid):
        path.unlink(missing_ok=True)
        (state_dir / ENV_FILE).unlink(missing_ok=True)
        return None
    return state


def stack_up(state_dir: Path, provider: str | None, redis_mode: str = "single") -> str:
    """Start the daemon and wait for its stack.env; returns what to tell the user."""
    resolve_provider(provider, os.environ)  # bad names fail here, before anything starts
    running = read_state(state_dir)
    if running:
        return f"a stack is already running (pid {running.pid}): {state_dir / ENV_FILE}"
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / ENV_FILE).unlink(missing_ok=True)
    log_path = state_dir / "stack.log"
    argv = [sys.executable, "-m", "scenarios.stack.daemon", "--state-dir", str(state_dir)]
    if provider:
        argv += ["--provider", provider]
    if redis_mode != "single":
        argv += ["--redis", redis_mode]
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + UP_TIMEOUT_S
    while not (state_dir / ENV_FILE).exists():
        if daemon.poll() is not None:
            raise StackError(_last_line(log_path) or f"stack daemon exited ({daemon.returncode})")
        if time.monotonic() > deadline:
            daemon.send_signal(signal.SIGTERM)
            raise StackError(f"stack not up after {UP_TIMEOUT_S:.0f}s (see {log_path})")
        time.sleep(0.1)
    return f"stack up (pid {daemon.pid}); environment in {state_dir / ENV_FILE}"


def stack_down(state_dir: Path) -> str:
    """Stop the background stack; a one-line report."""
    state = read_state(state_dir)
    if state is None:
        return "no stack running"
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    while _alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = [pid for pid in [state.pid, *state.services.values()] if pid and _alive(pid)]
    for pid in leftovers:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    for name in (ENV_FILE, STATE_FILE):
        (state_dir / name).unlink(missing_ok=True)
    if leftovers:
        return f"stack down (killed leftovers: {leftovers})"
    return "stack down"


def stack_status(state_dir: Path) -> tuple[int, str]:
    """(exit code, report): 0 up and answering, 1 not running, 3 something does not answer."""
    state = read_state(state_dir)
    if state is None:
        return 1, "no stack running"
    urls = read_stack_urls(state_dir / ENV_FILE)
    from scenarios.stack.external import check_reachable
    from scenarios.toxiproxy import Toxiproxy, ToxiproxyError

    lines = [f"stack up (pid {state.pid}, provider {state.provider})"]
    lines += [f"  {key}={value}" for key, value in urls.as_env().items()]
    try:
        with Toxiproxy(urls.toxiproxy_url, timeout_s=3) as client:
            for proxy in client.proxies().values():
                toxics = ", ".join(t.type for t in proxy.toxics()) or "no toxics"
                state_word = "enabled" if proxy.enabled else "DISABLED"
                lines.append(
                    f"  proxy {proxy.name}: {proxy.listen} -> {proxy.upstream}, "
                    f"{state_word}, {toxics}"
                )
        check_reachable(urls)
    except (StackError, ToxiproxyError) as exc:
        lines.append(f"  not answering: {exc}")
        return 3, "\n".join(lines)
    return 0, "\n".join(lines)


def _last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else ""
