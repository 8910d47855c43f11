"""The reference journal on the forgetful mount: power cuts mid-burst, thousands of appends.

No acknowledged record is lost; every intact record is recovered; torn tails are
quarantined. The same harness flags a journal that skips fsync (or the directory fsync
of a new segment): the proof can fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reference.audit.journal import Journal, JournalConfig, JournalWriteError
from reference.audit.journal_format import list_segments, quarantine_path, read_segment
from reference.audit.journal_metrics import JournalCounters
from reference.clock import SYSTEM_CLOCK
from scenarios.fs.mount import ForgetfulMount
from tests.integration.fs_support import forgetful_mount

pytestmark = pytest.mark.integration
KEY = b"k" * 32


class NoDirFsyncJournal(Journal):
    """Mutant: a new segment's directory entry is never fsynced."""

    def _fsync_dir(self, directory: Path) -> None:
        return None


@dataclass
class Tally:
    """What the writers were told, and what the cuts did."""

    acknowledged: set[bytes] = field(default_factory=set)
    attempted: int = 0
    dropped_bytes: int = 0
    torn_bytes: int = 0
    metrics: JournalCounters = field(default_factory=JournalCounters)


def intact_payloads(directory: Path) -> set[bytes]:
    """Every intact record's payload in every segment (none when the directory is gone)."""
    if not directory.is_dir():
        return set()
    return {
        record.payload
        for _, path in list_segments(directory)
        for record in read_segment(path, KEY).records
    }


async def _round(
    journal: Journal, mount: ForgetfulMount, tally: Tally, rng: random.Random, label: int
) -> None:
    """Concurrent appends; a power cut armed for a random write lands mid-burst, tearing it.

    After the cut every change fails (the machine is off) until the next round restarts.
    """
    cuts_before = int(mount.counters()["cuts"])
    mount.arm_cut(rng.randint(1, 60), tear=True, seed=rng.randrange(1 << 30), halt=True)

    async def append(index: int) -> bool:
        payload = f"{label}:{index}:".encode() + bytes(rng.randint(10, 300))
        tally.attempted += 1
        try:
            await journal.append(payload)
        except JournalWriteError:
            return False
        tally.acknowledged.add(payload)
        return True

    index = 0
    while index < 5000:
        wave = [append(index + i) for i in range(rng.randint(1, 24))]
        index += len(wave)
        if not all(await asyncio.gather(*wave)):
            break
    counters = mount.counters()
    assert int(counters["cuts"]) == cuts_before + 1, "the armed cut never fired"
    tally.dropped_bytes += int(counters["bytes_dropped_last_cut"])
    tally.torn_bytes += int(counters["torn_bytes_last_cut"])


async def _run(
    mount: ForgetfulMount, journal_type: type[Journal], fsync: bool, rounds: int
) -> Tally:
    directory = mount.mountpoint / "journal"
    rng = random.Random(20261129)
    tally = Tally()
    for label in range(rounds):
        config = JournalConfig(directory, segment_max_bytes=8192, hmac_key=KEY, fsync=fsync)
        journal = journal_type(config, SYSTEM_CLOCK, tally.metrics)
        await journal.open()
        try:
            await _round(journal, mount, tally, rng, label)
        finally:
            with contextlib.suppress(JournalWriteError, OSError):
                await journal.close()
            mount.clear_faults()  # the power is back
        if not tally.acknowledged <= intact_payloads(directory):
            return tally
    return tally


async def _reopen_quarantines_torn_tails(directory: Path) -> None:
    """A restart quarantines the last segment's torn tail and keeps every intact record."""
    before = intact_payloads(directory)
    journal = Journal(JournalConfig(directory, hmac_key=KEY), SYSTEM_CLOCK)
    await journal.open()
    await journal.close()
    assert intact_payloads(directory) == before
    segments = list_segments(directory)
    if segments:
        scan = read_segment(segments[-1][1], KEY)
        for region in scan.corrupt:
            assert quarantine_path(directory, scan, region).exists(), region


async def test_reference_journal_survives_power_cuts(tmp_path: Path) -> None:
    """Thousands of appends, a torn power cut per round: every acknowledged record survives."""
    rounds = 12
    with forgetful_mount(tmp_path) as mount:
        tally = await _run(mount, Journal, fsync=True, rounds=rounds)
        directory = mount.mountpoint / "journal"
        lost = tally.acknowledged - intact_payloads(directory)
        assert lost == set(), f"{len(lost)} acknowledged records lost"
        assert tally.attempted >= 1000 and len(tally.acknowledged) >= 500, tally.attempted
        assert tally.dropped_bytes > 0, "the cuts never dropped anything: the test proved nothing"
        assert tally.torn_bytes > 0 and tally.metrics.quarantined > 0, "no torn tail was exercised"
        await _reopen_quarantines_torn_tails(directory)


@pytest.mark.parametrize(
    ("journal_type", "fsync"),
    [(Journal, False), (NoDirFsyncJournal, True)],
    ids=["no-fsync", "no-dir-fsync"],
)
async def test_broken_journals_lose_acknowledged_records(
    tmp_path: Path, journal_type: type[Journal], fsync: bool
) -> None:
    """Mutants: without fsync, or without the directory fsync, a cut loses acknowledged records."""
    with forgetful_mount(tmp_path) as mount:
        tally = await _run(mount, journal_type, fsync=fsync, rounds=4)
        lost = tally.acknowledged - intact_payloads(mount.mountpoint / "journal")
        assert len(lost) > 0, "the mutant lost nothing: the power cut proves nothing"
