"""Schemathesis on the service's own OpenAPI schema, against a real service process: every
operation, through Schemathesis's phases (examples, coverage, fuzzing; positive and
negative data), bounded examples, and not one server error.

The schema is the app's, built at import (`create_app(...).openapi()`, no I/O) so that
`schema.parametrize()` can make one test per operation; the first test checks that the
running service serves exactly that document at /openapi.json. (`schemathesis.pytest.
from_fixture` would load it from the live service instead, but with schemathesis 4.32.5
and pytest 9.2 it fails on `request.node._nodeid`.)

Generation is random (a new sample each run; a failure prints the curl that reproduces it);
the specific bad inputs found so far are pinned in test_service_bad_input.py.

Admin operations: `GET /admin/audit/backlog` runs authorized; `POST /admin/recovery` runs
with generated Authorization headers (401s): an authorized run costs about a second each,
and the contract and audit tests already run it authorized.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from reference.config import Settings
from reference.service.app import create_app
from scenarios.stack import Stack
from scenarios.target import TargetGroup, TargetSpec
from tests.integration.service_support import (
    ADMIN_TOKEN,
    AUTH,
    SMALL_TIMEOUTS,
    reset_stack_state,
    wait_until,
)

pytestmark = pytest.mark.integration

EXAMPLES = 25
OPENAPI = create_app(Settings()).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture(scope="module")
def live_url(
    stormproof_stack_session: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One service for the whole module (one test per operation), on a clean, healed stack."""
    stack = stormproof_stack_session
    stack.heal()
    reset_stack_state(stack)
    run_dir: Path = tmp_path_factory.mktemp("fuzz")
    group = TargetGroup(
        TargetSpec(env=SMALL_TIMEOUTS), stack.urls, run_dir, admin_token=ADMIN_TOKEN
    )
    group.start()
    try:
        yield group.instances[0].url
    finally:
        group.stop()


def test_served_schema_is_the_fuzzed_one(live_url: str) -> None:
    """The running service serves, at /openapi.json, the very schema fuzzed below."""
    served = httpx.get(f"{live_url}/openapi.json", timeout=10.0)
    assert served.status_code == 200
    assert served.json() == OPENAPI
    paths = {f"{m.upper()} {p}" for p, ops in OPENAPI["paths"].items() for m in ops}
    assert paths >= {
        "GET /cache/{key}",
        "PUT /cache/{key}",
        "DELETE /cache/{key}",
        "GET /beneficios/{beneficio_id}",
        "PUT /beneficios/{beneficio_id}",
        "POST /audit",
        "GET /health",
        "GET /resilience",
        "GET /metrics",
        "POST /admin/recovery",
        "GET /admin/audit/backlog",
    }


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error(case: schemathesis.Case[Any], live_url: str) -> None:
    """No generated request, valid or not, gets a 5xx."""
    headers = AUTH if case.path == "/admin/audit/backlog" else None
    case.call_and_validate(
        base_url=live_url, headers=headers, checks=[not_a_server_error], timeout=15
    )


def test_still_healthy_after_fuzzing(live_url: str) -> None:
    """The fuzzing moved no breaker and counted no Redis failure: bad input is not a
    dependency failure."""
    # One health probe (150 ms timeout) may miss on a loaded machine: wait for the next.
    health = wait_until(
        lambda: _healthy(httpx.get(f"{live_url}/health", timeout=10.0).json()),
        10.0,
        0.1,
        "/health HEALTHY",
    )
    assert health["circuits"] == {"redis": "CLOSED", "database": "CLOSED"}, health
    resilience = httpx.get(f"{live_url}/resilience", timeout=10.0).json()
    assert resilience["redis"]["failures"] == 0, resilience


def _healthy(body: dict[str, Any]) -> dict[str, Any] | None:
    return body if body["status"] == "HEALTHY" else None
