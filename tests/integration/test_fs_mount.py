"""The forgetful mount's life cycle, faults and counters, through the real kernel."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scenarios.fs.mount import ForgetfulMount, MountConfig, is_mounted
from tests.integration.fs_support import forgetful_mount

pytestmark = pytest.mark.integration


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_unsynced_data_and_names_are_lost_synced_ones_kept(tmp_path: Path) -> None:
    """Cut: fsynced data under an fsynced name survives; the rest is counted and dropped."""
    with forgetful_mount(tmp_path) as mount:
        root, backing = mount.mountpoint, mount.config.backing
        (root / "kept").write_bytes(b"a" * 5000)
        _fsync(root / "kept")
        _fsync(root)
        (root / "unnamed").write_bytes(b"b" * 100)
        _fsync(root / "unnamed")  # data durable, but its name is not
        with open(root / "kept", "ab") as handle:
            handle.write(b"c" * 300)
        assert (root / "kept").read_bytes() == b"a" * 5000 + b"c" * 300
        assert not (backing / "unnamed").exists()
        counters = mount.power_cut()
        assert counters["bytes_dropped_last_cut"] == 300
        assert counters["ops_dropped_last_cut"] == 1
        assert sorted(os.listdir(root)) == ["kept"] == sorted(os.listdir(backing))
        assert (root / "kept").read_bytes() == b"a" * 5000


def test_truncate_then_extend_reads_zeros_durably(tmp_path: Path) -> None:
    """Truncated-away bytes never come back: not in reads, not in the backing file."""
    with forgetful_mount(tmp_path) as mount:
        root = mount.mountpoint
        (root / "f").write_bytes(b"x" * 12000)
        _fsync(root / "f")
        _fsync(root)
        os.truncate(root / "f", 100)
        fd = os.open(root / "f", os.O_WRONLY)
        os.pwrite(fd, b"y", 11000)
        os.fsync(fd)
        os.close(fd)
        want = b"x" * 100 + bytes(10900) + b"y"
        assert (root / "f").read_bytes() == want
        mount.power_cut()
        assert (mount.config.backing / "f").read_bytes() == want


def test_open_with_o_trunc_empties_the_file_until_a_cut_undoes_it(tmp_path: Path) -> None:
    """open(..., "w") of an existing file empties it (the kernel passes O_TRUNC to open);
    the truncation is unsynced, so a power cut brings the durable bytes back."""
    with forgetful_mount(tmp_path) as mount:
        root = mount.mountpoint
        (root / "f").write_bytes(b"x" * 18)
        _fsync(root / "f")
        _fsync(root)
        with open(root / "f", "w"):
            pass
        assert (root / "f").read_bytes() == b""
        (root / "f").write_bytes(b"new")  # O_CREAT | O_TRUNC on an existing name
        assert (root / "f").read_bytes() == b"new"
        mount.power_cut()
        assert (root / "f").read_bytes() == b"x" * 18


def test_torn_cut_keeps_a_prefix_of_the_last_write(tmp_path: Path) -> None:
    """A torn cut leaves a strict prefix of the last unsynced write, seeded."""
    with forgetful_mount(tmp_path) as mount:
        root = mount.mountpoint
        (root / "log").write_bytes(b"head")
        _fsync(root / "log")
        _fsync(root)
        with open(root / "log", "ab") as handle:
            handle.write(b"z" * 1000)
        counters = mount.power_cut(tear=True, seed=7)
        torn = int(counters["torn_bytes_last_cut"])
        assert 0 <= torn < 1000
        assert (root / "log").read_bytes() == b"head" + b"z" * torn


def test_armed_cut_fires_after_the_nth_write_and_halts(tmp_path: Path) -> None:
    """An armed cut fires right after the Nth write; after it every change fails with EIO."""
    with forgetful_mount(tmp_path) as mount:
        root = mount.mountpoint
        fd = os.open(root / "f", os.O_CREAT | os.O_WRONLY, 0o600)
        mount.arm_cut(3, halt=True)
        os.write(fd, b"1")
        os.write(fd, b"2")
        assert mount.counters()["cuts"] == 0
        os.write(fd, b"3")
        assert mount.counters()["cuts"] == 1
        with pytest.raises(OSError) as raised:
            os.fsync(fd)
        assert raised.value.errno == errno.EIO
        os.close(fd)
        with pytest.raises(OSError) as raised:
            (root / "g").write_bytes(b"x")
        assert raised.value.errno == errno.EIO
        mount.clear_faults()
        (root / "g").write_bytes(b"x")


@pytest.mark.parametrize(
    ("fault", "code"),
    [("disk-full", errno.ENOSPC), ("eio", errno.EIO), ("read-only", errno.EROFS)],
)
def test_disk_faults_refuse_writes_for_their_pattern_only(
    tmp_path: Path, fault: str, code: int
) -> None:
    """Each disk fault fails writes/fsyncs under its pattern with its errno, and reverts."""
    with forgetful_mount(tmp_path) as mount:
        root = mount.mountpoint
        (root / "sub").mkdir()
        (root / "sub" / "f").write_bytes(b"before")
        mount.set_fault(fault, pattern="/sub/*")
        (root / "other").write_bytes(b"fine")  # outside the pattern
        fd = os.open(root / "sub" / "f", os.O_WRONLY)
        try:
            with pytest.raises(OSError) as raised:
                os.write(fd, b"x")
                os.fsync(fd)
            assert raised.value.errno == code
        finally:
            os.close(fd)
        assert [f["name"] for f in mount.counters()["faults"]] == [fault]
        mount.set_fault(fault, on=False)
        (root / "sub" / "f").write_bytes(b"after")
        _fsync(root / "sub" / "f")
        assert mount.counters()["faults"] == []


def test_a_killed_filesystem_is_unmounted_by_stop(tmp_path: Path) -> None:
    """SIGKILL of the fs process leaves a dead mount; stop() lazily unmounts it."""
    with forgetful_mount(tmp_path) as mount:
        pid = int(subprocess.check_output(["pgrep", "-f", f"scenarios.fs {tmp_path}"]).split()[0])
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        assert is_mounted(mount.mountpoint)
        mount.stop()
        assert not is_mounted(mount.mountpoint)


def test_the_mount_goes_when_its_parent_dies(tmp_path: Path) -> None:
    """A harness killed with SIGKILL still leaves no mount behind (parent-death signal)."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from scenarios.fs.mount import ForgetfulMount, MountConfig\n"
        "r = Path(sys.argv[1])\n"
        "m = ForgetfulMount(MountConfig('p', r / 'b', r / 'm', r / 's'))\n"
        "m.start()\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        assert is_mounted(tmp_path / "m")
        child.kill()
        child.wait(10)
        deadline = time.monotonic() + 10
        while is_mounted(tmp_path / "m") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_mounted(tmp_path / "m")
    finally:
        child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
        ForgetfulMount(MountConfig("p", tmp_path / "b", tmp_path / "m", tmp_path / "s")).stop()
