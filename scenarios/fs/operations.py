"""The FUSE callbacks (mfusepy): paths and handles mapped onto the volatile state, one lock."""

from __future__ import annotations

import errno
import itertools
import os
import random
import stat
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mfusepy

from scenarios.fs.disk_faults import DiskFaults
from scenarios.fs.state import Node, VolatileState


class HandleAwareFUSE(mfusepy.FUSE):  # type: ignore[misc]
    """mfusepy's FUSE, passing the file handle of ftruncate/fchmod (it drops it under fuse3).

    Without it an ftruncate through a handle from before a power cut would resolve the
    path and truncate the new file.
    """

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        fh = fip.contents.fh if fip else None
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        result: int = self.operations.truncate(decoded, length, fh)
        return result

    def chmod_fuse_3(self, path: bytes | None, mode: int, fip: Any) -> int:
        fh = fip.contents.fh if fip else None
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        result: int = self.operations.chmod(decoded, mode, fh)
        return result


class ForgetfulOperations(mfusepy.Operations):  # type: ignore[misc]
    """Passthrough with a page cache that a power cut empties."""

    use_ns = True

    def __init__(self, backing: Path, orphans: Path, seed: int = 0) -> None:
        self._mutex = threading.Lock()
        self.state = VolatileState(backing, orphans)
        self.faults = DiskFaults()
        self.generation = 0
        self._rng = random.Random(seed)
        self._handles: dict[int, tuple[int, int]] = {}
        self._next_fh = itertools.count(1)
        self._armed: tuple[int, bool, int | None, bool] | None = None

    # -- control (called by the control server) -------------------------------------------

    def power_cut(
        self, tear: bool = False, seed: int | None = None, halt: bool = False
    ) -> dict[str, Any]:
        """Drop everything not durable; optionally tear the last unsynced write.

        `halt` leaves the disk failing every change with EIO (the machine is off) until
        the faults are cleared: nothing its writers do after the cut lands.
        """
        with self._mutex:
            return self._cut_locked(tear, seed, halt)

    def arm_cut(
        self, after_writes: int, tear: bool = False, seed: int | None = None, halt: bool = False
    ) -> dict[str, Any]:
        """Cut power right after the `after_writes`-th next write (before any fsync of it)."""
        if after_writes < 1:
            raise ValueError("after_writes must be at least 1")
        with self._mutex:
            self._armed = (after_writes, tear, seed, halt)
            return self.counters_locked()

    def _cut_locked(self, tear: bool, seed: int | None, halt: bool) -> dict[str, Any]:
        rng = random.Random(seed) if seed is not None else self._rng
        tear_at = rng.random() if tear else None
        self.state.power_cut(tear_at)
        self.generation += 1
        self._handles.clear()
        self._armed = None
        if halt:
            self.faults.set("off", True)
        return self.counters_locked()

    def sync_all(self) -> dict[str, Any]:
        """Make everything durable (a clean shutdown)."""
        with self._mutex:
            self.state.commit_all()
            return self.counters_locked()

    def set_fault(self, name: str, on: bool, pattern: str) -> dict[str, Any]:
        """Switch a disk fault on or off ('' with on=False: every fault off)."""
        with self._mutex:
            if not name and not on:
                self.faults.clear()
            else:
                self.faults.set(name, on, pattern)
            return self.counters_locked()

    def counters(self) -> dict[str, Any]:
        """Counters and the faults switched on."""
        with self._mutex:
            return self.counters_locked()

    def counters_locked(self) -> dict[str, Any]:
        data: dict[str, Any] = asdict(self.state.counters)
        data["dirty_bytes"] = self.state.dirty_bytes()
        data["pending_ops"] = len(self.state.pending)
        data["armed_writes_left"] = self._armed[0] if self._armed else None
        data["faults"] = [asdict(fault) for fault in self.faults.active()]
        return data

    # -- helpers ---------------------------------------------------------------------------

    def _node(self, path: str | None, fh: int | None = None) -> Node:
        if fh:
            handle = self._handles.get(fh)
            if handle is None or handle[1] != self.generation:
                raise OSError(errno.EIO, "stale handle (power cut)")
            node = self.state.nodes.get(handle[0])
            if node is None:
                raise OSError(errno.EIO, "stale handle")
            return node
        if path is None:
            raise OSError(errno.ESTALE, "no path")
        return self.state.resolve(path)

    def _open_handle(self, node: Node) -> int:
        fh = next(self._next_fh)
        self._handles[fh] = (node.ino, self.generation)
        node.opens += 1
        return fh

    # -- attributes -----------------------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        with self._mutex:
            node = self._node(path, fh)
            kind = stat.S_IFDIR if node.is_dir else stat.S_IFREG
            return {
                "st_mode": kind | node.mode,
                "st_nlink": max(node.nlink, 1) if not node.is_dir else 2,
                "st_size": node.size if not node.is_dir else 4096,
                "st_uid": node.uid,
                "st_gid": node.gid,
                "st_mtime": node.mtime_ns,
                "st_ctime": node.mtime_ns,
                "st_atime": node.mtime_ns,
                "st_blocks": (node.size + 511) // 512,
            }

    def chmod(self, path: str | None, mode: int, fh: int | None = None) -> int:
        with self._mutex:
            node = self._node(path, fh)
            self.faults.check("chmod", path)
            node.mode = stat.S_IMODE(mode)
            store = self.state.store_path(node) if not node.is_dir or node.dparent else None
            if store is not None:
                os.chmod(store, node.mode)  # metadata is not modelled: applied at once
            return 0

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        with self._mutex:
            node = self._node(path)
            if uid != -1 and uid != 0xFFFFFFFF:
                node.uid = uid
            if gid != -1 and gid != 0xFFFFFFFF:
                node.gid = gid
            return 0

    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        with self._mutex:
            node = self._node(path)
            node.mtime_ns = times[1] if times else node.mtime_ns
            return 0

    def statfs(self, path: str) -> dict[str, int]:
        info = os.statvfs(self.state.backing)
        keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files")
        result = {key: getattr(info, key) for key in keys}
        result.update(f_ffree=info.f_ffree, f_favail=info.f_favail, f_namemax=info.f_namemax)
        if self.faults.reports_full():
            result.update(f_bfree=0, f_bavail=0)
        return result

    # -- directories ----------------------------------------------------------------------

    def readdir(self, path: str, fh: int) -> list[str]:
        with self._mutex:
            node = self._node(path)
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, path)
            return [".", "..", *sorted(node.entries)]

    def opendir(self, path: str) -> int:
        with self._mutex:
            node = self._node(path)
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, path)
            return self._open_handle(node)

    def releasedir(self, path: str | None, fh: int) -> int:
        with self._mutex:
            handle = self._handles.pop(fh, None)
            if handle is not None and handle[1] == self.generation:
                node = self.state.nodes.get(handle[0])
                if node is not None:
                    node.opens = max(0, node.opens - 1)
            return 0

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        with self._mutex:
            node = self._node(path, fh)
            self.faults.check("fsync", path)
            _as_eio(self.state.commit_dir, node)
            return 0

    def mkdir(self, path: str, mode: int) -> int:
        with self._mutex:
            self.faults.check("create", path)
            parent, name = self.state.parent_of(path)
            self.state.create(parent, name, stat.S_IMODE(mode), is_dir=True)
            return 0

    def rmdir(self, path: str) -> int:
        with self._mutex:
            self.faults.check("remove", path)
            parent, name = self.state.parent_of(path)
            self.state.remove(parent, name, is_dir=True)
            return 0

    def unlink(self, path: str) -> int:
        with self._mutex:
            self.faults.check("remove", path)
            parent, name = self.state.parent_of(path)
            self.state.remove(parent, name, is_dir=False)
            return 0

    def rename(self, old: str, new: str) -> int:
        with self._mutex:
            self.faults.check("rename", new)
            parent, name = self.state.parent_of(old)
            new_parent, new_name = self.state.parent_of(new)
            self.state.rename(parent, name, new_parent, new_name)
            return 0

    # -- files ------------------------------------------------------------------------------

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        with self._mutex:
            self.faults.check("create", path)
            parent, name = self.state.parent_of(path)
            existing = parent.entries.get(name)
            if existing is not None:
                if flags & os.O_EXCL:
                    raise OSError(errno.EEXIST, path)
                return self._open_existing(self.state.nodes[existing], path, flags)
            node = self.state.create(parent, name, stat.S_IMODE(mode), is_dir=False)
            return self._open_handle(node)

    def open(self, path: str, flags: int) -> int:
        with self._mutex:
            node = self._node(path)
            if node.is_dir:
                raise OSError(errno.EISDIR, path)
            return self._open_existing(node, path, flags)

    def _open_existing(self, node: Node, path: str, flags: int) -> int:
        """Open a file that exists; O_TRUNC empties it first (an unsynced change, like a
        write: the kernel passes O_TRUNC here instead of a separate truncate)."""
        if flags & os.O_TRUNC:
            self.faults.check("truncate", path)
            self.state.truncate(node, 0)
        return self._open_handle(node)

    def release(self, path: str | None, fh: int) -> int:
        with self._mutex:
            handle = self._handles.pop(fh, None)
            if handle is not None and handle[1] == self.generation:
                node = self.state.nodes.get(handle[0])
                if node is not None:
                    self.state.release(node)
            return 0

    def flush(self, path: str | None, fh: int) -> int:
        return 0

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        with self._mutex:
            return self.state.read(self._node(path, fh), offset, size)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        with self._mutex:
            node = self._node(path, fh)
            self.faults.check("write", path)
            self.state.write(node, offset, data)
            if self._armed is not None:
                left, tear, seed, halt = self._armed
                self._armed = (left - 1, tear, seed, halt)
                if left <= 1:
                    self._cut_locked(tear, seed, halt)
            return len(data)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        with self._mutex:
            node = self._node(path, fh)
            self.faults.check("truncate", path)
            if node.is_dir:
                raise OSError(errno.EISDIR, path or "")
            self.state.truncate(node, length)
            return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        with self._mutex:
            node = self._node(path, fh)
            self.faults.check("fsync", path)
            _as_eio(self.state.fsync_file, node)
            return 0

    # -- life cycle -------------------------------------------------------------------------

    def destroy(self, path: str) -> None:
        """A clean unmount writes everything back, as umount(8) would."""
        try:
            self.sync_all()
        except OSError:
            pass

    def init_with_config(self, conn_info: Any, config_3: Any) -> None:
        """No kernel caching: after a cut the kernel must ask again."""
        if config_3 is not None:
            config_3.entry_timeout = 0.0
            config_3.negative_timeout = 0.0
            config_3.attr_timeout = 0.0
            config_3.hard_remove = 1
            config_3.direct_io = 1


def _as_eio(step: Callable[[Node], None], node: Node) -> None:
    """Run a durability step; a bug in it is EIO, never mfusepy's default EINVAL (which a
    caller may tolerate, as the journal does for a directory fsync)."""
    try:
        step(node)
    except OSError:
        raise
    except Exception as exc:
        raise OSError(errno.EIO, f"forgetful fs: {type(exc).__name__}: {exc}") from exc
