"""What recovery does with a segment, judged by the HMAC chain and the chain's anchor.

With `AUDITORIA_HMAC_KEY`, a segment is read with the key (`read_segment(path, key)`):

- a break at the header (header MAC wrong, not chained, unreadable) means the segment was
  not written by a holder of the key: *forged*, set aside whole into ``quarantine/``,
  nothing of it replayed;
- a record whose MAC does not verify (edited, or written after a deletion) is a *bad
  record*: quarantined like a corrupt one, the verified records around it replayed.

With or without a key, the segment is compared with the chain's anchor (the last replayed
segment, see `chain_anchor`): a sequence that does not follow it means segments were
deleted before replay (or a segment was dropped in); a `prev_mac` that is not the anchor's
MAC means the chain does not continue. Those are *reports*: counted and alerted, and
`stormproof journal verify` shows the same.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from reference.audit.chain_anchor import ChainAnchor, read_anchor
from reference.audit.journal_format import ZERO_MAC, CorruptRegion, SegmentScan

__all__ = ["ChainVerdict", "anchor_link", "chain_verdict"]


@dataclass(frozen=True)
class ChainVerdict:
    """`forged`: set the whole segment aside; `bad_records`: quarantine those records;
    `reports`: what to log and count (one chain break for the segment)."""

    forged: bool = False
    bad_records: tuple[CorruptRegion, ...] = ()
    reports: tuple[str, ...] = ()


def anchor_link(anchor: ChainAnchor | None, scan: SegmentScan) -> str | None:
    """Why `scan` does not continue the chain from `anchor`, if it does not."""
    if anchor is None or scan.header is None:
        return None
    sequence = scan.header.sequence
    if sequence <= anchor.sequence:
        return f"sequence {sequence} is not after the last replayed one ({anchor.sequence})"
    if sequence > anchor.sequence + 1:
        first, last = anchor.sequence + 1, sequence - 1
        missing = f"{first}" if first == last else f"{first}..{last}"
        return f"segment(s) {missing} missing: deleted before they were replayed"
    if (
        scan.header.hmac
        and anchor.mac != ZERO_MAC
        and not hmac.compare_digest(anchor.mac, scan.header.prev_mac)
    ):
        return "chain does not continue from the last replayed segment's MAC"
    return None


def chain_verdict(
    scan: SegmentScan, directory: Path, anchor: ChainAnchor | None = None
) -> ChainVerdict:
    """The verdict on `scan` (read with the key when there is one) in `directory`;
    `anchor` is the chain's anchor when the caller knows it better than the disk does
    (the previous segment's, not written yet), else it is read from `directory`."""
    reports: list[str] = []
    header_breaks = [b for b in scan.breaks if b.offset == 0]
    if header_breaks:
        reports += [f"{b.reason}: set aside, not replayed" for b in header_breaks]
        return ChainVerdict(forged=True, reports=tuple(reports))
    bad_offsets = {b.offset for b in scan.breaks}
    bad = tuple(
        CorruptRegion(r.offset, r.end - r.offset, "HMAC chain: record does not verify")
        for r in (scan.records if bad_offsets else ())  # records are made on demand
        if r.offset in bad_offsets
    )
    reports += [f"@{b.offset}: {b.reason}" for b in scan.breaks]
    link = anchor_link(anchor or read_anchor(directory), scan)
    if link:
        reports.append(link)
    return ChainVerdict(bad_records=bad, reports=tuple(reports))
