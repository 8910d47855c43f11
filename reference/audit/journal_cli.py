"""Verifying a whole journal directory, and `stormproof journal verify DIR`."""

from __future__ import annotations

import argparse
import hmac
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from reference.audit.chain_anchor import read_anchor
from reference.audit.chain_check import anchor_link
from reference.audit.journal_format import (
    ChainBreak,
    SegmentScan,
    hmac_key_from_text,
    list_segments,
    read_segment,
)

DEFAULT_KEY_ENV = "AUDITORIA_HMAC_KEY"


@dataclass(frozen=True)
class CorruptRecord:
    """A corrupt byte range in one segment."""

    segment: Path
    offset: int
    length: int
    reason: str


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of checking every segment of a journal directory."""

    directory: Path
    segments: int
    records_ok: int
    corrupt: tuple[CorruptRecord, ...]
    breaks: tuple[ChainBreak, ...]
    hmac_checked: bool

    @property
    def ok(self) -> bool:
        """True when no region is corrupt and neither sequence nor chain is broken."""
        return not self.corrupt and not self.breaks


def verify_journal(directory: Path, hmac_key: bytes | None = None) -> VerifyReport:
    """Scan every segment: corrupt regions, sequence gaps and (with a key) HMAC breaks.

    The oldest remaining segment must follow the chain anchor recovery left
    (``chain.anchor``: the last replayed segment's sequence and MAC), so deleting the
    oldest unreplayed segments is reported; removing the newest records or segment is not
    detectable.
    Raises OSError when `directory` cannot be listed.
    """
    corrupt: list[CorruptRecord] = []
    breaks: list[ChainBreak] = []
    records_ok = 0
    segments = list_segments(directory)
    prev_seq: int | None = None
    prev_scan: SegmentScan | None = None
    anchor = read_anchor(directory)
    for seq, path in segments:
        if prev_seq is not None and seq != prev_seq + 1:
            missing = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1}..{seq - 1}"
            breaks.append(ChainBreak(path, 0, f"missing segment(s) {missing} before this one"))
        try:
            scan = read_segment(path, hmac_key)
        except OSError as exc:
            corrupt.append(CorruptRecord(path, 0, 0, f"unreadable: {exc.strerror or exc}"))
            prev_seq, prev_scan = seq, None
            continue
        records_ok += len(scan.records)
        corrupt.extend(CorruptRecord(path, r.offset, r.length, r.reason) for r in scan.corrupt)
        breaks.extend(scan.breaks)
        if scan.header is not None and scan.header.sequence != seq:
            breaks.append(
                ChainBreak(path, 0, f"header says sequence {scan.header.sequence}, name {seq}")
            )
        if hmac_key is not None and prev_seq == seq - 1:
            link = _link_break(prev_scan, scan)
            if link:
                breaks.append(ChainBreak(path, 0, link))
        if prev_seq is None and not any(b.offset == 0 for b in scan.breaks):
            # the oldest segment left must follow the last replayed one (the anchor)
            anchored = anchor_link(anchor, scan)
            if anchored:
                breaks.append(ChainBreak(path, 0, f"after the chain anchor: {anchored}"))
        prev_seq, prev_scan = seq, scan
    return VerifyReport(
        directory, len(segments), records_ok, tuple(corrupt), tuple(breaks), hmac_key is not None
    )


def _link_break(prev: SegmentScan | None, scan: SegmentScan) -> str | None:
    """Why `scan` does not chain from `prev`, if it does not."""
    if prev is None or scan.header is None or not scan.header.hmac:
        return None
    expected = prev.last_mac
    if expected is None or hmac.compare_digest(expected, scan.header.prev_mac):
        return None
    if prev.corrupt:
        return "chain does not continue from the previous segment (it has corrupt regions)"
    return "chain does not continue from the previous segment (its last records removed?)"


def format_report(report: VerifyReport) -> str:
    """A human-readable report, one finding per line, verdict last."""
    lines = [
        f"journal {report.directory}: {report.segments} segments, "
        f"{report.records_ok} intact records, HMAC chain "
        + ("checked" if report.hmac_checked else "NOT checked (no key)")
    ]
    for c in report.corrupt:
        lines.append(f"CORRUPT {c.segment.name} @{c.offset} (+{c.length} bytes): {c.reason}")
    for b in report.breaks:
        lines.append(f"BREAK   {b.segment.name} @{b.offset}: {b.reason}")
    if report.ok:
        lines.append("result: OK")
    else:
        lines.append(
            f"result: FAILED ({len(report.corrupt)} corrupt regions, "
            f"{len(report.breaks)} chain/sequence breaks)"
        )
    return "\n".join(lines)


def main_verify(argv: list[str]) -> int:
    """`stormproof journal verify DIR [--hmac-key-env VAR]`: 0 intact, 1 damaged, 2 error."""
    parser = argparse.ArgumentParser(
        prog="stormproof journal verify",
        description="Check a journal directory for corruption and HMAC chain breaks.",
    )
    parser.add_argument("directory", metavar="DIR", type=Path)
    parser.add_argument(
        "--hmac-key-env",
        metavar="VAR",
        default=DEFAULT_KEY_ENV,
        help=f"environment variable holding the HMAC key (default {DEFAULT_KEY_ENV})",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    key_text = os.environ.get(args.hmac_key_env)
    key: bytes | None = None
    if key_text:
        try:
            key = hmac_key_from_text(key_text)
        except ValueError as exc:
            print(f"error: {args.hmac_key_env}: {exc}", file=sys.stderr)
            return 2
    if not args.directory.is_dir():
        print(f"error: {args.directory}: not a directory", file=sys.stderr)
        return 2
    try:
        report = verify_journal(args.directory, key)
    except OSError as exc:
        print(f"error: {args.directory}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if key is None:
        print(f"note: ${args.hmac_key_env} is not set; edits and deletions were not checked")
    return 0 if report.ok else 1
