"""A generated schedule as data: its faults, how many target instances, the workload seed.

`GeneratedSchedule` is what a property run draws, runs, shrinks and prints. Its JSON is
the `--schedule` format of `stormproof run`, and `replay_command` is the whole command
that reruns it (same faults, same instances, same workload seed).

Validity (`problems`): every fault lies inside the run, and no two faults on one
*resource* overlap in time. A resource is a proxy for network faults (two toxics or a
toxic and a `down` on one proxy at once would fight over it) and a process for process
faults (a SIGSTOP on a process already SIGKILLed means nothing; a SIGKILLed process is
busy until it has restarted, `RESTART_S` after its fault ends). Faults on different
resources may overlap freely: a Redis outage during a PostgreSQL one is the point.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from scenarios.faults import NETWORK_KINDS, FaultSpec
from scenarios.run.scenario import ScheduledFault, parse_schedule

TAIL_S = 5.0
"""Time after the last fault ends before the workload stops (the run's duration)."""
MAX_INSTANCES = 3
RESTARTED = ("sigkill", "powercut")
RESTART_S = 10.0
"""How long a SIGKILLed process may take to come back after its fault ends (the restart
waits until it is ready); nothing else touches that process meanwhile."""


def resource(spec: FaultSpec) -> tuple[str, str]:
    """What a fault occupies: ("proxy", "redis") or ("process", "postgres") and so on."""
    return ("proxy" if spec.kind in NETWORK_KINDS else "process", spec.target)


def _end(fault: ScheduledFault) -> float:
    return round(fault.at_s + fault.duration_s, 3)


def _busy_until(fault: ScheduledFault) -> float:
    """When its resource is free again: its end, plus the restart after a SIGKILL."""
    return _end(fault) + (RESTART_S if fault.fault.kind in RESTARTED else 0.0)


def _overlap(a: ScheduledFault, b: ScheduledFault) -> bool:
    return a.at_s < _busy_until(b) and b.at_s < _busy_until(a)


def run_length(faults: Sequence[ScheduledFault]) -> float:
    """A schedule's run: until the last fault is over, then the tail. A SIGKILLed process
    is over once it has restarted (`RESTART_S` at most), so the recovery after it is a
    whole tail too, with evidence to judge, not what is left of the tail after the restart."""
    return max((_busy_until(f) for f in faults), default=0.0) + TAIL_S


def separate(faults: Sequence[ScheduledFault], gap_s: float) -> tuple[ScheduledFault, ...]:
    """Faults sorted by start; one that overlaps an earlier fault on its resource starts
    `gap_s` after that fault ends instead (so one proxy sees repeated outages, not a fight)."""
    placed: list[ScheduledFault] = []
    busy_until: dict[tuple[str, str], float] = {}
    for fault in sorted(faults, key=lambda f: (f.at_s, f.fault.target, f.fault.kind)):
        key = resource(fault.fault)
        at_s = fault.at_s
        if key in busy_until and at_s < busy_until[key] + gap_s:
            at_s = round(busy_until[key] + gap_s, 3)
        moved = ScheduledFault(at_s, fault.duration_s, fault.fault)
        busy_until[key] = _busy_until(moved)
        placed.append(moved)
    return tuple(sorted(placed, key=lambda f: f.at_s))


@dataclass(frozen=True)
class GeneratedSchedule:
    """One example of a property run: faults, target instances (1-3), workload seed."""

    faults: tuple[ScheduledFault, ...]
    instances: int = 1
    seed: int = 0

    @property
    def duration_s(self) -> float:
        """The run's length (`run_length`)."""
        return run_length(self.faults)

    def problems(self) -> list[str]:
        """Why this schedule is invalid (empty when it is valid)."""
        found = []
        if not 1 <= self.instances <= MAX_INSTANCES:
            found.append(f"instances {self.instances} not in 1..{MAX_INSTANCES}")
        for fault in self.faults:
            fault.fault.validate()
            if fault.at_s < 0 or fault.duration_s <= 0:
                found.append(f"{fault.fault.name}: bad times {fault.at_s}/{fault.duration_s}")
            if _end(fault) > self.duration_s:
                found.append(f"{fault.fault.name} ends after the run")
        for i, a in enumerate(self.faults):
            for b in self.faults[i + 1 :]:
                if resource(a.fault) == resource(b.fault) and _overlap(a, b):
                    found.append(f"{a.fault.name} and {b.fault.name} overlap on one resource")
        return found

    def schedule_json(self) -> str:
        """The faults in the `--schedule` JSON format (compact, one line)."""
        return json.dumps([f.to_json() for f in self.faults], separators=(",", ":"))

    def to_json(self) -> dict[str, object]:
        """Everything needed to replay it, as JSON data."""
        return {
            "faults": [f.to_json() for f in self.faults],
            "instances": self.instances,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> GeneratedSchedule:
        """The inverse of `to_json`."""
        faults = data["faults"]
        assert isinstance(faults, list)
        return cls(parse_schedule(faults), int(str(data["instances"])), int(str(data["seed"])))

    def replay_command(self, extra: Sequence[str] = ()) -> str:
        """The `stormproof run` command that reruns this example on its own."""
        words = ["stormproof", "run", "--quick", "--schedule", self.schedule_json()]
        words += ["--seed", str(self.seed)]
        if self.instances != 1:
            words += ["--instances", str(self.instances)]
        return shlex.join([*words, *extra])

    def describe(self) -> str:
        """One line: "2 instances: redis-down@3.0+2.0, postgres-latency@4.5+1.0 {...}"."""
        parts = []
        for f in self.faults:
            params = f" {dict(f.fault.params)}" if f.fault.params else ""
            parts.append(f"{f.fault.name}@{f.at_s:g}+{f.duration_s:g}{params}")
        who = f"{self.instances} instance{'s' if self.instances > 1 else ''}"
        return f"{who}, seed {self.seed}: " + (", ".join(parts) or "no faults")
