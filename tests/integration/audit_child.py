"""A child process for the audit crash and multi-process tests (run with `python -m`).

record  REDIS_URL DATABASE_URL JOURNAL_DIR TABLE   record events forever (8 writers);
        print each acknowledged event_id on stdout, one per line, as soon as
        `record` returned (so the parent knows it before any SIGKILL)
recover DATABASE_URL JOURNAL_DIR TABLE             one recovery run; print its result
        as JSON
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path

from reference.audit.db import make_engine
from reference.audit.event import AuditEvent
from reference.audit.journal import Journal, JournalConfig
from reference.audit.queue import AuditQueue
from reference.audit.recovery import RecoveryConfig, RecoveryJob
from reference.audit.resilient import AuditUnavailable, ResilientAudit
from reference.audit.store import AuditStore
from reference.clock import SYSTEM_CLOCK
from reference.config import Settings
from reference.redis_client import make_redis
from reference.service.configs import audit_config, breakers, database_config


def _settings(redis_url: str, database_url: str, journal_dir: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        database_url=database_url,
        redis_op_timeout_s=0.3,
        audit_timeout_s=0.4,
        db_op_timeout_s=1.0,
        db_connect_timeout_s=1.0,
        breaker_reset_timeout_s=1.0,
        audit_queue_stream="audit:crash-child",
        audit_backup_path=journal_dir,
    )


async def record(redis_url: str, database_url: str, journal_dir: Path, table: str) -> None:
    settings = _settings(redis_url, database_url, journal_dir)
    engine = make_engine(database_config(settings))
    store = AuditStore(engine, table=table, dead_letter_table=f"{table}_dl")
    journal = Journal(JournalConfig(journal_dir, segment_max_bytes=32 * 1024), SYSTEM_CLOCK)
    await journal.open()
    redis = make_redis(settings.redis_url, settings.redis_op_timeout_s)
    redis_breaker, db_breaker = breakers(settings)
    audit = ResilientAudit(
        audit_config(settings),
        redis_breaker=redis_breaker,
        db_breaker=db_breaker,
        queue=AuditQueue(redis, settings.audit_queue_stream),
        store=store,
        journal=journal,
    )

    async def writer(w: int) -> None:
        i = 0
        while True:
            event = AuditEvent.new("child", "update", "beneficio", f"{w}-{i}", {"i": i})
            i += 1
            try:
                await audit.record(event)
            except AuditUnavailable:
                continue
            os.write(1, f"{event.event_id}\n".encode())  # one write: one whole line

    await asyncio.gather(*(writer(w) for w in range(8)))


async def recover(database_url: str, journal_dir: Path, table: str) -> None:
    settings = Settings(database_url=database_url)
    engine = make_engine(database_config(settings))
    store = AuditStore(engine, table=table, dead_letter_table=f"{table}_dl")
    job = RecoveryJob(RecoveryConfig(journal_dir, batch_size=200), store)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the parent says go
    result = await job.run_once()
    await engine.dispose()
    print(json.dumps(dataclasses.asdict(result)), flush=True)


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "record":
        asyncio.run(record(args[0], args[1], Path(args[2]), args[3]))
    elif command == "recover":
        asyncio.run(recover(args[0], Path(args[1]), args[2]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
