"""Can this machine mount the forgetful filesystem? One line saying why not."""

from __future__ import annotations

import ctypes.util
import os
import shutil


def unavailable_reason() -> str | None:
    """None when FUSE works here; otherwise one line naming what is missing."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse (load the fuse module, or give the container --device /dev/fuse)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by this user"
    if shutil.which("fusermount3") is None:
        return "fusermount3 not found (apt-get install fuse3; scripts/bootstrap does it as root)"
    if ctypes.util.find_library("fuse3") is None:
        return "libfuse3 not found (apt-get install fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"the mfusepy binding cannot load: {exc} (scripts/bootstrap installs it)"
    return None
