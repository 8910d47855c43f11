"""The HMAC chain's anchor: the last replayed segment's sequence and last MAC.

The recovery job deletes segments once replayed, so without an anchor the oldest
remaining segment would be trusted as the chain's start: deleting the oldest unreplayed
segments (or dropping in a forged "older" one) would go unseen. After replaying a segment
recovery records its sequence and last MAC in ``chain.anchor`` (replaced atomically, kept
when the journal is empty); the next segment must then carry that sequence + 1 and that
MAC as its `prev_mac`. The writer resumes from the anchor too when recovery removed every
segment, so a restarted writer continues the chain (and the numbering: a sequence whose
name is already in ``quarantine/`` is never reused).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from reference.audit._fs import atomic_replace

__all__ = ["ANCHOR_FILE", "ChainAnchor", "highest_quarantined", "read_anchor", "write_anchor"]

ANCHOR_FILE = "chain.anchor"
_log = logging.getLogger(__name__)
_QUARANTINED = re.compile(r"^seg-(\d{8,})\.journal")


@dataclass(frozen=True)
class ChainAnchor:
    """The last replayed segment's sequence and its last MAC (zeros without a key)."""

    sequence: int
    mac: bytes


def read_anchor(directory: Path) -> ChainAnchor | None:
    """The anchor, or None when absent or unreadable (logged)."""
    path = directory / ANCHOR_FILE
    try:
        data = json.loads(path.read_bytes())
        return ChainAnchor(int(data["sequence"]), bytes.fromhex(str(data["mac"])))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _log.warning("journal: ignoring unreadable chain anchor %s: %s", path, exc)
        return None


def write_anchor(directory: Path, anchor: ChainAnchor) -> None:
    """Atomically replace the anchor; durable when this returns."""
    data = json.dumps({"sequence": anchor.sequence, "mac": anchor.mac.hex()}).encode()
    atomic_replace(directory / ANCHOR_FILE, data)


def highest_quarantined(directory: Path) -> int:
    """The highest segment sequence named in ``quarantine/`` (0 when none)."""
    try:
        names = [p.name for p in (directory / "quarantine").iterdir()]
    except OSError:
        return 0
    found = [int(m.group(1)) for n in names if (m := _QUARANTINED.match(n))]
    return max(found, default=0)
