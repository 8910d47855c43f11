"""The load run's settings: `LoadOptions` (built from the command line), the variants."""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from scenarios.load.stats import Thresholds
from scenarios.target import DEFAULT_COMMAND

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LOCUSTFILE = REPO_ROOT / "locustfiles" / "contract.py"
VARIANTS: dict[str, tuple[str, ...]] = {
    "reference": DEFAULT_COMMAND,
    "naive": (sys.executable, "-m", "scenarios.variants.naive"),
}
LOAD_ENV_OVERRIDES = {"CACHE_L1_TTL": "2"}
"""On top of the catalogue's target settings: a 2-s L1 so reads keep reaching Redis (L2).
With a small id set and the default 300-s L1, every read would be an L1 hit and a Redis
fault would never touch the read path; a short L1 stands in for a key space larger than L1."""


@dataclass(frozen=True)
class LoadOptions:
    """Everything one `stormproof load` run needs, built from the command line."""

    fault: str = "redis-blackhole"
    users: int = 20
    duration_s: float = 60.0
    workers: int = 0
    report_dir: Path = Path("reports")
    variants: tuple[str, ...] = ("reference",)
    user_rps: float = 10.0
    warmup_s: float = 2.0
    request_timeout_s: float = 5.0
    settle_s: float = 30.0
    provider: str = "local"
    ids: int = 20
    locustfile: Path = DEFAULT_LOCUSTFILE
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def phases(self) -> tuple[float, float, float]:
        """Seconds of baseline, fault and recovery (equal thirds of the duration)."""
        third = self.duration_s / 3
        return third, third, third


def target_env() -> dict[str, str]:
    """The catalogue's default target settings plus the load's overrides."""
    text = resources.files("scenarios.run").joinpath("catalogue.toml").read_text()
    defaults = tomllib.loads(text).get("defaults", {}).get("target_env", {})
    return {**{str(k): str(v) for k, v in defaults.items()}, **LOAD_ENV_OVERRIDES}


def say(text: str) -> None:
    """A progress line on stderr."""
    print(f"[load] {text}", file=sys.stderr, flush=True)
