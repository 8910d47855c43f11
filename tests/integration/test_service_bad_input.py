"""Bad input never yields a 5xx: each endpoint answers a 4xx with a reason, and the
service stays HEALTHY afterwards (bad input is not a dependency failure). The generated
counterpart (Schemathesis on the app's OpenAPI schema) is test_service_fuzz.py."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.service_support import Service, audit_body

pytestmark = pytest.mark.integration

JSON_HEADERS = {"content-type": "application/json"}
ONE_MB = 1024 * 1024

# (method, path, keyword arguments for httpx, acceptable statuses)
Case = tuple[str, str, dict[str, Any], tuple[int, ...]]


def _raw(text: str) -> dict[str, Any]:
    return {"content": text.encode(), "headers": JSON_HEADERS}


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


AUDIT_CASES: list[Case] = [
    ("POST", "/audit", _raw("{not json"), (422,)),
    ("POST", "/audit", _raw(""), (422,)),
    ("POST", "/audit", _raw("[1, 2]"), (422,)),
    ("POST", "/audit", _raw('"a string"'), (422,)),
    ("POST", "/audit", {"content": b"\xff\xfe\x00garbage", "headers": JSON_HEADERS}, (422, 400)),
    ("POST", "/audit", {"content": json.dumps(audit_body()).encode()}, (422, 415)),
    ("POST", "/audit", {"json": audit_body(event_id="not-a-uuid")}, (422,)),
    ("POST", "/audit", {"json": {**audit_body(), "event_id": 12345}}, (422,)),
    (
        "POST",
        "/audit",
        {"json": audit_body(event_id="00000000-0000-0000-0000-000000000000")},
        (422,),
    ),
    ("POST", "/audit", {"json": audit_body(actor=7)}, (422,)),
    ("POST", "/audit", {"json": audit_body(actor="")}, (422,)),
    ("POST", "/audit", {"json": audit_body(actor="x" * 201)}, (422,)),
    ("POST", "/audit", {"json": audit_body(actor="nul\u0000byte")}, (422,)),
    ("POST", "/audit", _raw(json.dumps(audit_body()).replace('"tester"', '"\\ud800"')), (422,)),
    ("POST", "/audit", {"json": audit_body(payload=[1, 2])}, (422,)),
    ("POST", "/audit", {"json": audit_body(payload="text")}, (422,)),
    ("POST", "/audit", {"json": audit_body(payload={"s": "nul\u0000"})}, (422,)),
    # a lone surrogate as a payload key: pydantic replaces it with U+FFFD (lossy, not 5xx)
    ("POST", "/audit", _raw(json.dumps(audit_body()).replace('"valor"', '"\\udfff"')), (422, 202)),
    ("POST", "/audit", _raw(json.dumps(audit_body()).replace("10}", "1e999}")), (422,)),
    ("POST", "/audit", {"json": audit_body(payload={"big": "x" * 70_000})}, (422,)),
    ("POST", "/audit", _raw(json.dumps(audit_body()).replace("10}", _deep(100) + "}")), (422,)),
    # too deep / too many digits for Python's json: FastAPI answers 400 "error parsing"
    (
        "POST",
        "/audit",
        _raw(json.dumps(audit_body()).replace("10}", _deep(20_000) + "}")),
        (422, 400),
    ),
    ("POST", "/audit", _raw(json.dumps(audit_body()).replace("10}", "1" * 5000 + "}")), (422, 400)),
    ("POST", "/audit", {"json": audit_body(occurred_at="yesterday")}, (422,)),
    ("POST", "/audit", {"json": audit_body(occurred_at="2024-01-01T00:00:00")}, (422, 202)),
    ("POST", "/audit", {"json": audit_body(occurred_at="99999-01-01T00:00:00Z")}, (422,)),
    ("POST", "/audit", {"json": {**audit_body(), "extra": 1}}, (422,)),
    ("POST", "/audit", {"json": {k: v for k, v in audit_body().items() if k != "actor"}}, (422,)),
]

CACHE_CASES: list[Case] = [
    ("PUT", "/cache/k", _raw("{oops"), (422,)),
    ("PUT", "/cache/k", {"json": {}}, (422,)),
    ("PUT", "/cache/k", {"json": {"value": 1, "other": 2}}, (422,)),
    ("PUT", "/cache/k", {"json": {"value": 1, "ttl_s": 0}}, (422,)),
    ("PUT", "/cache/k", {"json": {"value": 1, "ttl_s": -5}}, (422,)),
    ("PUT", "/cache/k", {"json": {"value": 1, "ttl_s": "soon"}}, (422,)),
    ("PUT", "/cache/k", {"json": {"value": 1, "ttl_s": 1.5}}, (422,)),
    ("PUT", "/cache/k", {"json": {"value": 1, "ttl_s": 10**30}}, (422,)),
    ("PUT", "/cache/k", _raw('{"value": 1e999}'), (422,)),
    ("PUT", "/cache/k", _raw('{"value": NaN}'), (422,)),
    ("PUT", "/cache/k", _raw('{"value": -Infinity}'), (422,)),
    ("PUT", "/cache/k", _raw('{"value": ["\\ud800"]}'), (422,)),
    ("PUT", "/cache/k", {"json": {"value": "nul\u0000ok"}}, (204, 422)),
    ("PUT", "/cache/k", _raw('{"value": ' + _deep(20_000) + "}"), (422, 400)),
    ("PUT", "/cache/k", _raw('{"value": ' + "9" * 5000 + "}"), (422, 400)),
    ("PUT", "/cache/k", {"json": {"value": "v" * 200_000}}, (204, 413, 422)),
    ("GET", "/cache/a%20b", {}, (422,)),
    ("GET", "/cache/" + "k" * 201, {}, (422,)),
    ("GET", "/cache/%C3%A7", {}, (422,)),
    ("GET", "/cache/%00", {}, (422, 404)),
    ("GET", "/cache/a/b", {}, (404,)),
    ("GET", "/cache/", {}, (404,)),
    ("PUT", "/cache/bad%20key", {"json": {"value": 1}}, (422,)),
    ("DELETE", "/cache/%2F..%2F", {}, (422, 404)),
]

BENEFICIO_CASES: list[Case] = [
    ("GET", "/beneficios/a%20b", {}, (422,)),
    ("PUT", "/beneficios/b1", _raw("{"), (422,)),
    ("PUT", "/beneficios/b1", {"json": {"nome": "", "valor": 1}}, (422,)),
    ("PUT", "/beneficios/b1", {"json": {"nome": "x", "valor": -1}}, (422,)),
    ("PUT", "/beneficios/b1", {"json": {"nome": "x", "valor": "mil"}}, (422,)),
    ("PUT", "/beneficios/b1", {"json": {"nome": "x", "valor": 1.25}}, (422,)),
    ("PUT", "/beneficios/b1", {"json": {"nome": "x", "valor": 10**13}}, (422,)),
    ("PUT", "/beneficios/b1", {"json": {"nome": "x", "valor": 1, "v": 2**63}}, (422,)),
    ("PUT", "/beneficios/b1", {"json": {"nome": "x", "valor": 1, "event_id": "nope"}}, (422,)),
    ("PUT", "/beneficios/b1", {"json": {"nome": "nul\u0000", "valor": 1}}, (422,)),
    ("PUT", "/beneficios/b1", _raw('{"nome": "\\ud800", "valor": 1}'), (422,)),
    ("PUT", "/beneficios/b1", {"json": {"nome": "x", "valor": 1, "actor": "a\u0000"}}, (422,)),
    ("PUT", "/beneficios/b1", _raw('{"nome": "x", "valor": 1, "actor": "\\udc00"}'), (422,)),
    (
        "PUT",
        "/beneficios/b1",
        {"json": {"nome": "x", "valor": 1, "event_id": "00000000-0000-0000-0000-000000000000"}},
        (422,),
    ),
    ("PUT", "/beneficios/b1", {"json": {"nome": "x", "valor": 1, "extra": True}}, (422,)),
]

ROUTE_CASES: list[Case] = [
    ("GET", "/nowhere", {}, (404,)),
    ("POST", "/cache/k", {"json": {"value": 1}}, (405,)),
    ("DELETE", "/audit", {}, (405,)),
    ("GET", "/admin", {}, (404,)),
    (
        "GET",
        "/admin/audit/backlog",
        {"headers": {"Authorization": "Bearer \u00e9\u00e8".encode("latin-1")}},
        (401,),
    ),
    ("PUT", "/health", {}, (405,)),
]


def _check_all(service: Service, cases: list[Case]) -> None:
    """Send every case; collect every wrong answer, then fail once listing them all."""
    wrong = []
    for method, path, kwargs, expected in cases:
        response = service.client.request(method, path, **kwargs)
        if response.status_code not in expected:
            wrong.append(
                f"{method} {path} {str(kwargs)[:80]}: {response.status_code} {response.text[:160]}"
            )
        elif response.status_code >= 400:
            body = response.json()
            if not body.get("detail"):
                wrong.append(f"{method} {path}: {response.status_code} without a reason")
    assert not wrong, "\n".join(wrong)


def _still_healthy(service: Service) -> None:
    # One health probe (150 ms timeout here) can miss on a loaded machine and show
    # DEGRADED until the next one; the claims are the breakers and the failure count.
    health = service.wait_status("HEALTHY")
    assert health["circuits"] == {"redis": "CLOSED", "database": "CLOSED"}, health
    resilience = service.client.get("/resilience").json()
    assert resilience["redis"]["failures"] == 0, resilience


def test_bad_input_gets_4xx_with_a_reason(service: Service) -> None:
    """Malformed JSON, wrong types, non-UUID or nil event ids, NUL and lone surrogates,
    deep nesting, huge numbers, bad keys, unknown routes and methods: a 4xx with `detail`,
    never a 5xx; afterwards the breakers are closed and no Redis failure was counted."""
    _check_all(service, AUDIT_CASES + CACHE_CASES + BENEFICIO_CASES + ROUTE_CASES)
    _still_healthy(service)


def _raw_status(url: str, request: bytes) -> int:
    """Send `request` as raw bytes (httpx refuses malformed headers); the status code."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0].split()
    assert len(status_line) >= 2, f"no HTTP answer: {answer[:100]!r}"
    return int(status_line[1])


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    prefix = b'{"value": "'
    yield prefix
    sent = len(prefix)
    while sent < total - 2:
        piece = b"x" * min(size, total - 2 - sent)
        sent += len(piece)
        yield piece
    yield b'"}'


def test_one_megabyte_bodies_are_refused(service: Service) -> None:
    """A 1 MB body is refused (413 or 422) with or without a Content-Length (chunked), on
    every endpoint that takes a body, and nothing of it is stored."""
    c = service.client
    big_value = {"value": "x" * ONE_MB}
    big_audit = audit_body(payload={"blob": "x" * ONE_MB})
    for method, path, body in (
        ("PUT", "/cache/big", big_value),
        ("POST", "/audit", big_audit),
        ("PUT", "/beneficios/big", {"nome": "x" * ONE_MB, "valor": 1}),
    ):
        sized = c.request(method, path, json=body)
        assert sized.status_code in (413, 422), (path, sized.status_code, sized.text[:200])
        chunked = c.request(method, path, content=_chunks(ONE_MB), headers=JSON_HEADERS)
        assert chunked.status_code in (413, 422), (path, chunked.status_code, chunked.text[:200])
    assert c.get("/cache/big").status_code == 404, "a refused body must not be cached"
    for length in ("-1", "1e6", "abc", "99999999999999999999"):
        status = _raw_status(
            service.url,
            b"PUT /cache/odd HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + length.encode() + b"\r\nConnection: close\r\n\r\n{}",
        )
        assert 400 <= status < 500, (length, status)
    _still_healthy(service)
