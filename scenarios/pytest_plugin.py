"""pytest plugin (entry point `stormproof`): a session stack and per-test healing.

Fixtures:
- `stormproof_stack_session`: one stack for the session (provider from $STORMPROOF_STACK).
- `stormproof_stack`: the same stack, healed (proxies enabled, toxics removed, crashed
  services restarted) before and after each test.
- `toxiproxy_client`, `redis_proxy`, `postgres_proxy`: shortcuts on the healed stack.

When the stack cannot start, tests skip with the reason, unless
STORMPROOF_REQUIRE_SERVICES=1, when they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from scenarios.stack import Stack, StackError, open_stack
from scenarios.stack.base import install_sigterm_cleanup
from scenarios.toxiproxy import Proxy, Toxiproxy

REQUIRE_ENV = "STORMPROOF_REQUIRE_SERVICES"


def services_required() -> bool:
    """True when $STORMPROOF_REQUIRE_SERVICES asks to fail instead of skip."""
    return os.environ.get(REQUIRE_ENV, "") in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip, or fail when services are required (CI)."""
    if services_required():
        pytest.fail(f"{REQUIRE_ENV}=1 and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def stormproof_stack_session() -> Iterator[Stack]:
    """One stack for the whole session, closed at its end."""
    install_sigterm_cleanup()  # SIGTERM of the test run still stops the stack
    try:
        stack = open_stack()
    except StackError as exc:
        unavailable(f"the stack cannot start: {exc}")
        raise  # unreachable: unavailable() skips or fails
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def stormproof_stack(stormproof_stack_session: Stack) -> Iterator[Stack]:
    """The session stack, healed before and after the test."""
    stormproof_stack_session.heal()
    try:
        yield stormproof_stack_session
    finally:
        stormproof_stack_session.heal()


@pytest.fixture
def toxiproxy_client(stormproof_stack: Stack) -> Toxiproxy:
    """The healed stack's Toxiproxy client."""
    return stormproof_stack.toxiproxy


@pytest.fixture
def redis_proxy(stormproof_stack: Stack) -> Proxy:
    """The healed stack's Redis proxy."""
    return stormproof_stack.redis_proxy


@pytest.fixture
def postgres_proxy(stormproof_stack: Stack) -> Proxy:
    """The healed stack's PostgreSQL proxy."""
    return stormproof_stack.postgres_proxy
