"""What each stack provider can do: checked before a run starts anything.

local can do everything. docker signals Redis and PostgreSQL (docker kill / pause) and
runs Redis without AOF, but has no forgetful disks (power cuts, disk faults) and keeps
appendfsync always. external cannot touch processes. A stack option this module
does not know (a new one) is assumed to need the local stack until listed here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scenarios.faults import DISK_KINDS, PROCESS_KINDS
from scenarios.run.scenario import Scenario

SIGNALLED_SERVICES = ("redis", "postgres")
DISK_FAULTS = ("powercut", *DISK_KINDS)  # the local stack's forgetful (FUSE) disks
# options applied over the stack's URLs or beside it, whatever the provider
ANYWHERE = frozenset({"redis_proxy_per_instance", "redis_config", "prometheus"})


@dataclass(frozen=True)
class ProviderSupport:
    """Process faults on Redis/PostgreSQL, and the scenario stack options it honours."""

    signals: bool
    stack_options: frozenset[str] | None  # None: every option
    disks: bool = False


SUPPORT = {
    "local": ProviderSupport(signals=True, stack_options=None, disks=True),
    "docker": ProviderSupport(signals=True, stack_options=ANYWHERE | {"redis_aof"}),
    "external": ProviderSupport(signals=False, stack_options=ANYWHERE),
}


def _used_options(scenario: Scenario) -> list[str]:
    """Stack options that change something (redis_aof only when false: true is the default)."""
    used = []
    for key, value in scenario.stack.items():
        if key == "redis_aof":
            if value is False:
                used.append(key)
        elif key == "redis_appendfsync":
            if value != "always":
                used.append(key)
        elif value:
            used.append(key)
    return sorted(used)


def why_not(scenario: Scenario, provider: str) -> str | None:
    """None when `provider` can run `scenario`, else why not (one line)."""
    support = SUPPORT.get(provider)
    if support is None:
        return None  # an unknown provider fails later with its own message
    if not support.signals:
        signalled = sorted(
            {
                f.fault.name
                for f in scenario.faults
                if f.fault.kind in PROCESS_KINDS and f.fault.target in SIGNALLED_SERVICES
            }
        )
        if signalled:
            return f"the {provider} stack cannot signal processes ({', '.join(signalled)})"
    if not support.disks:
        cuts = sorted({f.fault.name for f in scenario.faults if f.fault.kind in DISK_FAULTS})
        if cuts:
            return f"the {provider} stack has no forgetful disks ({', '.join(cuts)})"
    if support.stack_options is not None:
        unsupported = [o for o in _used_options(scenario) if o not in support.stack_options]
        if unsupported:
            return f"the {provider} stack cannot provide {', '.join(unsupported)}"
    return None


def refusals(scenarios: Iterable[Scenario], provider: str) -> dict[str, str]:
    """Scenario name -> why `provider` cannot run it, for each one it cannot."""
    found = {s.name: why_not(s, provider) for s in scenarios}
    return {name: why for name, why in found.items() if why}
