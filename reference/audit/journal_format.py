"""The journal's on-disk format: segment headers, record frames, scanning and quarantine.

Segment file ``seg-<sequence, 8+ digits>.journal``::

    header  = b"SPJS" | version u16 | flags u16 | sequence u64 | prev_mac[32]
              | header_mac[32] | crc32 u32                          (84 bytes, big-endian)
    record  = magic[4] | length u32 | crc32 u32 | [mac[32]] | payload[length]

``flags`` bit 0 says the segment is HMAC-chained. A record's magic is b"SPJR" (plain) or
b"SPJM" (carries a MAC). The record CRC32 covers length, MAC and payload. With a key,
``mac_i = HMAC-SHA256(key, mac_{i-1} || payload_i)``; the chain starts from the header's
``prev_mac`` (the previous segment's last MAC; zeros for the first segment) and
``header_mac = HMAC-SHA256(key, b"SPJ-header" || header fields)`` authenticates the
header itself (so a renumbered segment is detectable even when it holds no record).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reference.audit._fs import fsync_dir, make_dirs, write_all
from reference.audit.journal_records import (
    FRAME_BYTES,
    MAC_BYTES,
    MAX_RECORD_BYTES,
    RECORD_MAGIC,
    RECORD_MAGIC_MAC,
    JournalRecord,
    RecordIndex,
    chain_mac,
)

__all__ = [
    "FRAME_BYTES",
    "HEADER_BYTES",
    "MAC_BYTES",
    "MAX_RECORD_BYTES",
    "RECORD_MAGIC",
    "RECORD_MAGIC_MAC",
    "ZERO_MAC",
    "ChainBreak",
    "CorruptRegion",
    "JournalFormatError",
    "JournalRecord",
    "RecordIndex",
    "SegmentHeader",
    "SegmentScan",
    "chain_mac",
    "decode_header",
    "encode_header",
    "encode_record",
    "frame_size",
    "hmac_key_from_text",
    "list_segments",
    "quarantine",
    "quarantine_path",
    "quarantine_segment",
    "read_segment",
    "segment_name",
    "segment_sequence",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SEGMENT_MAGIC = b"SPJS"
FLAG_HMAC = 0x1
ZERO_MAC = bytes(MAC_BYTES)
MIN_HMAC_KEY_BYTES = 16

_HEADER_FIELDS = struct.Struct(">4sHHQ32s32s")
_CRC = struct.Struct(">I")
_FRAME = struct.Struct(">4sII")
HEADER_BYTES = _HEADER_FIELDS.size + _CRC.size
_SEGMENT_NAME = re.compile(r"^seg-(\d{8,})\.journal$")
_HEADER_MAC_LABEL = b"SPJ-header"


class JournalFormatError(ValueError):
    """Bytes that are not a valid segment header or record frame."""


@dataclass(frozen=True)
class SegmentHeader:
    """The fixed header at the start of every segment file."""

    sequence: int
    prev_mac: bytes = ZERO_MAC
    hmac: bool = False
    header_mac: bytes = ZERO_MAC
    version: int = FORMAT_VERSION


@dataclass(frozen=True)
class CorruptRegion:
    """A byte range that is not an intact record (torn tail, bit flip, zeros, garbage)."""

    offset: int
    length: int
    reason: str


@dataclass(frozen=True)
class ChainBreak:
    """A place where the HMAC chain or the segment sequence does not hold."""

    segment: Path
    offset: int
    reason: str


@dataclass(frozen=True)
class SegmentScan:
    """What reading one segment found."""

    path: Path
    size: int
    header: SegmentHeader | None
    records: Sequence[JournalRecord]
    """A `RecordIndex` when read from disk: records made on demand."""
    corrupt: tuple[CorruptRegion, ...]
    breaks: tuple[ChainBreak, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing is corrupt and the chain (if checked) holds."""
        return not self.corrupt and not self.breaks

    @property
    def last_mac(self) -> bytes | None:
        """The MAC the next segment must chain from (None when the segment is unchained)."""
        records = self.records
        if isinstance(records, RecordIndex):
            mac = records.last_mac()
            if mac is not None:
                return mac
        else:
            for record in reversed(records):
                if record.mac is not None:
                    return record.mac
        if self.header is not None and self.header.hmac:
            return self.header.prev_mac
        return None


def hmac_key_from_text(text: str) -> bytes:
    """The HMAC key from its textual (environment) form: its UTF-8 bytes."""
    key = text.encode("utf-8")
    if len(key) < MIN_HMAC_KEY_BYTES:
        raise ValueError(f"HMAC key must be at least {MIN_HMAC_KEY_BYTES} bytes")
    return key


def segment_name(sequence: int) -> str:
    """The file name of segment `sequence`."""
    return f"seg-{sequence:08d}.journal"


def segment_sequence(path: Path) -> int | None:
    """The sequence number encoded in a segment's file name, or None if not a segment."""
    match = _SEGMENT_NAME.match(path.name)
    return int(match.group(1)) if match else None


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """All segment files in `directory`, ordered by sequence."""
    found = []
    for entry in os.scandir(directory):
        sequence = segment_sequence(Path(entry.name))
        if sequence is not None and entry.is_file(follow_symlinks=False):
            found.append((sequence, Path(entry.path)))
    return sorted(found)


def frame_size(payload_len: int, with_mac: bool) -> int:
    """Bytes a record of `payload_len` occupies on disk."""
    return FRAME_BYTES + (MAC_BYTES if with_mac else 0) + payload_len


def encode_record(payload: bytes, mac: bytes | None = None) -> bytes:
    """Frame one record."""
    if len(payload) > MAX_RECORD_BYTES:
        raise JournalFormatError(f"record of {len(payload)} bytes exceeds {MAX_RECORD_BYTES}")
    if mac is not None and len(mac) != MAC_BYTES:
        raise JournalFormatError(f"MAC must be {MAC_BYTES} bytes")
    tail = mac or b""
    length = _CRC.pack(len(payload))
    crc = zlib.crc32(payload, zlib.crc32(tail, zlib.crc32(length)))
    magic = RECORD_MAGIC_MAC if mac is not None else RECORD_MAGIC
    return b"".join((_FRAME.pack(magic, len(payload), crc), tail, payload))


def encode_header(sequence: int, prev_mac: bytes, key: bytes | None) -> bytes:
    """The header of a new segment; with a key it is HMAC-chained and authenticated."""
    flags = FLAG_HMAC if key is not None else 0
    prev = prev_mac if key is not None else ZERO_MAC
    unsigned = _HEADER_FIELDS.pack(SEGMENT_MAGIC, FORMAT_VERSION, flags, sequence, prev, ZERO_MAC)
    header_mac = _header_mac(key, unsigned[:-MAC_BYTES]) if key is not None else ZERO_MAC
    fields = unsigned[:-MAC_BYTES] + header_mac
    return fields + _CRC.pack(zlib.crc32(fields))


def decode_header(raw: bytes) -> SegmentHeader:
    """Parse a segment header; raises JournalFormatError with the reason."""
    if len(raw) < HEADER_BYTES:
        raise JournalFormatError("truncated segment header")
    fields = raw[: _HEADER_FIELDS.size]
    (crc,) = _CRC.unpack_from(raw, _HEADER_FIELDS.size)
    magic, version, flags, sequence, prev_mac, header_mac = _HEADER_FIELDS.unpack(fields)
    if magic != SEGMENT_MAGIC:
        raise JournalFormatError("bad segment magic")
    if zlib.crc32(fields) != crc:
        raise JournalFormatError("segment header CRC mismatch")
    if version != FORMAT_VERSION:
        raise JournalFormatError(f"unsupported segment version {version}")
    return SegmentHeader(sequence, prev_mac, bool(flags & FLAG_HMAC), header_mac, version)


def _header_mac(key: bytes, fields_without_mac: bytes) -> bytes:
    return hmac.new(key, _HEADER_MAC_LABEL + fields_without_mac, hashlib.sha256).digest()


def read_segment(path: Path, hmac_key: bytes | None = None) -> SegmentScan:
    """Scan a segment: intact records, corrupt regions (resyncing past each), chain breaks.

    Raises OSError only when the file cannot be read at all.
    """
    data = path.read_bytes()
    corrupt: list[CorruptRegion] = []
    header: SegmentHeader | None = None
    try:
        header = decode_header(data)
    except JournalFormatError as exc:
        length = min(len(data), HEADER_BYTES)
        if length:
            corrupt.append(CorruptRegion(0, length, str(exc)))
    records, regions = _scan_records(data, HEADER_BYTES)
    corrupt.extend(regions)
    breaks = _check_chain(path, data, header, records, hmac_key) if hmac_key else []
    return SegmentScan(path, len(data), header, records, tuple(corrupt), tuple(breaks))


def _scan_records(data: bytes, start: int) -> tuple[RecordIndex, list[CorruptRegion]]:
    records = RecordIndex(data)
    corrupt: list[CorruptRegion] = []
    bad_start: int | None = None
    bad_reason = ""
    pos = start
    while pos < len(data):
        if bad_start is None:  # the common case, in a tight loop: intact records in a row
            pos = records.scan_intact(pos)
            if pos >= len(data):
                break
        found, problem = _try_frame(data, pos)
        if found is not None:
            if bad_start is not None:
                corrupt.append(_region(data, bad_start, pos, bad_reason))
                bad_start = None
            records.add(pos, *found)
            pos = found[1]
            continue
        if bad_start is None:
            bad_start, bad_reason = pos, problem
        pos = _next_magic(data, pos + 1)
    if bad_start is not None:
        corrupt.append(_region(data, bad_start, len(data), bad_reason))
    return records, corrupt


def _try_frame(data: bytes, pos: int) -> tuple[tuple[int, int] | None, str]:
    """(payload start, end) of an intact record at `pos`, else None and why not."""
    if len(data) - pos < FRAME_BYTES:
        return None, "truncated record header"
    magic, length, crc = _FRAME.unpack_from(data, pos)
    if magic not in (RECORD_MAGIC, RECORD_MAGIC_MAC):
        return None, "bad record magic"
    if length > MAX_RECORD_BYTES:
        return None, f"record length {length} exceeds maximum"
    mac_len = MAC_BYTES if magic == RECORD_MAGIC_MAC else 0
    body = pos + FRAME_BYTES
    end = body + mac_len + length
    if end > len(data):
        return None, "truncated record"
    mac = data[body : body + mac_len]
    payload = data[body + mac_len : end]
    if zlib.crc32(payload, zlib.crc32(mac, zlib.crc32(_CRC.pack(length)))) != crc:
        return None, "record CRC mismatch"
    return (body + mac_len, end), ""


def _next_magic(data: bytes, pos: int) -> int:
    """Offset of the next candidate record magic at or after `pos`, else len(data)."""
    prefix = RECORD_MAGIC[:3]
    while True:
        found = data.find(prefix, pos)
        if found < 0 or found + 4 > len(data):
            return len(data)
        if data[found : found + 4] in (RECORD_MAGIC, RECORD_MAGIC_MAC):
            return found
        pos = found + 1


def _region(data: bytes, start: int, end: int, first_problem: str) -> CorruptRegion:
    chunk = data[start:end]
    zeros = chunk.count(0)
    if zeros == len(chunk):
        reason = "zero-filled region"
    elif end == len(data) and first_problem.startswith("truncated"):
        reason = f"torn tail ({first_problem})"
    elif zeros * 2 >= len(chunk):
        reason = f"{first_problem} (mostly zero-filled)"
    else:
        reason = first_problem
    return CorruptRegion(start, end - start, reason)


def _check_chain(
    path: Path,
    data: bytes,
    header: SegmentHeader | None,
    records: RecordIndex,
    key: bytes,
) -> list[ChainBreak]:
    if header is None:
        return [ChainBreak(path, 0, "chain start unknown: segment header unreadable")]
    if not header.hmac:
        return [ChainBreak(path, 0, "segment is not HMAC-chained")]
    breaks = []
    expected_header = _header_mac(key, data[: _HEADER_FIELDS.size - MAC_BYTES])
    if not hmac.compare_digest(expected_header, header.header_mac):
        breaks.append(ChainBreak(path, 0, "header MAC mismatch (header edited or wrong key)"))
    for offset, reason in records.chain_breaks(key, header.prev_mac, HEADER_BYTES):
        breaks.append(ChainBreak(path, offset, reason))
    return breaks


def quarantine_path(directory: Path, scan: SegmentScan, region: CorruptRegion) -> Path:
    """Where `quarantine` copies `region` of `scan` under the journal `directory`."""
    name = f"{scan.path.name}.{region.offset:012d}-{region.length}.bad"
    return directory / "quarantine" / name


def quarantine_segment(path: Path, directory: Path, reason: str) -> bool:
    """Copy the whole segment `path` to ``directory/quarantine/<name>.<reason>.bad`` (0600,
    file and directory fsynced); True when the copy is there (made now or before). The
    caller deletes the source only after this returned True."""
    target = directory / "quarantine" / f"{path.name}.{reason}.bad"
    try:
        make_dirs(target.parent)
        if not target.exists():
            _write_new_file(target, path.read_bytes())
            fsync_dir(target.parent)
        return True
    except OSError as exc:
        log.warning("journal quarantine of %s failed: %s", path.name, exc)
        return False


def quarantine(scan: SegmentScan, directory: Path) -> int:
    """Copy each corrupt range of `scan` to ``directory/quarantine/`` (0600).

    Returns how many regions were newly quarantined (a region already there is skipped).
    Never raises: failures are logged.
    """
    if not scan.corrupt:
        return 0
    target = directory / "quarantine"
    count = 0
    try:
        make_dirs(target)
        with scan.path.open("rb") as source:
            for region in scan.corrupt:
                source.seek(region.offset)
                chunk = source.read(region.length)
                if _write_new_file(quarantine_path(directory, scan, region), chunk):
                    count += 1
        fsync_dir(target)  # the copies' names are durable before the source can go
    except OSError as exc:
        log.warning("journal quarantine of %s incomplete: %s", scan.path.name, exc)
    return count


def _write_new_file(path: Path, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, 0o600)
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True
