"""A segment's intact records, found in one pass and kept as positions in its bytes.

Recovery reads every record of every segment: one Python object per record (and a copy
of each payload) made reading a 4 MB segment cost more than replaying it. `RecordIndex`
keeps the segment's bytes and three integers per record instead; a `JournalRecord` (and
its payload's copy) is made only when asked for, and the drain takes payloads a batch at
a time (`payloads`). The frame layout is `journal_format`'s::

    record = magic[4] | length u32 | crc32 u32 | [mac[32]] | payload[length]
"""

from __future__ import annotations

import hmac
import struct
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

__all__ = [
    "FRAME_BYTES",
    "MAC_BYTES",
    "MAX_RECORD_BYTES",
    "RECORD_MAGIC",
    "RECORD_MAGIC_MAC",
    "JournalRecord",
    "RecordIndex",
    "chain_mac",
]

RECORD_MAGIC = b"SPJR"
RECORD_MAGIC_MAC = b"SPJM"
MAC_BYTES = 32
MAX_RECORD_BYTES = 4 * 1024 * 1024
_FRAME = struct.Struct(">4sII")
_LENGTH = struct.Struct(">I")
FRAME_BYTES = _FRAME.size
_AFTER_GAP = "MAC mismatch after a corrupt region (chain unverifiable across it)"
_EDITED = "MAC mismatch: record edited, or records before it deleted"


@dataclass(frozen=True)
class JournalRecord:
    """One intact record: its payload and where it sits in the segment."""

    offset: int
    end: int
    payload: bytes
    mac: bytes | None = None


def chain_mac(key: bytes, prev_mac: bytes, payload: bytes) -> bytes:
    """HMAC-SHA256(key, prev_mac || payload) (OpenSSL's one-shot HMAC)."""
    return hmac.digest(key, prev_mac + payload, "sha256")


class RecordIndex(Sequence[JournalRecord]):
    """The intact records of `data` (a segment's bytes), in order, by position.

    Indexing and iterating give `JournalRecord`s, made on demand; `payloads`, `offset`,
    `end` and `mac` read one field without making them.
    """

    __slots__ = ("_data", "_ends", "_macs", "_offsets", "_starts")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._macs = False  # whether any record carries a MAC
        self._offsets = array("q")
        self._starts = array("q")  # where each payload starts (after the frame and MAC)
        self._ends = array("q")

    def scan_intact(self, pos: int) -> int:
        """Add the intact records from `pos` on; return where the first one that is not
        (or the end) starts. The tight loop every record of a replay goes through."""
        data, unpack, crc32 = self._data, _FRAME.unpack_from, zlib.crc32
        view = memoryview(data)
        add_offset, add_start, add_end = (
            self._offsets.append,
            self._starts.append,
            self._ends.append,
        )
        length_crcs: dict[int, int] = {}  # CRC32 of the length field (a few distinct sizes)
        size = len(data)
        while pos + FRAME_BYTES <= size:
            magic, length, crc = unpack(data, pos)
            if magic == RECORD_MAGIC:
                start = pos + FRAME_BYTES
            elif magic == RECORD_MAGIC_MAC:
                start = pos + FRAME_BYTES + MAC_BYTES
                self._macs = True
            else:
                break
            end = start + length
            if length > MAX_RECORD_BYTES or end > size:
                break
            seed = length_crcs.get(length)
            if seed is None:
                seed = length_crcs[length] = crc32(_LENGTH.pack(length))
            # the CRC covers length, MAC and payload: MAC and payload are contiguous
            if crc32(view[pos + FRAME_BYTES : end], seed) != crc:
                break
            add_offset(pos)
            add_start(start)
            add_end(end)
            pos = end
        return pos

    def add(self, offset: int, start: int, end: int) -> None:
        """Add one record checked by the caller (the careful path after a corrupt region)."""
        self._macs = self._macs or start - offset != FRAME_BYTES
        self._offsets.append(offset)
        self._starts.append(start)
        self._ends.append(end)

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, index: int) -> JournalRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[JournalRecord]: ...
    def __getitem__(self, index: int | slice) -> JournalRecord | list[JournalRecord]:
        if isinstance(index, slice):
            return [self._record(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("record index out of range")
        return self._record(index)

    def __iter__(self) -> Iterator[JournalRecord]:
        return map(self._record, range(len(self)))

    def _record(self, i: int) -> JournalRecord:
        offset, start, end = self._offsets[i], self._starts[i], self._ends[i]
        return JournalRecord(offset, end, self._data[start:end], self.mac(i))

    def offsets(self) -> Sequence[int]:
        """Where each record's frame starts (a copy)."""
        return self._offsets.tolist()

    def offset(self, i: int) -> int:
        """Where record `i`'s frame starts."""
        return self._offsets[i]

    def end(self, i: int) -> int:
        """Where record `i` ends."""
        return self._ends[i]

    def mac(self, i: int) -> bytes | None:
        """Record `i`'s MAC (None when it carries none)."""
        start = self._starts[i]
        if start - self._offsets[i] == FRAME_BYTES:
            return None
        return self._data[start - MAC_BYTES : start]

    def payloads(self, positions: Sequence[int]) -> list[bytes]:
        """The payloads of the records at `positions`, copied out (a range of positions
        is read without a lookup per record)."""
        data, starts, ends = self._data, self._starts, self._ends
        if isinstance(positions, range) and positions.step == 1:
            first, stop = positions.start, positions.stop
            return [data[s:e] for s, e in zip(starts[first:stop], ends[first:stop], strict=True)]
        return [data[starts[i] : ends[i]] for i in positions]

    def chain_breaks(self, key: bytes, prev: bytes, first: int) -> list[tuple[int, str]]:
        """(offset, reason) of each record that carries no MAC or whose MAC does not
        verify, chaining from `prev` (the header's); records start at `first`."""
        data, digest, same = self._data, hmac.digest, hmac.compare_digest
        bad: list[tuple[int, str]] = []
        prev_end = first
        for offset, start, end in zip(self._offsets, self._starts, self._ends, strict=True):
            after_gap = offset != prev_end
            prev_end = end
            if start - offset == FRAME_BYTES:
                bad.append((offset, "record carries no MAC"))
                continue
            mac = data[start - MAC_BYTES : start]
            if not same(digest(key, prev + data[start:end], "sha256"), mac):
                bad.append((offset, _AFTER_GAP if after_gap else _EDITED))
            prev = mac
        return bad

    def last_mac(self) -> bytes | None:
        """The MAC of the last record that carries one."""
        if not self._macs:
            return None
        for i in range(len(self) - 1, -1, -1):
            mac = self.mac(i)
            if mac is not None:
                return mac
        return None
