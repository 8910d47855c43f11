"""The repository's set-up: bootstrap idempotence, docker-compose file, docker provider, smoke."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios.stack import StackError, open_stack
from scenarios.stack.docker import docker_unavailable_reason

ROOT = Path(__file__).resolve().parents[2]


def test_bootstrap_second_run_does_nothing() -> None:
    """With everything present, bootstrap installs nothing and prints nothing."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "bootstrap")], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_docker_compose_file_is_valid() -> None:
    """docker-compose.yml parses and validates (Debian's docker-compose, no engine needed)."""
    compose = shutil.which("docker-compose")
    if compose is None:
        if os.environ.get("STORMPROOF_REQUIRE_SERVICES") == "1":
            pytest.fail("docker-compose missing (scripts/bootstrap --test installs it)")
        pytest.skip("docker-compose missing (scripts/bootstrap --test installs it)")
    result = subprocess.run(
        [compose, "-f", "docker-compose.yml", "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    for service in ("redis:", "postgres:", "toxiproxy:"):
        assert service in result.stdout
    assert "appendfsync" in result.stdout and "always" in result.stdout


def test_compose_env_matches_compose_ports() -> None:
    """deploy/compose.env points at the ports the bridge layout publishes."""
    env = (ROOT / "deploy" / "compose.env").read_text()
    compose = (ROOT / "docker-compose.override.yml").read_text()
    for port in ("8474", "16379", "15432", "6379", "5432"):
        assert f":{port}" in env
        assert f"127.0.0.1:{port}:{port}" in compose


@pytest.mark.docker
def test_docker_provider_without_daemon_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a Docker daemon the docker provider refuses with the reason, in one line."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-daemon.sock'}")
    assert docker_unavailable_reason() is not None
    with pytest.raises(StackError) as info:
        open_stack("docker")
    assert "docker" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.docker
def test_docker_stack_runs() -> None:
    """With a Docker daemon, the docker provider brings up a working stack."""
    from scenarios.stack.smoke import smoke_test
    from tests.integration.docker_support import require_docker

    require_docker()
    with open_stack("docker") as stack:
        assert len(smoke_test(stack)) == 4


@pytest.mark.integration
def test_smoke_command_brings_a_stack_up_and_down() -> None:
    """`stormproof stack smoke` proves both proxies carry traffic and obey faults."""
    result = subprocess.run(
        [sys.executable, "-m", "scenarios.cli", "stack", "smoke", "--provider", "local"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("  ok  ") == 4
    assert result.stdout.strip().endswith("stack down")
