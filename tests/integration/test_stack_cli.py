"""`stormproof stack up|status|down` from a shell, clean teardown, and clear errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import redis

from scenarios.ports import free_port
from scenarios.stack.envfile import read_stack_urls
from scenarios.stack.local import _sweep_stale_pg_roots
from scenarios.toxiproxy import Toxiproxy

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "scenarios.cli"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def alive(pid: int) -> bool:
    """`pid` runs and is not a zombie (gone between the two looks: not alive)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_up_status_down(tmp_path: Path) -> None:
    """up writes a correct stack.env, a second up refuses, status answers, down leaves nothing."""
    state = tmp_path / "state"
    up = run_cli("stack", "up", "--provider", "local", "--state-dir", str(state))
    assert up.returncode == 0, up.stderr
    pids: list[int] = []
    try:
        again = run_cli("stack", "up", "--provider", "local", "--state-dir", str(state))
        assert again.returncode == 0
        assert "already running" in again.stdout
        info = json.loads((state / "stack.json").read_text())
        pids = [info["pid"], *info["services"].values()]
        assert all(alive(pid) for pid in pids)

        urls = read_stack_urls(state / "stack.env")
        with Toxiproxy(urls.toxiproxy_url) as tp:
            proxies = tp.proxies()
            assert urls.redis_url.endswith(f":{proxies['redis'].listen_port}/0")
            assert f":{proxies['postgres'].listen_port}/" in urls.database_url
            with proxies["redis"].down(), proxies["postgres"].down():
                assert redis.Redis.from_url(urls.redis_direct_url, socket_timeout=2).ping()
                with psycopg.connect(urls.database_direct_url, connect_timeout=3) as conn:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
                with pytest.raises(redis.ConnectionError):
                    redis.Redis.from_url(urls.redis_url, socket_timeout=1).ping()
        status = run_cli("stack", "status", "--state-dir", str(state))
        assert status.returncode == 0, status.stdout
        assert "proxy redis" in status.stdout and "enabled" in status.stdout
    finally:
        down = run_cli("stack", "down", "--state-dir", str(state))
    assert down.returncode == 0
    assert down.stdout.strip() == "stack down"
    assert pids and not [pid for pid in pids if alive(pid)]
    assert not (state / "stack.env").exists()
    assert list((state / "run").iterdir()) == []
    gone = run_cli("stack", "status", "--state-dir", str(state))
    assert gone.returncode == 1 and "no stack running" in gone.stdout


CHILD = """
import sys, time
from scenarios.stack import open_stack
from scenarios.stack.base import install_sigterm_cleanup
install_sigterm_cleanup()
stack = open_stack("local", base_dir=__import__("pathlib").Path(sys.argv[1]))
print(" ".join(str(s.pid) for s in stack.services.values()), flush=True)
time.sleep(120)
"""


def _kill_owner(tmp_path: Path, sig: int) -> list[int]:
    """Start a process holding a local stack, send it `sig`; the services' pids still alive
    a bounded while after it died."""
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:  # closes its stdout pipe (warnings are errors: no ResourceWarning)
        assert child.stdout is not None
        pids = [int(p) for p in child.stdout.readline().split()]
        assert len(pids) == 3 and all(alive(pid) for pid in pids)
        child.send_signal(sig)
        child.wait(30)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def test_sigterm_mid_run_leaves_nothing_behind(tmp_path: Path) -> None:
    """A process holding a stack, killed with SIGTERM, stops every service and removes its dir."""
    assert _kill_owner(tmp_path, signal.SIGTERM) == []
    assert list(tmp_path.iterdir()) == []


def test_sigkill_of_the_owner_still_stops_services(tmp_path: Path) -> None:
    """Even SIGKILL of the owner stops its services (parent-death signal)."""
    assert _kill_owner(tmp_path, signal.SIGKILL) == []


def test_the_next_stack_stops_a_dead_owners_postmaster(tmp_path: Path) -> None:
    """A PostgreSQL left running by an owner that was SIGKILLed (one restarted by a fault
    thread has no parent-death signal) is killed, and its data dir removed, by the next
    local stack's start-up sweep; a live owner's is left alone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    root = Path(tempfile.mkdtemp(prefix="stormproof-pg-"))
    pgdata = root / "pgdata"
    pgdata.mkdir()
    # stands in for the postmaster: a process whose command line names the data dir
    with subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "-D", str(pgdata)]
    ) as orphan:
        cmdline = Path(f"/proc/{orphan.pid}/cmdline")
        deadline = time.monotonic() + 10
        while str(pgdata).encode() not in cmdline.read_bytes().split(b"\0"):
            assert time.monotonic() < deadline, "the stand-in never showed its command line"
            time.sleep(0.01)  # a process just started may not show its arguments yet
        (root / "owner.pid").write_text(str(dead.pid))
        (pgdata / "postmaster.pid").write_text(f"{orphan.pid}\n{pgdata}\n")
        live = Path(tempfile.mkdtemp(prefix="stormproof-pg-"))
        (live / "owner.pid").write_text(str(os.getpid()))
        try:
            _sweep_stale_pg_roots()
            assert orphan.wait(10) == -signal.SIGKILL
            assert not root.exists()
            assert live.exists()
        finally:
            if orphan.poll() is None:
                orphan.kill()
            shutil.rmtree(live, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unknown_provider_is_one_clear_line(tmp_path: Path) -> None:
    """An unknown provider name: one line naming it and the choices, exit 2, nothing started."""
    result = run_cli("stack", "up", "--provider", "nimbus", "--state-dir", str(tmp_path))
    line = _one_line_error(result)
    assert "nimbus" in line and "local" in line
    assert result.returncode == 2
    assert not (tmp_path / "stack.json").exists()


def test_unreachable_external_url_is_one_clear_line(tmp_path: Path) -> None:
    """An external stack whose Toxiproxy is not there: one line naming the URL."""
    port = free_port()
    env = {
        "STORMPROOF_TOXIPROXY_URL": f"http://127.0.0.1:{port}",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "REDIS_DIRECT_URL": "redis://127.0.0.1:1/0",
        "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
        "DATABASE_DIRECT_URL": "postgresql://x@127.0.0.1:1/x",
    }
    result = run_cli("stack", "up", "--provider", "external", "--state-dir", str(tmp_path), env=env)
    line = _one_line_error(result)
    assert f"127.0.0.1:{port}" in line and "unreachable" in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("REDIS_URL=redis://x\nthis is not a pair\n", ("{file}:2", "KEY=VALUE")),
        ("REDIS_URL=redis://127.0.0.1:1/0\n", ("DATABASE_DIRECT_URL", "missing")),
    ],
    ids=["malformed-line", "missing-variables"],
)
def test_bad_stack_env_is_one_clear_line(
    tmp_path: Path, content: str, expected: tuple[str, str]
) -> None:
    """A malformed env file names the file, the line and what is expected; one lacking
    variables names the missing ones. Either way: one line, non-zero exit."""
    bad = tmp_path / "bad.env"
    bad.write_text(content)
    env = {"STORMPROOF_STACK_ENV_FILE": str(bad)}
    result = run_cli(
        "stack", "up", "--provider", "external", "--state-dir", str(tmp_path / "s"), env=env
    )
    line = _one_line_error(result)
    for part in expected:
        assert part.format(file=bad) in line
