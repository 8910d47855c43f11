"""SIGTERM during a burst of POST /audit on the journal path (Redis and PostgreSQL both
down): the process exits within a bound, and after a restart on the same journal, healing
and recovery, every request that got a 202 is in audit_log exactly once."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from tests.integration.service_support import (
    Service,
    ServiceFactory,
    audit_body,
    audit_rows,
    wait_until,
)

pytestmark = pytest.mark.integration

WRITERS = 8
BURST_BEFORE_SIGTERM_S = 1.0
EXIT_BOUND_S = 12.0


@dataclass
class Outcomes:
    """What the writers saw, per event id."""

    acked: dict[uuid.UUID, str] = field(default_factory=dict)
    refused: set[uuid.UUID] = field(default_factory=set)
    unanswered: set[uuid.UUID] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _writer(service: Service, outcomes: Outcomes, stop: threading.Event) -> None:
    with httpx.Client(base_url=service.url, timeout=15.0) as client:
        while not stop.is_set():
            body = audit_body(payload={"writer": threading.get_ident()})
            event_id = uuid.UUID(body["event_id"])
            try:
                response = client.post("/audit", json=body)
            except httpx.HTTPError:
                with outcomes.lock:
                    outcomes.unanswered.add(event_id)
                time.sleep(0.05)
                continue
            with outcomes.lock:
                if response.status_code == 202:
                    outcomes.acked[event_id] = response.json()["path"]
                else:
                    outcomes.refused.add(event_id)


def test_sigterm_mid_burst_loses_no_acknowledged_event(service_factory: ServiceFactory) -> None:
    """Both proxies down (journal path), 8 concurrent writers, SIGTERM after a second: the
    process exits within the bound; restart on the same AUDITORIA_BACKUP_PATH, heal,
    recover: every 202 is in audit_log exactly once; rows beyond them only for requests
    that got no answer (counted separately)."""
    service = service_factory()
    stack = service.stack
    outcomes = Outcomes()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_writer, args=(service, outcomes, stop), daemon=True)
        for _ in range(WRITERS)
    ]
    with stack.redis_proxy.down(), stack.postgres_proxy.down():
        for thread in threads:
            thread.start()
        time.sleep(BURST_BEFORE_SIGTERM_S)
        acked_before = len(outcomes.acked)
        signalled = time.monotonic()
        service.instance.process.signal(signal.SIGTERM)
        wait_until(lambda: not service.instance.running, EXIT_BOUND_S, 0.05, "exit after SIGTERM")
        exit_s = time.monotonic() - signalled
        time.sleep(0.3)  # writers notice the refused connections
        stop.set()
        for thread in threads:
            thread.join(20.0)
        assert not any(t.is_alive() for t in threads)

        assert acked_before >= WRITERS, f"the burst never got going ({acked_before} acks)"
        assert set(outcomes.acked.values()) == {"file"}, set(outcomes.acked.values())
        assert "Finished server process" in service.log_text()
        service.restart()  # still cut off from both: it starts on the journal it left
        assert service.client.get("/health").status_code == 503
        accepted = service.post_audit()
        assert accepted.status_code == 202 and accepted.json()["path"] == "file"
        outcomes.acked[uuid.UUID(accepted.json()["event_id"])] = "file"

    service.wait_status("HEALTHY", timeout_s=15.0)
    service.drain()
    rows = audit_rows(stack)
    lost = [e for e in outcomes.acked if e not in rows]
    duplicated = {e: n for e, n in rows.items() if n != 1}
    unexpected = set(rows) - set(outcomes.acked) - outcomes.unanswered - outcomes.refused
    assert not lost, f"{len(lost)} of {len(outcomes.acked)} acknowledged events lost"
    assert not duplicated, duplicated
    assert not unexpected, f"{len(unexpected)} rows nobody asked for"
    print(
        f"acked={len(outcomes.acked)} refused={len(outcomes.refused)} "
        f"unanswered={len(outcomes.unanswered)} "
        f"unanswered-but-recorded={len(outcomes.unanswered & set(rows))} exit={exit_s:.2f}s"
    )
