"""`stormproof bench fs`: the forgetful mount's cost to the journal.

64 concurrent writers append to the reference journal (group commit, fsync per batch)
on a plain directory and on the forgetful FUSE mount over a directory of the same disk,
alternately, in the same run. `fs_journal_ratio` = appends/s through the mount ÷ appends/s
on the plain directory (target >= 0.3). Figures are reported, not asserted.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from reference.audit.journal import Journal, JournalConfig
from reference.clock import SYSTEM_CLOCK
from scenarios.fs.mount import ForgetfulMount, MountConfig

WRITERS = 64
TARGET = 0.3
PAYLOAD = b'{"event_id":"00000000-0000-0000-0000-000000000000","action":"bench"}' + b"x" * 180


@dataclass(frozen=True)
class FsBenchPlan:
    """How long each measurement runs, and how many alternating rounds."""

    duration_s: float = 3.0
    rounds: int = 2

    @classmethod
    def quick(cls) -> FsBenchPlan:
        return cls(duration_s=0.5, rounds=1)


async def journal_appends_per_s(directory: Path, duration_s: float) -> float:
    """Appends acknowledged per second by WRITERS concurrent writers for `duration_s`."""
    journal = Journal(JournalConfig(directory), SYSTEM_CLOCK)
    await journal.open()
    done = 0
    deadline = time.monotonic() + duration_s

    async def writer() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await journal.append(PAYLOAD)
            done += 1

    started = time.monotonic()
    try:
        await asyncio.gather(*(writer() for _ in range(WRITERS)))
    finally:
        await journal.close()
    return done / (time.monotonic() - started)


def measure(workdir: Path, plan: FsBenchPlan) -> dict[str, float]:
    """Plain and mounted runs, alternating; the best of each."""
    mount = ForgetfulMount(
        MountConfig("bench", workdir / "backing", workdir / "mnt", workdir / "scratch")
    )
    plain_runs: list[float] = []
    mount_runs: list[float] = []
    with mount:
        for index in range(plan.rounds):
            plain_runs.append(
                asyncio.run(journal_appends_per_s(workdir / f"plain-{index}", plan.duration_s))
            )
            mount_runs.append(
                asyncio.run(journal_appends_per_s(mount.mountpoint / f"j-{index}", plan.duration_s))
            )
        counters = mount.counters()
    plain, mounted = max(plain_runs), max(mount_runs)
    return {
        "fs_journal_ratio": mounted / plain if plain > 0 else 0.0,
        "mount_appends_per_s": mounted,
        "plain_appends_per_s": plain,
        "mount_fsyncs": float(counters["fsyncs"]),
    }


def main(json_output: bool = False, quick: bool = False) -> int:
    """Run the bench in a temporary directory; print a table or one JSON object."""
    plan = FsBenchPlan.quick() if quick else FsBenchPlan()
    with tempfile.TemporaryDirectory(prefix="bench-fs-") as tmp:
        figures = measure(Path(tmp), plan)
    if json_output:
        print(json.dumps({**figures, "target": TARGET, "writers": WRITERS}, sort_keys=True))
        return 0
    print(f"journal appends/s, {WRITERS} writers, {plan.duration_s:.1f}s x {plan.rounds}")
    print(f"  plain directory   {figures['plain_appends_per_s']:10.0f}")
    print(f"  forgetful mount   {figures['mount_appends_per_s']:10.0f}")
    print(f"  fs_journal_ratio  {figures['fs_journal_ratio']:10.2f}   (target >= {TARGET})")
    return 0
