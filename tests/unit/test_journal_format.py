"""Journal format: framing, damage detection with resync, quarantine, verification."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.audit.journal import Journal, JournalConfig
from reference.audit.journal_cli import format_report, main_verify, verify_journal
from reference.audit.journal_format import (
    HEADER_BYTES,
    ZERO_MAC,
    JournalFormatError,
    SegmentScan,
    chain_mac,
    decode_header,
    encode_header,
    encode_record,
    list_segments,
    quarantine,
    read_segment,
    segment_name,
)
from reference.audit.journal_metrics import JournalCounters
from reference.clock import FakeClock

KEY = b"k" * 32
PAYLOADS = [f"record-{i:03d}:".encode() + bytes([65 + i % 26]) * (20 + i) for i in range(20)]


def build_segment(payloads: list[bytes], key: bytes | None = None, sequence: int = 1) -> bytes:
    """Bytes of one segment holding `payloads`, framed as the writer frames them."""
    parts = [encode_header(sequence, ZERO_MAC, key)]
    mac = ZERO_MAC
    for payload in payloads:
        if key is None:
            parts.append(encode_record(payload))
        else:
            mac = chain_mac(key, mac, payload)
            parts.append(encode_record(payload, mac))
    return b"".join(parts)


def scan_bytes(tmp: Path, data: bytes, key: bytes | None = None) -> SegmentScan:
    """Write `data` as segment 1 under `tmp` and scan it."""
    path = tmp / segment_name(1)
    path.write_bytes(data)
    return read_segment(path, key)


def payloads_of(scan: SegmentScan) -> list[bytes]:
    """The payloads of a scan's intact records, in order."""
    return [record.payload for record in scan.records]


def test_intact_segment_reads_back(tmp_path: Path) -> None:
    """Every record comes back in order with offsets that tile the file."""
    scan = scan_bytes(tmp_path, build_segment(PAYLOADS, KEY), KEY)
    assert payloads_of(scan) == PAYLOADS
    assert scan.ok and scan.header is not None and scan.header.hmac
    assert scan.records[0].offset == HEADER_BYTES
    assert all(a.end == b.offset for a, b in zip(scan.records, scan.records[1:], strict=False))
    assert scan.records[-1].end == scan.size


def test_header_round_trip_and_crc() -> None:
    """The header decodes to what was encoded; a flipped byte is refused."""
    raw = encode_header(7, b"\x01" * 32, KEY)
    header = decode_header(raw)
    assert (header.sequence, header.prev_mac, header.hmac) == (7, b"\x01" * 32, True)
    assert decode_header(encode_header(3, b"\x01" * 32, None)).prev_mac == ZERO_MAC
    damaged = bytearray(raw)
    damaged[12] ^= 0x01
    with pytest.raises(JournalFormatError, match="CRC"):
        decode_header(bytes(damaged))


def _offsets(tmp: Path, key: bytes | None = None) -> list[tuple[int, int]]:
    scan = scan_bytes(tmp, build_segment(PAYLOADS, key), key)
    return [(r.offset, r.end) for r in scan.records]


def _damage(kind: str, data: bytes, spans: list[tuple[int, int]]) -> tuple[bytes, set[int], str]:
    """Apply one kind of damage; return the bytes, lost record indexes, expected reason."""
    if kind == "truncated tail":
        start, end = spans[-1]
        return data[: start + (end - start) // 2], {19}, "torn tail"
    if kind == "flipped bit":
        start, end = spans[7]
        flipped = bytearray(data)
        flipped[end - 3] ^= 0x10
        return bytes(flipped), {7}, "record CRC mismatch"
    if kind == "zero-filled records":
        start, end = spans[5][0], spans[7][1]
        return data[:start] + bytes(end - start) + data[end:], {5, 6, 7}, "zero-filled region"
    start, end = spans[5][0] + 5, spans[7][0] + 7
    return data[:start] + bytes(end - start) + data[end:], {5, 6, 7}, "record CRC mismatch"


@pytest.mark.parametrize(
    "kind", ["truncated tail", "flipped bit", "zero-filled records", "zero-filled block"]
)
async def test_damage_detected_quarantined_counted(tmp_path: Path, kind: str) -> None:
    """Each damage is one corrupt region, quarantined once and counted at open;
    every intact record, including those after the damage, is still returned."""
    spans = _offsets(tmp_path)
    data, lost, reason = _damage(kind, build_segment(PAYLOADS), spans)
    scan = scan_bytes(tmp_path, data)
    assert payloads_of(scan) == [p for i, p in enumerate(PAYLOADS) if i not in lost]
    assert len(scan.corrupt) == 1
    region = scan.corrupt[0]
    assert region.reason.startswith(reason)
    assert region.offset == spans[min(lost)][0]
    assert region.offset + region.length == (len(data) if 19 in lost else spans[max(lost) + 1][0])

    counters = JournalCounters()
    journal = Journal(JournalConfig(tmp_path, fsync=False), FakeClock(), counters)
    await journal.open()
    await journal.close()
    assert counters.quarantined == 1
    (bad,) = (tmp_path / "quarantine").iterdir()
    assert bad.read_bytes() == data[region.offset : region.offset + region.length]
    assert stat.S_IMODE(bad.stat().st_mode) == 0o600
    assert quarantine(scan, tmp_path) == 0  # already there: not counted twice


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), keyed=st.booleans())
def test_any_single_bit_flip_loses_only_its_record(
    tmp_path: Path, data: st.DataObject, keyed: bool
) -> None:
    """A bit flipped anywhere in the record area costs exactly that record, nothing more."""
    key = KEY if keyed else None
    raw = build_segment(PAYLOADS, key)
    position = data.draw(st.integers(HEADER_BYTES, len(raw) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    damaged = bytearray(raw)
    damaged[position] ^= 1 << bit
    scan = scan_bytes(tmp_path, bytes(damaged), key)
    hit = next(i for i, r in enumerate(_offsets(tmp_path, key)) if r[0] <= position < r[1])
    assert payloads_of(scan) == PAYLOADS[:hit] + PAYLOADS[hit + 1 :]
    assert len(scan.corrupt) == 1
    if keyed:  # the record after the hole cannot be chained across it
        assert len(scan.breaks) == (1 if hit < 19 else 0)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, len(build_segment(PAYLOADS)) - 1))
def test_any_truncation_keeps_every_complete_record(tmp_path: Path, cut: int) -> None:
    """Cutting the file anywhere keeps every record that ends before the cut."""
    raw = build_segment(PAYLOADS)
    scan = scan_bytes(tmp_path, raw[:cut])
    spans = _offsets(tmp_path)
    assert payloads_of(scan) == [
        p for p, (_, end) in zip(PAYLOADS, spans, strict=True) if end <= cut
    ]
    clean_cut = cut == HEADER_BYTES or any(end == cut for _, end in spans)
    assert len(scan.corrupt) == (0 if clean_cut or cut == 0 else 1)


def test_damaged_header_still_yields_records(tmp_path: Path) -> None:
    """A corrupt header is one region; the records after it are still read."""
    raw = bytearray(build_segment(PAYLOADS, KEY))
    raw[10] ^= 0xFF
    scan = scan_bytes(tmp_path, bytes(raw), KEY)
    assert scan.header is None
    assert payloads_of(scan) == PAYLOADS
    assert [(c.offset, c.length) for c in scan.corrupt] == [(0, HEADER_BYTES)]
    assert [b.reason for b in scan.breaks] == ["chain start unknown: segment header unreadable"]


def test_resync_skips_garbage_containing_magic(tmp_path: Path) -> None:
    """Garbage holding a fake record magic is one region; the reader resyncs past it."""
    raw = build_segment(PAYLOADS)
    spans = _offsets(tmp_path)
    garbage = b"\x13SPJR\xff\xff\x00\x10junkSPJMxx" * 3
    at = spans[10][0]
    scan = scan_bytes(tmp_path, raw[:at] + garbage + raw[at:])
    assert payloads_of(scan) == PAYLOADS
    assert [(c.offset, c.length) for c in scan.corrupt] == [(at, len(garbage))]


def test_quarantine_failure_is_not_fatal(tmp_path: Path) -> None:
    """When the quarantine directory cannot be created, quarantine returns 0, no raise."""
    scan = scan_bytes(tmp_path, build_segment(PAYLOADS)[:-3])
    blocker = tmp_path / "blocked"
    blocker.write_bytes(b"a file, not a directory")
    assert quarantine(scan, blocker) == 0
    assert quarantine(scan, tmp_path) == 1


# -- verification over a journal written by the real writer --------------------------------


async def write_journal(directory: Path, key: bytes | None, records: int = 60) -> list[Path]:
    """Write `records` records in small segments; return the segment paths."""
    config = JournalConfig(directory, segment_max_bytes=1024, hmac_key=key, fsync=False)
    journal = Journal(config, FakeClock())
    await journal.open()
    for i in range(records):
        await journal.append(f"event-{i:04d}".encode() * 4)
    await journal.close()
    segments = [path for _, path in list_segments(directory)]
    assert len(segments) >= 4
    return segments


def _rewrite(path: Path, index: int, new_payload: bytes | None) -> int:
    """Replace record `index` (CRC recomputed, MAC kept) or cut it out; return its offset."""
    data = path.read_bytes()
    record = read_segment(path).records[index]
    frame = encode_record(new_payload, record.mac) if new_payload is not None else b""
    path.write_bytes(data[: record.offset] + frame + data[record.end :])
    return record.offset


def _verify_cli(directory: Path, monkeypatch: pytest.MonkeyPatch, key: bytes | None) -> int:
    if key is None:
        monkeypatch.delenv("AUDITORIA_HMAC_KEY", raising=False)
    else:
        monkeypatch.setenv("AUDITORIA_HMAC_KEY", key.decode())
    return main_verify([str(directory)])


async def test_intact_journal_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An untouched HMAC journal verifies and the CLI exits 0."""
    segments = await write_journal(tmp_path, KEY)
    report = verify_journal(tmp_path, KEY)
    assert report.ok and report.hmac_checked
    assert (report.segments, report.records_ok) == (len(segments), 60)
    assert _verify_cli(tmp_path, monkeypatch, KEY) == 0
    assert "result: OK" in capsys.readouterr().out


@pytest.mark.parametrize("tamper", ["edit", "delete", "delete last of segment"])
async def test_record_tampering_is_a_chain_break(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tamper: str
) -> None:
    """Editing a record (CRC fixed up) or deleting one is caught by the HMAC chain."""
    segments = await write_journal(tmp_path, KEY)
    victim = segments[1]
    if tamper == "edit":
        _rewrite(victim, 2, b"event-9999" * 4)
    elif tamper == "delete":
        _rewrite(victim, 1, None)
    else:
        _rewrite(victim, len(read_segment(victim).records) - 1, None)
    report = verify_journal(tmp_path, KEY)
    assert not report.corrupt  # the frames themselves are valid
    assert len(report.breaks) == 1
    broken = segments[2] if tamper == "delete last of segment" else victim
    assert report.breaks[0].segment == broken
    assert "BREAK" in format_report(report)
    assert _verify_cli(tmp_path, monkeypatch, KEY) == 1


async def test_removed_middle_segment_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting a middle segment is a sequence gap, even without a key."""
    segments = await write_journal(tmp_path, KEY)
    segments[2].unlink()
    for key in (KEY, None):
        report = verify_journal(tmp_path, key)
        assert [b.segment for b in report.breaks] == [segments[3]]
        assert "missing segment(s) 3" in report.breaks[0].reason
        assert _verify_cli(tmp_path, monkeypatch, key) == 1


async def test_renumbered_segments_after_removal_are_reported(tmp_path: Path) -> None:
    """Hiding a removed segment by renaming the later ones still breaks the chain."""
    segments = await write_journal(tmp_path, KEY)
    segments[2].unlink()
    for index in range(3, len(segments)):
        segments[index].rename(segments[index - 1])
    report = verify_journal(tmp_path, KEY)
    assert not report.ok
    assert any("header says sequence" in b.reason for b in report.breaks)
    assert any("chain does not continue" in b.reason for b in report.breaks)


async def test_wrong_key_or_unkeyed_segments_fail_verification(tmp_path: Path) -> None:
    """A wrong key, or segments written without one, do not verify under a key."""
    await write_journal(tmp_path / "keyed", KEY)
    assert not verify_journal(tmp_path / "keyed", b"w" * 32).ok
    await write_journal(tmp_path / "plain", None)
    report = verify_journal(tmp_path / "plain", KEY)
    assert report.breaks and all("not HMAC-chained" in b.reason for b in report.breaks)
    assert verify_journal(tmp_path / "plain").ok


async def test_without_key_edits_pass_but_cli_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a key a CRC-consistent edit is undetectable; the CLI says it did not check."""
    segments = await write_journal(tmp_path, KEY)
    _rewrite(segments[1], 0, b"forged" * 4)
    assert _verify_cli(tmp_path, monkeypatch, None) == 0
    assert "were not checked" in capsys.readouterr().out
    assert _verify_cli(tmp_path, monkeypatch, KEY) == 1


async def test_corruption_makes_cli_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flipped bit is reported as corrupt and the CLI exits 1."""
    segments = await write_journal(tmp_path, None)
    data = bytearray(segments[0].read_bytes())
    data[-2] ^= 0x01
    segments[0].write_bytes(bytes(data))
    report = verify_journal(tmp_path)
    assert len(report.corrupt) == 1 and report.corrupt[0].segment == segments[0]
    assert _verify_cli(tmp_path, monkeypatch, None) == 1


def test_cli_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing directory, a too-short key or bad arguments exit 2; a custom var works."""
    monkeypatch.delenv("AUDITORIA_HMAC_KEY", raising=False)
    assert main_verify([str(tmp_path / "absent")]) == 2
    monkeypatch.setenv("SHORT_KEY", "short")
    assert main_verify([str(tmp_path), "--hmac-key-env", "SHORT_KEY"]) == 2
    assert main_verify(["--no-such-flag"]) == 2
    monkeypatch.setenv("MY_KEY", KEY.decode())
    assert main_verify([str(tmp_path), "--hmac-key-env", "MY_KEY"]) == 0
