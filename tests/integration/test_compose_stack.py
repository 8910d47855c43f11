"""docker-compose, really run: the compose stack (local images, host networking) driven by
`stormproof run --provider external`, then brought down with nothing left."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from scenarios.ports import free_port
from scenarios.pytest_plugin import unavailable
from scenarios.toxiproxy import Toxiproxy, ToxiproxyError
from tests.integration.docker_support import docker_ids, local_images, require_docker
from tests.integration.test_docker_catalogue import ROOT, results, run_cli

pytestmark = [pytest.mark.docker, pytest.mark.integration]
# one Prometheus scenario, first: an alert of one scenario can still be firing in the next
# (seen: redis-down then postgres-down on one stack; reported, not a compose matter)
SCENARIOS = ["postgres-down", "redis-latency", "postgres-blackhole"]


def _wait_toxiproxy(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with Toxiproxy(url, timeout_s=1) as client:
        while True:
            try:
                if {"redis", "postgres"} <= set(client.proxies()):
                    return
            except ToxiproxyError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"toxiproxy at {url} without its proxies after {timeout_s}s")
            time.sleep(0.2)


def test_compose_stack_runs_scenarios_and_leaves_nothing(tmp_path: Path) -> None:
    """up -d (host-network override, local images), three scenarios pass through the external
    provider, down: no container and no network of the project is left."""
    require_docker()
    import shutil

    compose = shutil.which("docker-compose")
    if compose is None:
        unavailable("docker-compose missing (scripts/bootstrap --test installs it)")
        return
    redis_port, pg_port, tp_port, redis_listen, pg_listen = (free_port() for _ in range(5))
    config = tmp_path / "toxiproxy.json"
    config.write_text(
        json.dumps(
            [
                {
                    "name": "redis",
                    "listen": f"127.0.0.1:{redis_listen}",
                    "upstream": f"127.0.0.1:{redis_port}",
                    "enabled": True,
                },
                {
                    "name": "postgres",
                    "listen": f"127.0.0.1:{pg_listen}",
                    "upstream": f"127.0.0.1:{pg_port}",
                    "enabled": True,
                },
            ]
        )
    )
    config.chmod(0o644)
    env = {
        **local_images(),
        "STORMPROOF_REDIS_PORT": str(redis_port),
        "STORMPROOF_POSTGRES_PORT": str(pg_port),
        "STORMPROOF_TOXIPROXY_PORT": str(tp_port),
        "STORMPROOF_TOXIPROXY_CONFIG": str(config),
    }
    project = f"stormproof-test-{uuid.uuid4().hex[:8]}"
    base = [compose, "-f", "docker-compose.yml", "-f", "deploy/compose.host.yml", "-p", project]
    label = f"com.docker.compose.project={project}"
    networks = set(docker_ids("network", ""))
    try:
        up = subprocess.run(
            [*base, "up", "-d", "redis", "postgres", "toxiproxy"],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=ROOT,
            env={**os.environ, **env},
        )
        assert up.returncode == 0, up.stderr
        tp_url = f"http://127.0.0.1:{tp_port}"
        _wait_toxiproxy(tp_url, 30)
        stack_env = {
            "STORMPROOF_TOXIPROXY_URL": tp_url,
            "REDIS_URL": f"redis://127.0.0.1:{redis_listen}/0",
            "DATABASE_URL": f"postgresql://stormproof@127.0.0.1:{pg_listen}/stormproof",
            "REDIS_DIRECT_URL": f"redis://127.0.0.1:{redis_port}/0",
            "DATABASE_DIRECT_URL": f"postgresql://stormproof@127.0.0.1:{pg_port}/stormproof",
        }
        report = tmp_path / "report"
        run = run_cli(
            [
                "run",
                *SCENARIOS,
                "--provider",
                "external",
                "--allow-reset",
                "--quick",
                "--report",
                str(report),
            ],
            stack_env,
            timeout_s=60 + 45 * len(SCENARIOS),
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert results(report) == dict.fromkeys(SCENARIOS, True)
    finally:
        down = subprocess.run(
            [*base, "down", "-v", "--remove-orphans", "--timeout", "10"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={**os.environ, **env},
        )
    assert down.returncode == 0, down.stderr
    assert docker_ids("ps", label) == [], "compose left containers"
    assert docker_ids("network", label) == [] and set(docker_ids("network", "")) == networks
