"""Choose and open a stack provider by name: local, external or docker."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from scenarios.stack.base import Stack
from scenarios.stack.errors import StackError

PROVIDERS = ("local", "external", "docker")
PROVIDER_ENV = "STORMPROOF_STACK"


def resolve_provider(name: str | None, env: Mapping[str, str]) -> str:
    """The provider to use: the name given, $STORMPROOF_STACK, or docker/local by availability."""
    chosen = name or env.get(PROVIDER_ENV) or "auto"
    if chosen == "auto":
        from scenarios.stack.docker import docker_unavailable_reason

        return "docker" if docker_unavailable_reason() is None else "local"
    if chosen not in PROVIDERS:
        raise StackError(
            f"unknown stack provider {chosen!r} (choose one of {', '.join(PROVIDERS)})"
        )
    return chosen


def open_stack(
    name: str | None = None,
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    *,
    redis_aof: bool = True,
    redis_appendfsync: str = "always",
    prometheus: bool = False,
    redis_mode: str = "single",
) -> Stack:
    """Start (or attach to) a stack; raises StackError with one line when it cannot.
    `prometheus=True` also starts our own Prometheus (`stack.prometheus`), stopped with it.
    `redis_mode="replicated"`: a primary, replicas and Sentinels (local provider only)."""
    stack = _open(
        name,
        env,
        base_dir,
        redis_aof=redis_aof,
        redis_appendfsync=redis_appendfsync,
        redis_mode=redis_mode,
    )
    if prometheus:
        from scenarios.stack.prometheus import attach_prometheus

        attach_prometheus(stack, base_dir)
    return stack


def _open(
    name: str | None,
    env: Mapping[str, str] | None,
    base_dir: Path | None,
    *,
    redis_aof: bool,
    redis_appendfsync: str,
    redis_mode: str = "single",
) -> Stack:
    env = os.environ if env is None else env
    provider = resolve_provider(name, env)
    if redis_mode != "single" and provider != "local":
        raise StackError(f"the {provider} provider cannot start a {redis_mode} Redis")
    if not redis_aof and provider == "external":
        raise StackError(f"the {provider} provider cannot run Redis without AOF")
    if redis_appendfsync != "always" and provider != "local":
        raise StackError(f"the {provider} provider cannot set Redis's appendfsync")
    if provider == "external":
        from scenarios.stack.external import open_external_stack

        return open_external_stack(env)
    if provider == "docker":
        from scenarios.stack.docker import open_docker_stack

        return open_docker_stack(env, redis_aof=redis_aof)
    from scenarios.stack.local import start_local_stack

    return start_local_stack(
        base_dir, redis_aof=redis_aof, redis_appendfsync=redis_appendfsync, redis_mode=redis_mode
    )
