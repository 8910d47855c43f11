"""Shared by the Docker tests: require a daemon (fail in CI, skip elsewhere), list leftovers."""

from __future__ import annotations

import subprocess

from scenarios.pytest_plugin import unavailable
from scenarios.stack.docker import LABEL, docker_unavailable_reason
from scenarios.stack.docker_images import IMAGE_CHOICES


def require_docker() -> None:
    """Skip (fail when STORMPROOF_REQUIRE_SERVICES=1) unless a Docker daemon answers."""
    reason = docker_unavailable_reason()
    if reason:
        unavailable(f"{reason} (make test starts one: scripts/bootstrap --docker)")


def local_images() -> dict[str, str]:
    """$STORMPROOF_*_IMAGE -> the local build, after checking that each one exists."""
    chosen = {}
    for var, local, _public in IMAGE_CHOICES.values():
        found = subprocess.run(
            ["docker", "image", "inspect", local], capture_output=True, timeout=30
        )
        if found.returncode != 0:
            unavailable(f"image {local} missing (scripts/docker-images builds it)")
        chosen[var] = local
    return chosen


def docker_ids(kind: str, label: str = LABEL) -> list[str]:
    """Ids of the containers (`kind`="ps") or networks ("network") carrying `label` (any: "")."""
    argv = ["docker", "ps", "-aq"] if kind == "ps" else ["docker", "network", "ls", "-q"]
    listing = subprocess.run(
        [*argv, *(["--filter", f"label={label}"] if label else [])],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return listing.stdout.split()
