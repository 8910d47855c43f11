"""The volatile state of the forgetful filesystem: a page cache over a durable backing directory.

The backing directory holds exactly what is durable. Everything else lives in memory:
- file data written but not fsynced: dirty 4 KiB pages over the durable file;
- directory changes (create, unlink, rename, mkdir, rmdir) not made durable: a log of
  pending operations. `fsync` of a directory commits the operations touching it, and the
  earlier ones they depend on (those sharing a directory with an op committed), in order.
Data fsynced before its name is durable goes to an orphan store outside the backing
directory; committing the create moves it into place. A power cut drops the pages, the log
and the orphans, and reloads the volatile state from the backing directory.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

PAGE = 4096
NO_FLOOR = 1 << 62


@dataclass
class Node:
    """One inode: a file or a directory, with its volatile and durable whereabouts."""

    ino: int
    is_dir: bool
    mode: int
    size: int = 0
    dparent: int | None = None  # durable parent directory (None: no durable name)
    dname: str | None = None
    orphan: Path | None = None  # durable data of a file whose name is not durable
    durable_size: int = 0
    floor: int = NO_FLOOR  # store bytes at or past this offset were truncated away
    pages: dict[int, bytearray] = field(default_factory=dict)
    dirty_from: int = NO_FLOOR  # lowest offset written since the last fsync
    entries: dict[str, int] = field(default_factory=dict)  # directories: volatile entries
    nlink: int = 1
    opens: int = 0
    fd: int | None = None
    mtime_ns: int = 0
    uid: int = 0
    gid: int = 0

    @property
    def dirty(self) -> bool:
        """Data that a cut would lose."""
        return bool(self.pages) or self.floor != NO_FLOOR or self.size != self.durable_size


@dataclass(frozen=True)
class PendingOp:
    """A namespace change not yet durable."""

    kind: str  # create | mkdir | unlink | rmdir | rename
    dirs: frozenset[int]
    ino: int
    parent: int
    name: str
    new_parent: int = 0
    new_name: str = ""
    replaced: int | None = None


@dataclass
class Counters:
    """What went through the filesystem, and what the last cut dropped."""

    bytes_written: int = 0
    writes: int = 0
    fsyncs: int = 0
    dir_fsyncs: int = 0
    cuts: int = 0
    bytes_dropped_last_cut: int = 0
    ops_dropped_last_cut: int = 0
    torn_bytes_last_cut: int = 0


ROOT = 1


class VolatileState:
    """Namespace and data as the mount shows them; `commit_*` make parts durable."""

    def __init__(self, backing: Path, orphans: Path) -> None:
        self.backing = backing
        self.orphans = orphans
        self.counters = Counters()
        self.nodes: dict[int, Node] = {}
        self.pending: list[PendingOp] = []
        self.last_write: tuple[int, int, bytes] | None = None
        self._next_ino = ROOT
        self.reload()

    # -- loading and cutting -----------------------------------------------------------

    def reload(self) -> None:
        """Forget everything volatile: the state becomes the backing directory's."""
        for node in self.nodes.values():
            _close(node)
        self.nodes = {}
        self.pending = []
        self.last_write = None
        if self.orphans.exists():
            shutil.rmtree(self.orphans)
        self.orphans.mkdir(parents=True, exist_ok=True)
        self._next_ino = ROOT
        st = os.stat(self.backing)
        root = self._new_node(True, stat.S_IMODE(st.st_mode), st)
        root.dparent, root.dname = 0, ""
        self._load_dir(root)

    def _load_dir(self, directory: Node) -> None:
        with os.scandir(self.durable_path(directory)) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                    continue
                node = self._new_node(stat.S_ISDIR(st.st_mode), stat.S_IMODE(st.st_mode), st)
                node.dparent, node.dname = directory.ino, entry.name
                directory.entries[entry.name] = node.ino
                if node.is_dir:
                    self._load_dir(node)
                else:
                    node.size = node.durable_size = st.st_size

    def _new_node(self, is_dir: bool, mode: int, st: os.stat_result | None = None) -> Node:
        ino = self._next_ino
        self._next_ino += 1
        node = Node(ino=ino, is_dir=is_dir, mode=mode, nlink=2 if is_dir else 1)
        node.mtime_ns = st.st_mtime_ns if st else time.time_ns()
        node.uid = st.st_uid if st else os.getuid()
        node.gid = st.st_gid if st else os.getgid()
        self.nodes[ino] = node
        return node

    def power_cut(self, tear_at: float | None = None) -> Counters:
        """Lose everything not durable.

        `tear_at` (0..1): the file written last keeps that fraction (a strict prefix) of its
        unsynced bytes, from its lowest unsynced offset on: a torn write, never a hole.
        """
        dropped, ops, torn = self.dirty_bytes(), len(self.pending), 0
        if tear_at is not None and self.last_write is not None:
            node = self.nodes[self.last_write[0]]
            start = min(node.dirty_from, node.size)
            span = node.size - start
            if node.dparent is not None and node.floor == NO_FLOOR and span > 0:
                torn = min(span - 1, int(span * tear_at))
                data = self.read(node, start, torn)
                fd = os.open(self.durable_path(node), os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.pwrite(fd, data, start)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        self.reload()
        self.counters.cuts += 1
        self.counters.bytes_dropped_last_cut = dropped
        self.counters.ops_dropped_last_cut = ops
        self.counters.torn_bytes_last_cut = torn
        return self.counters

    def dirty_bytes(self) -> int:
        """Bytes of file data that are not durable (what a cut would drop)."""
        total = 0
        for node in self.nodes.values():
            for index in node.pages:
                start = max(index * PAGE, node.dirty_from)
                total += max(0, min((index + 1) * PAGE, node.size) - start)
        return total

    # -- lookups -------------------------------------------------------------------------

    def resolve(self, path: str) -> Node:
        """The node at a volatile path ('/a/b'); ENOENT or ENOTDIR."""
        node = self.nodes[ROOT]
        for part in path.split("/"):
            if not part:
                continue
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, path)
            ino = node.entries.get(part)
            if ino is None:
                raise OSError(errno.ENOENT, path)
            node = self.nodes[ino]
        return node

    def parent_of(self, path: str) -> tuple[Node, str]:
        """The directory that would hold `path`, and the last name."""
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self.resolve(head or "/")
        if not parent.is_dir:
            raise OSError(errno.ENOTDIR, path)
        if not name:
            raise OSError(errno.EINVAL, path)
        return parent, name

    def durable_path(self, node: Node) -> Path:
        """Where a node with a durable name lives in the backing directory."""
        parts: list[str] = []
        current = node
        while current.ino != ROOT:
            if current.dparent is None or current.dname is None:
                raise OSError(errno.EIO, f"inode {node.ino} has no durable name")
            parts.append(current.dname)
            current = self.nodes[current.dparent]
        return self.backing.joinpath(*reversed(parts))

    def store_path(self, node: Node) -> Path | None:
        """The file holding a node's durable data, if there is one."""
        if node.dparent is not None:
            return self.durable_path(node)
        return node.orphan

    # -- file data ------------------------------------------------------------------------

    def _store_fd(self, node: Node) -> int | None:
        if node.fd is None:
            path = self.store_path(node)
            if path is None:
                return None
            node.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        return node.fd

    def _durable_bytes(self, node: Node, offset: int, length: int) -> bytes:
        limit = min(node.durable_size, node.floor)
        end = min(offset + length, limit)
        data = b""
        if end > offset:
            fd = self._store_fd(node)
            if fd is not None:
                data = os.pread(fd, end - offset, offset)
        return data + bytes(length - len(data))

    def read(self, node: Node, offset: int, length: int) -> bytes:
        """Volatile content: dirty pages over durable data, zeros past either."""
        end = min(offset + length, node.size)
        if end <= offset:
            return b""
        chunks: list[bytes] = []
        position = offset
        while position < end:
            index = position // PAGE
            page_end = min((index + 1) * PAGE, end)
            page = node.pages.get(index)
            if page is not None:
                start = position - index * PAGE
                chunks.append(bytes(page[start : start + page_end - position]))
                position = page_end
                continue
            run_end = page_end
            while run_end < end and (run_end // PAGE) not in node.pages:
                run_end = min((run_end // PAGE + 1) * PAGE, end)
            chunks.append(self._durable_bytes(node, position, run_end - position))
            position = run_end
        return b"".join(chunks)

    def write(self, node: Node, offset: int, data: bytes) -> None:
        """Write into dirty pages (nothing reaches the backing file)."""
        position = 0
        while position < len(data):
            at = offset + position
            index = at // PAGE
            page = node.pages.get(index)
            if page is None:
                page = bytearray(self._durable_bytes(node, index * PAGE, PAGE))
                node.pages[index] = page
            start = at - index * PAGE
            count = min(PAGE - start, len(data) - position)
            page[start : start + count] = data[position : position + count]
            position += count
        node.size = max(node.size, offset + len(data))
        node.dirty_from = min(node.dirty_from, offset)
        node.mtime_ns = time.time_ns()
        self.counters.bytes_written += len(data)
        self.counters.writes += 1
        self.last_write = (node.ino, offset, bytes(data))

    def truncate(self, node: Node, length: int) -> None:
        """Set the volatile size; data past it reads as zeros when extended again."""
        if length < node.size:
            for index in [i for i in node.pages if i * PAGE >= length]:
                del node.pages[index]
            tail = node.pages.get(length // PAGE)
            if tail is not None:
                cut = length - (length // PAGE) * PAGE
                tail[cut:] = bytes(PAGE - cut)
            node.floor = min(node.floor, length)
        node.size = length
        node.mtime_ns = time.time_ns()

    def fsync_file(self, node: Node) -> None:
        """Make a file's data durable (in its backing file, or its orphan store)."""
        self.counters.fsyncs += 1
        if node.is_dir:
            self.commit_dir(node)
            return
        fd = self._store_fd(node)
        if fd is None:
            node.orphan = self.orphans / f"{node.ino}"
            fd = os.open(node.orphan, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            node.fd = fd
        if node.floor < node.durable_size:
            os.ftruncate(fd, node.floor)
        for index in sorted(node.pages):
            start = index * PAGE
            if start >= node.size:
                continue
            page = node.pages[index]
            os.pwrite(fd, bytes(page[: min(PAGE, node.size - start)]), start)
        os.ftruncate(fd, node.size)
        os.fsync(fd)
        node.pages.clear()
        node.floor = NO_FLOOR
        node.dirty_from = NO_FLOOR
        node.durable_size = node.size
        if self.last_write is not None and self.last_write[0] == node.ino:
            self.last_write = None

    # -- namespace ------------------------------------------------------------------------

    def create(self, parent: Node, name: str, mode: int, is_dir: bool) -> Node:
        """A new file or directory (volatile until its directory is fsynced)."""
        if name in parent.entries:
            raise OSError(errno.EEXIST, name)
        node = self._new_node(is_dir, mode)
        parent.entries[name] = node.ino
        parent.mtime_ns = node.mtime_ns
        dirs = frozenset({parent.ino, node.ino}) if is_dir else frozenset({parent.ino})
        kind = "mkdir" if is_dir else "create"
        self.pending.append(PendingOp(kind, dirs, node.ino, parent.ino, name))
        return node

    def remove(self, parent: Node, name: str, is_dir: bool) -> None:
        """unlink or rmdir."""
        ino = parent.entries.get(name)
        if ino is None:
            raise OSError(errno.ENOENT, name)
        node = self.nodes[ino]
        if is_dir and not node.is_dir:
            raise OSError(errno.ENOTDIR, name)
        if not is_dir and node.is_dir:
            raise OSError(errno.EISDIR, name)
        if is_dir and node.entries:
            raise OSError(errno.ENOTEMPTY, name)
        del parent.entries[name]
        node.nlink = 0
        self._forget_pages(node)
        dirs = frozenset({parent.ino, ino}) if is_dir else frozenset({parent.ino})
        self.pending.append(PendingOp("rmdir" if is_dir else "unlink", dirs, ino, parent.ino, name))

    def rename(self, parent: Node, name: str, new_parent: Node, new_name: str) -> None:
        """rename(2), replacing the target if any."""
        ino = parent.entries.get(name)
        if ino is None:
            raise OSError(errno.ENOENT, name)
        node = self.nodes[ino]
        if node.is_dir and self._is_inside(new_parent, node):
            raise OSError(errno.EINVAL, new_name)
        replaced = new_parent.entries.get(new_name)
        if replaced == ino:
            return
        if replaced is not None:
            target = self.nodes[replaced]
            if target.is_dir != node.is_dir:
                raise OSError(errno.EISDIR if target.is_dir else errno.ENOTDIR, new_name)
            if target.is_dir and target.entries:
                raise OSError(errno.ENOTEMPTY, new_name)
            target.nlink = 0
            self._forget_pages(target)
        del parent.entries[name]
        new_parent.entries[new_name] = ino
        dirs = {parent.ino, new_parent.ino} | ({ino} if node.is_dir else set())
        self.pending.append(
            PendingOp(
                "rename", frozenset(dirs), ino, parent.ino, name, new_parent.ino, new_name, replaced
            )
        )

    def _is_inside(self, directory: Node, ancestor: Node) -> bool:
        """Is `directory` the ancestor or below it (volatile namespace)?"""
        wanted = {ancestor.ino}
        frontier = [ancestor]
        while frontier:
            current = frontier.pop()
            for child in current.entries.values():
                if self.nodes[child].is_dir and child not in wanted:
                    wanted.add(child)
                    frontier.append(self.nodes[child])
        return directory.ino in wanted

    def _forget_pages(self, node: Node) -> None:
        if node.opens == 0 and node.nlink == 0:
            node.pages.clear()

    def release(self, node: Node) -> None:
        """The last reference of an open file went away."""
        node.opens = max(0, node.opens - 1)
        self._forget_pages(node)

    # -- durability of names --------------------------------------------------------------

    def commit_dir(self, directory: Node) -> None:
        """fsync of a directory: its pending changes and what they depend on become durable."""
        self.counters.dir_fsyncs += 1
        involved = {directory.ino}
        chosen: list[int] = []
        for position in range(len(self.pending) - 1, -1, -1):
            op = self.pending[position]
            if op.dirs & involved:
                chosen.append(position)
                involved |= op.dirs
        if not chosen:
            return
        chosen.reverse()
        touched: set[Path] = set()
        for position in chosen:
            touched |= self._apply(self.pending[position])
        keep = set(range(len(self.pending))) - set(chosen)
        self.pending = [op for i, op in enumerate(self.pending) if i in keep]
        for path in touched:
            _fsync_dir(path)

    def commit_all(self) -> None:
        """A clean unmount: every pending change and all data become durable."""
        for node in list(self.nodes.values()):
            if not node.is_dir and node.dirty and (node.nlink or node.opens):
                self.fsync_file(node)
        touched: set[Path] = set()
        for op in self.pending:
            touched |= self._apply(op)
        self.pending = []
        for path in touched:
            _fsync_dir(path)

    def _apply(self, op: PendingOp) -> set[Path]:
        node = self.nodes[op.ino]
        parent_path = self.durable_path(self.nodes[op.parent])
        if op.kind == "create":
            target = parent_path / op.name
            if node.orphan is not None:
                os.rename(node.orphan, target)
                node.orphan = None
            else:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                os.close(fd)
                node.durable_size = 0
            os.chmod(target, node.mode)
            node.dparent, node.dname = op.parent, op.name
            return {parent_path}
        if op.kind == "mkdir":
            os.mkdir(parent_path / op.name, node.mode)
            node.dparent, node.dname = op.parent, op.name
            return {parent_path}
        if op.kind in ("unlink", "rmdir"):
            self._detach(node, parent_path / op.name)
            return {parent_path}
        new_parent_path = self.durable_path(self.nodes[op.new_parent])
        if op.replaced is not None:
            replaced = self.nodes[op.replaced]
            if replaced.dparent is not None:
                self._detach(replaced, new_parent_path / op.new_name, keep_name=True)
        os.rename(parent_path / op.name, new_parent_path / op.new_name)
        node.dparent, node.dname = op.new_parent, op.new_name
        return {parent_path, new_parent_path}

    def _detach(self, node: Node, path: Path, keep_name: bool = False) -> None:
        """A durable name goes away; data still readable through open handles is kept."""
        node.dparent = node.dname = None
        if node.is_dir:
            if not keep_name:
                os.rmdir(path)
            return
        if node.opens or node.nlink:
            node.orphan = self.orphans / f"{node.ino}"
            os.rename(path, node.orphan)
        elif not keep_name:
            os.unlink(path)


def _close(node: Node) -> None:
    if node.fd is not None:
        try:
            os.close(node.fd)
        except OSError:
            pass
        node.fd = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
