"""The runner's side of a scenario with Prometheus: point Prometheus at the scenario's
targets before the workload starts, and after healing read back which alerts fired when.

`collect_alerts` first waits (bounded by `resolve_within_s` after healing) until none of the
alerts the scenario expects is active any more, so that "resolved after" can be judged,
then reads the `ALERTS` series over the whole run with one range query. A Prometheus that
does not answer gives a timeline with `error` set: the checker then says "insufficient
evidence", never PASS.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from scenarios.checkers.prometheus import AlertTimeline, timeline_from_alerts
from scenarios.stack.prometheus import PrometheusError, PrometheusServer

__all__ = ["EXPECTATION", "collect_alerts", "expected_alerts", "watch_targets"]

EXPECTATION = "prometheus_alerts"
SCRAPE_WAIT_S = 15.0
RESOLVE_MARGIN_S = 5.0


def expected_alerts(expect: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], float]:
    """The alerts a scenario expects to resolve in the run (`resolve`, by default all of
    `fire`) and how long they may take to."""
    options = expect.get(EXPECTATION) or {}
    resolve = options.get("resolve", options.get("fire", ()))
    return list(resolve), float(options.get("resolve_within_s", 90.0))


def watch_targets(prometheus: PrometheusServer, urls: Sequence[str], scenario: str) -> None:
    """Scrape exactly `urls` (labelled with the scenario) and wait for a first scrape."""
    prometheus.set_targets(urls, {"scenario": scenario})
    prometheus.wait_scraped(urls, SCRAPE_WAIT_S)


def instances_selector(urls: Sequence[str]) -> str:
    """A PromQL selector of the `ALERTS` of these targets only (their `instance` labels):
    an alert of an earlier run on the same Prometheus (a minute-window rule still firing)
    must not count in this one."""
    hosts = sorted(re.escape(url.split("://", 1)[-1].rstrip("/")) for url in urls)
    pattern = "|".join(hosts).replace("\\", "\\\\").replace('"', '\\"')
    return f'ALERTS{{instance=~"{pattern}"}}'


def collect_alerts(
    prometheus: PrometheusServer,
    *,
    wall_t0: float,
    healed_wall: float,
    fire: Sequence[str],
    resolve_within_s: float,
    urls: Sequence[str],
) -> AlertTimeline:
    """Which alerts fired when, from `wall_t0` until now (after the expected ones resolved
    or `resolve_within_s` after `healed_wall` passed), for the targets at `urls` only."""
    wanted = {url.split("://", 1)[-1].rstrip("/") for url in urls}
    step = prometheus.config.evaluation_interval_s
    started = time.monotonic()
    try:
        deadline = healed_wall + resolve_within_s + RESOLVE_MARGIN_S
        while time.time() < deadline:
            active = {
                str(a["labels"].get("alertname"))
                for a in prometheus.alerts()
                if a["labels"].get("instance") in wanted
            }
            if not active & set(fire):
                break
            time.sleep(step)
        time.sleep(2 * step)  # the next evaluation writes the resolved alert's stale marker
        now = time.time()
        series = prometheus.query_range(instances_selector(urls), wall_t0, now, step)
    except PrometheusError as exc:
        return AlertTimeline({}, step, 0.0, wall_t0, error=str(exc))
    timeline = timeline_from_alerts(
        ((s.labels, s.samples) for s in series),
        wall_t0=wall_t0,
        step_s=step,
        observed_until_wall=now,
    )
    return replace(timeline, waited_s=time.monotonic() - started)
