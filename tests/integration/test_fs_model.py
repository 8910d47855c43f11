"""The forgetful filesystem against a model: after a power cut the backing directory holds
exactly what was durable (file data fsynced, directory entries whose directory was fsynced)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from scenarios.fs.mount import ForgetfulMount
from tests.integration.fs_support import backing_files, forgetful_mount

pytestmark = pytest.mark.integration

DIRS = ("", "sub")
NAMES = ("a", "b", "c")


@dataclass
class Model:
    """The specification: volatile and durable namespaces, volatile and durable contents."""

    volatile: dict[str, int] = field(default_factory=dict)  # path -> file id
    durable: dict[str, int] = field(default_factory=dict)
    data: dict[int, bytes] = field(default_factory=dict)
    synced: dict[int, bytes] = field(default_factory=dict)
    pending: list[tuple[frozenset[str], str, str, str, int]] = field(default_factory=list)
    next_id: int = 0

    def commit(self, directory: str) -> None:
        """fsync(dir): the ops touching it and those they depend on, in order."""
        involved, chosen = {directory}, []
        for index in range(len(self.pending) - 1, -1, -1):
            if self.pending[index][0] & involved:
                chosen.append(index)
                involved |= self.pending[index][0]
        for index in sorted(chosen):
            _, kind, src, dst, fid = self.pending[index]
            if kind == "create":
                self.durable[src] = fid
            elif kind == "unlink":
                del self.durable[src]
            else:
                del self.durable[src]
                self.durable[dst] = fid
        self.pending = [op for i, op in enumerate(self.pending) if i not in set(chosen)]

    def after_cut(self) -> dict[str, bytes]:
        """What the backing directory must hold after a cut; the model becomes it."""
        expected = {path: self.synced[fid] for path, fid in self.durable.items()}
        self.volatile = dict(self.durable)
        self.data = {fid: self.synced[fid] for fid in self.durable.values()}
        self.pending = []
        return expected


def _dir_of(path: str) -> str:
    return path.rpartition("/")[0]


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


class ForgetfulFsMachine(RuleBasedStateMachine):
    """Generated writes, fsyncs, renames, creates, unlinks and cuts through the real mount."""

    mount: ForgetfulMount

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.root = self.mount.mountpoint

    @initialize()
    def empty(self) -> None:
        """Start from an empty, durable tree with one subdirectory."""
        self.mount.power_cut()
        for name in os.listdir(self.root):
            target = self.root / name
            if target.is_dir():
                for child in os.listdir(target):
                    os.unlink(target / child)
                os.rmdir(target)
            else:
                os.unlink(target)
        os.mkdir(self.root / "sub")
        self.mount.request({"cmd": "sync"})
        assert backing_files(self.mount.config.backing) == {}

    def _fsync_path(self, path: str) -> None:
        fd = os.open(self.root / path, os.O_RDONLY | (os.O_DIRECTORY if path in DIRS else 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _create(self, path: str) -> None:
        os.close(os.open(self.root / path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        fid = self.model.next_id
        self.model.next_id += 1
        self.model.volatile[path] = fid
        self.model.data[fid] = self.model.synced[fid] = b""
        self.model.pending.append((frozenset({_dir_of(path)}), "create", path, "", fid))

    @rule(directory=st.sampled_from(DIRS), name=st.sampled_from(NAMES))
    def create(self, directory: str, name: str) -> None:
        """O_CREAT|O_EXCL a new file."""
        path = _join(directory, name)
        if path not in self.model.volatile:
            self._create(path)

    @rule(
        directory=st.sampled_from(DIRS),
        name=st.sampled_from(NAMES),
        offset=st.integers(0, 9000),
        data=st.binary(min_size=1, max_size=5000),
    )
    def write(self, directory: str, name: str, offset: int, data: bytes) -> None:
        """pwrite at an offset (across pages, past the end), creating the file if needed."""
        path = _join(directory, name)
        if path not in self.model.volatile:
            self._create(path)
        fd = os.open(self.root / path, os.O_WRONLY)
        try:
            assert os.pwrite(fd, data, offset) == len(data)
        finally:
            os.close(fd)
        fid = self.model.volatile[path]
        old = self.model.data[fid].ljust(offset, b"\0")
        self.model.data[fid] = old[:offset] + data + old[offset + len(data) :]

    @precondition(lambda self: self.model.volatile)
    @rule(pick=st.integers(0, 10), length=st.integers(0, 12000))
    def truncate(self, pick: int, length: int) -> None:
        """truncate to a shorter or longer size."""
        path = sorted(self.model.volatile)[pick % len(self.model.volatile)]
        os.truncate(self.root / path, length)
        fid = self.model.volatile[path]
        self.model.data[fid] = self.model.data[fid][:length].ljust(length, b"\0")

    @precondition(lambda self: self.model.volatile)
    @rule(pick=st.integers(0, 10))
    def fsync_file(self, pick: int) -> None:
        """fsync a file: its data becomes durable (not its name)."""
        path = sorted(self.model.volatile)[pick % len(self.model.volatile)]
        self._fsync_path(path)
        fid = self.model.volatile[path]
        self.model.synced[fid] = self.model.data[fid]

    @rule(directory=st.sampled_from(DIRS), now=st.integers(0, 2))
    def fsync_dir(self, directory: str, now: int) -> None:
        """fsync a directory (one time in three): its entries become durable."""
        if now:
            return
        self._fsync_path(directory)
        self.model.commit(directory)

    @precondition(lambda self: self.model.volatile)
    @rule(pick=st.integers(0, 10), directory=st.sampled_from(DIRS), name=st.sampled_from(NAMES))
    def rename(self, pick: int, directory: str, name: str) -> None:
        """rename, possibly across directories, possibly replacing a file."""
        src = sorted(self.model.volatile)[pick % len(self.model.volatile)]
        dst = _join(directory, name)
        if src == dst:
            return
        os.rename(self.root / src, self.root / dst)
        fid = self.model.volatile.pop(src)
        self.model.volatile[dst] = fid
        dirs = frozenset({_dir_of(src), directory})
        self.model.pending.append((dirs, "rename", src, dst, fid))

    @precondition(lambda self: self.model.volatile)
    @rule(pick=st.integers(0, 10))
    def unlink(self, pick: int) -> None:
        """unlink a file."""
        path = sorted(self.model.volatile)[pick % len(self.model.volatile)]
        os.unlink(self.root / path)
        fid = self.model.volatile.pop(path)
        self.model.pending.append((frozenset({_dir_of(path)}), "unlink", path, "", fid))

    @rule(now=st.integers(0, 3))
    def power_cut(self, now: int) -> None:
        """Cut (one time in four): the backing directory holds exactly the durable state."""
        if now:
            return
        self.mount.power_cut()
        expected = {
            path.replace("/", os.sep): content for path, content in self.model.after_cut().items()
        }
        assert backing_files(self.mount.config.backing) == expected

    @invariant()
    def reads_see_the_volatile_state(self) -> None:
        """Every file reads back as the model's volatile content; listings match."""
        for directory in DIRS:
            listed = sorted(
                os.listdir(self.root / directory) if directory else os.listdir(self.root)
            )
            wanted = sorted(
                p.rpartition("/")[2] for p in self.model.volatile if _dir_of(p) == directory
            )
            if directory == "":
                wanted = sorted([*wanted, "sub"])
            assert listed == wanted
        for path, fid in self.model.volatile.items():
            assert (self.root / path).read_bytes() == self.model.data[fid], path


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[ForgetfulMount]:
    with forgetful_mount(tmp_path) as mount:
        yield mount


def test_backing_directory_equals_the_models_durable_state(mount: ForgetfulMount) -> None:
    """For generated operation sequences with cuts, the backing dir equals the durable model."""
    ForgetfulFsMachine.mount = mount
    run_state_machine_as_test(
        ForgetfulFsMachine,
        settings=settings(
            max_examples=100,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
