"""RecordIndex (the journal scan's records kept as positions) == a record-by-record reader.

The reference reader tries every offset not inside an accepted record and accepts a
record only when re-framing its payload (and MAC) gives back exactly the bytes on disk;
the index must find the same records, and every way of reading them (indexing, slices,
iteration, `payloads` of a range or a list, `offsets`, `mac`, `last_mac`) must agree.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.audit.journal_format import (
    FRAME_BYTES,
    HEADER_BYTES,
    MAC_BYTES,
    RECORD_MAGIC_MAC,
    JournalRecord,
    RecordIndex,
    encode_record,
    read_segment,
    segment_name,
)
from tests.unit.test_journal_format import KEY, build_segment

_FRAME = struct.Struct(">4sII")


def reference_records(data: bytes) -> list[JournalRecord]:
    """Intact records, found the slow and obvious way."""
    found: list[JournalRecord] = []
    pos = HEADER_BYTES
    while pos + FRAME_BYTES <= len(data):
        magic, length, _ = _FRAME.unpack_from(data, pos)
        mac_len = MAC_BYTES if magic == RECORD_MAGIC_MAC else 0
        end = pos + FRAME_BYTES + mac_len + length
        body = pos + FRAME_BYTES
        mac = data[body : body + mac_len] if mac_len else None
        payload = data[body + mac_len : end]
        try:
            intact = end <= len(data) and encode_record(payload, mac) == data[pos:end]
        except ValueError:
            intact = False
        if intact:
            found.append(JournalRecord(pos, end, payload, mac))
            pos = end
        else:
            pos += 1
    return found


def assert_same(index: RecordIndex | object, expected: list[JournalRecord]) -> None:
    """Every view of `index` gives `expected`."""
    assert isinstance(index, RecordIndex)
    assert len(index) == len(expected)
    assert list(index) == expected
    assert [index[i] for i in range(len(index))] == expected
    assert index[1:-1] == expected[1:-1]
    if expected:
        assert index[-1] == expected[-1]
    payloads = [r.payload for r in expected]
    assert index.payloads(range(len(index))) == payloads
    assert index.payloads(range(1, len(index))) == payloads[1:]
    assert index.payloads(list(range(0, len(index), 2))) == payloads[0::2]
    assert list(index.offsets()) == [r.offset for r in expected]
    assert [index.mac(i) for i in range(len(index))] == [r.mac for r in expected]
    macs = [r.mac for r in expected if r.mac is not None]
    assert index.last_mac() == (macs[-1] if macs else None)


def _damage(data: bytes, where: int, kind: int) -> bytes:
    """One kind of damage at byte `where` (past the header)."""
    if len(data) <= HEADER_BYTES:
        return data
    pos = HEADER_BYTES + where % (len(data) - HEADER_BYTES)
    if kind == 0:  # bit flip
        return data[:pos] + bytes([data[pos] ^ 0x10]) + data[pos + 1 :]
    if kind == 1:  # torn tail
        return data[:pos]
    if kind == 2:  # garbage holding a record magic
        return data[:pos] + b"SPJRxx\x00\x00\x00\x05" + data[pos:]
    return data[:pos] + bytes(40) + data[pos + 40 :]  # zeros


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payloads=st.lists(st.binary(min_size=0, max_size=80), min_size=0, max_size=12),
    keyed=st.booleans(),
    damage=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 3)), max_size=3),
)
def test_index_matches_reference_reader(
    tmp_path: Path, payloads: list[bytes], keyed: bool, damage: list[tuple[int, int]]
) -> None:
    """Intact or damaged, with or without MACs: the index holds the reference's records."""
    data = build_segment(payloads, KEY if keyed else None)
    for where, kind in damage:
        data = _damage(data, where, kind)
    path = tmp_path / segment_name(1)
    path.write_bytes(data)
    assert_same(read_segment(path).records, reference_records(data))


class NoCrcIndex(RecordIndex):
    """Broken variant: the tight loop trusts the frame (no CRC check)."""

    def scan_intact(self, pos: int) -> int:
        data = self._data
        while pos + FRAME_BYTES <= len(data):
            magic, length, _ = _FRAME.unpack_from(data, pos)
            start = pos + FRAME_BYTES + (MAC_BYTES if magic == RECORD_MAGIC_MAC else 0)
            if magic not in (b"SPJR", b"SPJM") or start + length > len(data):
                break
            self.add(pos, start, start + length)
            pos = start + length
        return pos


def test_the_comparison_flags_an_index_without_crc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payload bit flip: the reference index drops that record (as the reference reader
    does); the variant without the CRC check keeps it, and the comparison says so."""
    data = build_segment([b"first", b"second", b"third"])
    flipped = bytearray(data)
    flipped[HEADER_BYTES + len(encode_record(b"first")) + FRAME_BYTES] ^= 0x01  # in "second"
    path = tmp_path / segment_name(1)
    path.write_bytes(bytes(flipped))
    expected = reference_records(bytes(flipped))
    assert [r.payload for r in expected] == [b"first", b"third"]
    assert_same(read_segment(path).records, expected)
    monkeypatch.setattr("reference.audit.journal_format.RecordIndex", NoCrcIndex)
    with pytest.raises(AssertionError, match="assert 3 == 2"):
        assert_same(read_segment(path).records, expected)
