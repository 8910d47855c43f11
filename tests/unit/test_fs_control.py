"""The forgetful filesystem's pure parts: disk-fault patterns, control requests, availability."""

from __future__ import annotations

import errno
import os
import shutil
from typing import Any

import pytest

from scenarios.fs import availability
from scenarios.fs.control import handle_request
from scenarios.fs.disk_faults import DiskFaults


def test_a_fault_refuses_only_its_operations_and_paths() -> None:
    """eio refuses writes and fsyncs under its pattern, not creates, not other paths."""
    faults = DiskFaults()
    faults.set("eio", True, "/journal/*")
    with pytest.raises(OSError) as raised:
        faults.check("write", "/journal/seg-1")
    assert raised.value.errno == errno.EIO
    faults.check("create", "/journal/seg-2")  # eio does not refuse creates
    faults.check("write", "/other/file")  # outside the pattern
    faults.set("eio", False)
    faults.check("write", "/journal/seg-1")


def test_read_only_refuses_every_change_and_full_reports_no_space() -> None:
    """EROFS on renames and removes too; a disk full everywhere has no free blocks."""
    faults = DiskFaults()
    faults.set("read-only", True)
    for operation in ("write", "create", "fsync", "truncate", "remove", "rename", "chmod"):
        with pytest.raises(OSError) as raised:
            faults.check(operation, "/x")
        assert raised.value.errno == errno.EROFS
    faults.clear()
    faults.set("disk-full", True)
    assert faults.reports_full()
    with pytest.raises(ValueError, match="unknown fault"):
        faults.set("slow", True)


class _Target:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def power_cut(self, tear: bool = False, seed: int | None = None, halt: bool = False) -> Any:
        self.calls.append(("cut", tear, seed, halt))
        return {"cuts": 1}

    def arm_cut(
        self, after: int, tear: bool = False, seed: int | None = None, halt: bool = False
    ) -> Any:
        if after < 1:
            raise ValueError("after_writes must be at least 1")
        self.calls.append(("arm", after, tear, seed, halt))
        return {}

    def sync_all(self) -> Any:
        return {}

    def counters(self) -> Any:
        return {"cuts": 0}

    def set_fault(self, name: str, on: bool, pattern: str) -> Any:
        self.calls.append(("fault", name, on, pattern))
        return {}


def test_control_requests_map_to_calls_and_errors_to_answers() -> None:
    """Each command reaches the filesystem; bad requests answer ok=false, never raise."""
    target = _Target()
    assert handle_request(target, {"cmd": "powercut", "tear": True, "seed": 3}) == {
        "ok": True,
        "counters": {"cuts": 1},
    }
    handle_request(target, {"cmd": "powercut", "after_writes": 5, "halt": True})
    handle_request(target, {"cmd": "fault", "name": "eio", "pattern": "/j/*"})
    handle_request(target, {"cmd": "clear"})
    assert target.calls == [
        ("cut", True, 3, False),
        ("arm", 5, False, None, True),
        ("fault", "eio", True, "/j/*"),
        ("fault", "", False, "*"),
    ]
    assert handle_request(target, {"cmd": "explode"})["ok"] is False
    assert handle_request(target, {"cmd": "fault"})["ok"] is False  # no name
    assert handle_request(target, {"cmd": "powercut", "after_writes": 0})["ok"] is False


def test_missing_fuse3_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without fusermount3 the reason names it and how to install it."""
    monkeypatch.setattr(os.path, "exists", lambda path: True)
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    reason = availability.unavailable_reason()
    assert reason is not None and "fusermount3" in reason and "\n" not in reason
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    assert "/dev/fuse" in str(availability.unavailable_reason())
