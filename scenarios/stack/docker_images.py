"""Which images the docker provider runs: $STORMPROOF_*_IMAGE, else local builds, else public.

`scripts/docker-images` builds `stormproof/*:local` from Debian packages (no registry
needed); users with a registry get the usual public images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from scenarios.stack.errors import StackError

# service -> (environment variable, local build, public image)
IMAGE_CHOICES = {
    "redis": ("STORMPROOF_REDIS_IMAGE", "stormproof/redis:local", "redis:7"),
    "postgres": ("STORMPROOF_POSTGRES_IMAGE", "stormproof/postgres:local", "postgres:15"),
    "toxiproxy": (
        "STORMPROOF_TOXIPROXY_IMAGE",
        "stormproof/toxiproxy:local",
        "ghcr.io/shopify/toxiproxy:2.12.0",
    ),
}


@dataclass(frozen=True)
class DockerImages:
    """The image of each service."""

    redis: str
    postgres: str
    toxiproxy: str


def choose_images(env: Mapping[str, str], have_image: Callable[[str], bool]) -> DockerImages:
    """Per service: the variable when set, else the local build when present, else public."""
    chosen: dict[str, str] = {}
    for service, (var, local, public) in IMAGE_CHOICES.items():
        if var in env:
            value = env[var].strip()
            if not value or any(ch.isspace() for ch in value):
                raise StackError(f"{var} must be an image name, got {env[var]!r}")
            chosen[service] = value
        else:
            chosen[service] = local if have_image(local) else public
    return DockerImages(**chosen)
