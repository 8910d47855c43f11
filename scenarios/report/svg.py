"""Inline SVG plots (no JavaScript, no external resources) sharing one time axis.

Each plot is an `<svg class="plot KIND">` with fault windows drawn as `rect.fault`;
colours come from the report's CSS classes, so the markup stays small.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from scenarios.history import FaultWindow
from scenarios.report.series import LatencyPoint, StatePoint, ThroughputBucket

WIDTH = 960
LEFT, RIGHT, TOP, BOTTOM = 96, 16, 36, 30
LEGEND_Y = 4
NICE_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
MIN_LATENCY = 1e-4
BAND_ROW = 22


@dataclass(frozen=True)
class TimeAxis:
    """Maps run time (s) onto the plot's x pixels."""

    duration: float
    width: int = WIDTH

    @property
    def span(self) -> float:
        """The seconds the axis covers (at least a positive span)."""
        return self.duration if self.duration > 0 else 1.0

    def x(self, t: float) -> float:
        """The x coordinate of time `t`, clamped to the axis."""
        inner = self.width - LEFT - RIGHT
        return LEFT + inner * min(max(t, 0.0), self.span) / self.span

    def ticks(self, max_ticks: int = 10) -> list[float]:
        """Tick times at a round step, at most about `max_ticks` of them."""
        step = next((s for s in NICE_STEPS if self.span / s <= max_ticks), NICE_STEPS[-1])
        return [i * step for i in range(int(self.span / step) + 1)]


def fmt_seconds(value: float) -> str:
    """A latency for humans: 0.1ms, 12ms, 1.5s."""
    if value >= 1:
        return f"{value:g}s"
    ms = value * 1000
    return f"{ms:g}ms" if ms >= 1 else f"{ms:.1g}ms"


def _svg(kind: str, height: int, body: list[str], title: str) -> str:
    return (
        f'<svg class="plot {kind}" role="img" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}"><title>{escape(title)}</title>' + "".join(body) + "</svg>"
    )


def _windows(
    axis: TimeAxis, windows: Sequence[FaultWindow], top: float, bottom: float, label: bool = True
) -> list[str]:
    out = []
    for w in windows:
        x0 = axis.x(w.start)
        x1 = axis.x(axis.span if w.end is None else w.end)
        end = "never healed" if w.end is None else f"{w.end:.1f}s"
        tip = f"{w.name} ({w.target}, {w.kind}) {w.start:.1f}s - {end}"
        out.append(
            f'<rect class="fault" x="{x0:.1f}" y="{top:.1f}" width="{max(x1 - x0, 1):.1f}" '
            f'height="{bottom - top:.1f}"><title>{escape(tip)}</title></rect>'
        )
        if label:
            out.append(
                f'<text class="fault-label" x="{x0 + 3:.1f}" y="{top - 5:.1f}">'
                f"{escape(w.name)}</text>"
            )
    return out


def _x_axis(axis: TimeAxis, bottom: float, top: float) -> list[str]:
    out = [f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}"/>']
    for t in axis.ticks():
        x = axis.x(t)
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{bottom + 14}" text-anchor="middle">{t:g}s</text>'
        )
    return out


def latency_svg(
    points: Sequence[LatencyPoint],
    windows: Sequence[FaultWindow],
    duration: float,
    height: int = 280,
) -> str:
    """Latency of each operation against its start time, log scale, faults shaded."""
    axis = TimeAxis(duration)
    top, bottom = TOP, height - BOTTOM
    lats = [max(lat, MIN_LATENCY) for _, lat, _ in points] or [MIN_LATENCY, 1.0]
    lo = math.floor(math.log10(min(lats)))
    hi = max(math.ceil(math.log10(max(lats))), lo + 1)

    def y(lat: float) -> float:
        frac = (math.log10(max(lat, MIN_LATENCY)) - lo) / (hi - lo)
        return bottom - frac * (bottom - top)

    body = _windows(axis, windows, top, bottom) + _x_axis(axis, bottom, top)
    for decade in range(lo, hi + 1):
        yy = y(10.0**decade)
        body.append(
            f'<line class="grid" x1="{LEFT}" y1="{yy:.1f}" x2="{WIDTH - RIGHT}" y2="{yy:.1f}"/>'
        )
        body.append(
            f'<text class="tick" x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">'
            f"{fmt_seconds(10.0**decade)}</text>"
        )
    for outcome in ("ok", "fail", "info"):
        d = "".join(f"M{axis.x(t):.1f} {y(lat):.1f}h0" for t, lat, o in points if o == outcome)
        if d:
            body.append(f'<path class="points {outcome}" d="{d}"/>')
    body.append(
        _legend(
            [("ok", "ok"), ("fail", "fail"), ("info", "unknown (info)"), ("fault", "fault window")]
        )
    )
    if not points:
        body.append(_empty(height))
    return _svg("latency", height, body, "Operation latency over time")


def throughput_svg(
    buckets: Sequence[ThroughputBucket],
    windows: Sequence[FaultWindow],
    duration: float,
    height: int = 200,
) -> str:
    """Completions per second, ok stacked under not-ok, faults shaded."""
    axis = TimeAxis(duration)
    top, bottom = TOP, height - BOTTOM
    peak = max((ok + bad for _, ok, bad in buckets), default=0) or 1
    scale = (bottom - top) / peak
    bar = max(axis.x(1.0) - axis.x(0.0) - 0.5, 0.5)
    body = _windows(axis, windows, top, bottom) + _x_axis(axis, bottom, top)
    for frac in (0.5, 1.0):
        yy = bottom - frac * peak * scale
        body.append(
            f'<line class="grid" x1="{LEFT}" y1="{yy:.1f}" x2="{WIDTH - RIGHT}" y2="{yy:.1f}"/>'
        )
        body.append(
            f'<text class="tick" x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">'
            f"{frac * peak:g}/s</text>"
        )
    ok_d, bad_d = [], []
    for second, ok, bad in buckets:
        x = axis.x(second)
        if ok:
            ok_d.append(f"M{x:.1f} {bottom:.1f}h{bar:.1f}v{-ok * scale:.1f}h{-bar:.1f}z")
        if bad:
            y0 = bottom - ok * scale
            bad_d.append(f"M{x:.1f} {y0:.1f}h{bar:.1f}v{-bad * scale:.1f}h{-bar:.1f}z")
    if ok_d:
        body.append(f'<path class="bars ok" d="{"".join(ok_d)}"/>')
    if bad_d:
        body.append(f'<path class="bars fail" d="{"".join(bad_d)}"/>')
    body.append(_legend([("ok", "ok per second"), ("fail", "fail / unknown per second")]))
    if not buckets:
        body.append(_empty(height))
    return _svg("throughput", height, body, "Throughput (completions per second)")


def state_band_svg(
    breaker: Mapping[str, Sequence[StatePoint]],
    health: Sequence[StatePoint],
    windows: Sequence[FaultWindow],
    duration: float,
) -> str:
    """One row per instance's breaker state, and one for reported health, over time."""
    rows: list[tuple[str, Sequence[StatePoint]]] = [
        (f"breaker {name}" if len(breaker) > 1 else "breaker", changes)
        for name, changes in sorted(breaker.items())
    ]
    rows.append(("health", health))
    axis = TimeAxis(duration)
    top = TOP
    bottom = top + BAND_ROW * len(rows)
    height = bottom + BOTTOM
    body: list[str] = _x_axis(axis, bottom, top)
    for i, (label, changes) in enumerate(rows):
        y = top + i * BAND_ROW
        body.append(
            f'<text class="row-label" x="{LEFT - 6}" y="{y + 15}" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        for j, (t, state) in enumerate(changes):
            end = changes[j + 1][0] if j + 1 < len(changes) else axis.span
            x0, x1 = axis.x(t), axis.x(end)
            cls = "state-" + state.lower().replace("_", "-")
            body.append(
                f'<rect class="seg {escape(cls)}" x="{x0:.1f}" y="{y + 2}" '
                f'width="{max(x1 - x0, 1):.1f}" height="{BAND_ROW - 4}">'
                f"<title>{escape(f'{label}: {state} from {t:.1f}s')}</title></rect>"
            )
    body += [
        s.replace('class="fault"', 'class="fault outline"')
        for s in _windows(axis, windows, top, bottom, label=False)
    ]
    body.append(
        _legend(
            [
                ("state-closed", "CLOSED / HEALTHY"),
                ("state-half-open", "HALF_OPEN / DEGRADED"),
                ("state-open", "OPEN / UNHEALTHY"),
            ]
        )
    )
    return _svg("breaker-band", height, body, "Breaker state and reported health")


def _legend(items: list[tuple[str, str]]) -> str:
    out = ['<g class="legend">']
    x = WIDTH - RIGHT - 170 * len(items)
    for cls, label in items:
        out.append(
            f'<rect class="swatch {cls}" x="{x}" y="{LEGEND_Y}" width="10" height="10"/>'
            f'<text x="{x + 14}" y="{LEGEND_Y + 9}">{escape(label)}</text>'
        )
        x += 170
    return "".join(out) + "</g>"


def _empty(height: int) -> str:
    return (
        f'<text class="empty" x="{WIDTH / 2}" y="{height / 2}" text-anchor="middle">no data</text>'
    )
