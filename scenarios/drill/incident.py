"""A drill's incident: faults, process losses, audit traffic and journal damage.

The incident is done by the harness (not the operator): it reuses the fault injector and
the target launcher of `stormproof run`, and keeps what the target acknowledged (the audit
events it answered 202 for) so the operator's steps can be judged against it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from reference.audit.journal_format import list_segments, read_segment
from scenarios.faults import FaultInjector, FaultSpec
from scenarios.stack import Stack
from scenarios.target import TargetGroup
from scenarios.webhook import WebhookReceiver

TRAFFIC_CONCURRENCY = 8


@dataclass
class DrillState:
    """Everything a drill's steps act on and are judged against."""

    stack: Stack
    targets: TargetGroup
    injector: FaultInjector
    receiver: WebhookReceiver
    quick: bool = True
    acked: dict[str, str] = field(default_factory=dict)
    """event_id -> path, for every audit event the target acknowledged (202)."""
    sent: set[str] = field(default_factory=set)
    corrupted: set[str] = field(default_factory=set)
    """Acknowledged events whose journal record the drill itself destroyed."""

    @property
    def url(self) -> str:
        """The first instance's base URL."""
        return self.targets.instances[0].url

    @property
    def backup_dir(self) -> Path:
        """The first instance's journal directory (AUDITORIA_BACKUP_PATH)."""
        return self.targets.instances[0].backup_path


async def do_incident(state: DrillState, incident: dict[str, Any]) -> str:
    """Apply one incident action; returns what was done (one line). Raises on failure."""
    if "fault" in incident:
        spec = FaultSpec.parse(str(incident["fault"]), incident.get("params"))
        await asyncio.to_thread(state.injector.apply, spec)
        return f"fault {spec.name} applied"
    if "heal" in incident:
        errors = await asyncio.to_thread(state.injector.revert_all)
        await asyncio.to_thread(state.stack.heal)
        if errors:
            raise RuntimeError("revert failed: " + "; ".join(errors))
        return "every fault reverted"
    if "kill_target" in incident:
        await asyncio.to_thread(state.targets.instances[0].kill)
        return "target SIGKILLed (it does not come back)"
    if "start_target" in incident:
        await asyncio.to_thread(state.targets.ensure_running)
        return "target restarted with the same backup directory"
    if "audit_events" in incident:
        count = int(incident["audit_events"]) * (1 if state.quick else 5)
        entity_id = incident.get("params", {}).get("entity_id")
        acked = await post_audit_events(state, count, entity_id)
        return f"{acked} of {count} audit events acknowledged"
    if "sql" in incident:
        await asyncio.to_thread(_sql, state.stack, str(incident["sql"]))
        return "SQL run on the database"
    if "corrupt_journal" in incident:
        return await asyncio.to_thread(corrupt_journal, state)
    if "wait_s" in incident:
        await asyncio.sleep(float(incident["wait_s"]))
        return f"waited {float(incident['wait_s']):g}s"
    raise ValueError(f"unknown incident {sorted(incident)}")


def _sql(stack: Stack, statement: str) -> None:
    with psycopg.connect(stack.urls.database_direct_url, autocommit=True, connect_timeout=5) as c:
        c.execute(statement.encode())


async def post_audit_events(state: DrillState, count: int, entity_id: str | None = None) -> int:
    """POST `count` audit events (bounded concurrency); keeps the acknowledged ones."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for _ in range(count):
        queue.put_nowait(str(uuid.uuid4()))
    acked = 0

    async def writer(client: httpx.AsyncClient) -> None:
        nonlocal acked
        while not queue.empty():
            event_id = queue.get_nowait()
            state.sent.add(event_id)
            body = {
                "event_id": event_id,
                "actor": "drill",
                "action": "update",
                "entity": "beneficio",
                "entity_id": entity_id or event_id[:8],
                "payload": {"drill": True},
            }
            try:
                response = await client.post(f"{state.url}/audit", json=body)
            except httpx.HTTPError:
                continue
            if response.status_code == 202:
                state.acked[event_id] = str(response.json().get("path", ""))
                acked += 1

    async with httpx.AsyncClient(timeout=10.0) as client:
        await asyncio.gather(*(writer(client) for _ in range(TRAFFIC_CONCURRENCY)))
    return acked


def corrupt_journal(state: DrillState) -> str:
    """Flip a bit in one acknowledged record and leave a torn record at the tail.

    The target must be down (a dead instance's disk). The flipped record's event is
    remembered as destroyed by the drill; the torn tail is half of a record that was never
    acknowledged (a crash mid-write), so it destroys nothing acknowledged.
    """
    if state.targets.instances[0].running:
        raise RuntimeError("corrupt_journal needs the target down (kill_target first)")
    segments = [path for _, path in list_segments(state.backup_dir)]
    scans = [read_segment(path) for path in segments]
    with_records = [scan for scan in scans if scan.records]
    if not with_records:
        raise RuntimeError(f"no journal records under {state.backup_dir} to corrupt")
    first = with_records[0]
    victim = first.records[len(first.records) // 2]
    event_id = str(json.loads(victim.payload)["event_id"])
    data = bytearray(first.path.read_bytes())
    data[victim.end - 1] ^= 0x01  # inside the payload: the CRC no longer matches
    _rewrite(first.path, bytes(data))
    last = with_records[-1]
    tail = last.path.read_bytes()
    record = tail[last.records[-1].offset : last.records[-1].end]
    _rewrite(last.path, tail + record[: len(record) // 2])
    state.corrupted.add(event_id)
    return (
        f"bit flipped in {first.path.name} @{victim.offset} (event {event_id[:8]}); "
        f"torn record appended to {last.path.name}"
    )


def _rewrite(path: Path, data: bytes) -> None:
    with path.open("r+b") as handle:
        handle.write(data)
        handle.truncate()
