"""The forgetful filesystem in the foreground: python -m scenarios.fs BACKING MOUNT --control S.

It unmounts on SIGTERM, SIGINT and SIGHUP (libfuse's handlers) and when its parent dies
(PR_SET_PDEATHSIG: SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Mount, serve the control socket, block until unmounted."""
    parser = argparse.ArgumentParser(prog="python -m scenarios.fs", description=__doc__)
    parser.add_argument("backing", type=Path, help="the directory holding what is durable")
    parser.add_argument("mountpoint", type=Path, help="where to mount")
    parser.add_argument("--control", type=Path, required=True, help="control unix socket path")
    parser.add_argument("--state", type=Path, required=True, help="scratch dir (orphan data)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the torn-write byte")
    args = parser.parse_args(argv)
    _die_with_parent()
    logging.basicConfig(level=logging.WARNING, format="fs: %(levelname)s %(message)s")

    from scenarios.fs.availability import unavailable_reason

    reason = unavailable_reason()
    if reason:
        print(f"fs: cannot mount: {reason}", file=sys.stderr)
        return 2
    for directory in (args.backing, args.mountpoint, args.state):
        if not directory.is_dir():
            print(f"fs: not a directory: {directory}", file=sys.stderr)
            return 2

    from scenarios.fs.control import ControlServer
    from scenarios.fs.operations import ForgetfulOperations, HandleAwareFUSE

    operations = ForgetfulOperations(args.backing.resolve(), args.state / "orphans", args.seed)
    server = ControlServer(args.control, operations)
    server.start()
    options: dict[str, object] = {"fsname": "stormproof-fs", "subtype": "stormproof"}
    if os.geteuid() == 0:
        options.update(allow_other=True, default_permissions=True)
    try:
        HandleAwareFUSE(operations, str(args.mountpoint), foreground=True, **options)
    except RuntimeError as exc:  # fuse_main's status: 8 after a signal-initiated unmount
        print(f"fs: unmounted ({exc})", file=sys.stderr)
    finally:
        server.stop()
        if args.control.parent.name.startswith("stormproof-fs-"):  # ForgetfulMount's temp dir
            with contextlib.suppress(OSError):
                args.control.parent.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
