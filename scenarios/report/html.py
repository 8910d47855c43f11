"""The self-contained HTML report: one file, inline CSS and SVG, no script, no URL.

Verdicts and thresholds come first; then, per scenario: latency over time with fault
windows shaded, the breaker/health state band, throughput, the audit loss table, the
per-phase percentiles and the target's log excerpt. Everything is autoescaped; the SVG
is built (and escaped) in `scenarios.report.svg`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from scenarios.checkers.phases import PHASES
from scenarios.history import JSON, FaultWindow, History
from scenarios.report.breakers import BreakerRow, breaker_rows
from scenarios.report.findings import Finding, findings
from scenarios.report.results import RunSummary, ScenarioResult
from scenarios.report.series import PlotSeries, series_from_history
from scenarios.report.svg import latency_svg, state_band_svg, throughput_svg

TEMPLATES = Path(__file__).with_name("templates")
TEMPLATE = "report.html"
DASH = "\u2013"


@dataclass(frozen=True)
class ScenarioView:
    """What the template shows for one scenario."""

    result: ScenarioResult
    anchor: str
    windows: tuple[FaultWindow, ...]
    series: PlotSeries | None
    plots: Mapping[str, Markup] = field(default_factory=dict)
    phases: tuple[Mapping[str, JSON], ...] = ()
    audit: Mapping[str, JSON] | None = None
    findings: tuple[Finding, ...] = ()
    breakers: tuple[BreakerRow, ...] = ()


def render_html_report(summary: RunSummary, histories: Mapping[str, History] | None = None) -> str:
    """The report as a string; a scenario's history (if given) wins over its stored series."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["secs"] = fmt_secs
    env.filters["ms"] = fmt_ms
    env.filters["thresholds"] = fmt_thresholds
    views = [_view(i, r, (histories or {}).get(r.name)) for i, r in enumerate(summary.scenarios)]
    return env.get_template(TEMPLATE).render(summary=summary, views=views)


def write_html_report(
    path: str | Path, summary: RunSummary, histories: Mapping[str, History] | None = None
) -> Path:
    """Write the report to `path` and return it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html_report(summary, histories), encoding="utf-8")
    return out


def _view(i: int, result: ScenarioResult, history: History | None) -> ScenarioView:
    series = series_from_history(history) if history is not None else result.series
    windows = result.fault_windows or (history.fault_windows() if history else ())
    anchor = f"s{i}-" + re.sub(r"[^A-Za-z0-9_-]+", "-", result.name).strip("-")
    plots: dict[str, Markup] = {}
    phases: list[Mapping[str, JSON]] = []
    if series is not None:
        duration = max([series.duration] + [w.end or w.start for w in windows])
        plots = {
            "latency": Markup(latency_svg(series.latency, windows, duration)),
            "band": Markup(state_band_svg(series.breaker, series.health, windows, duration)),
            "throughput": Markup(throughput_svg(series.throughput, windows, duration)),
        }
        phases = [
            series.phases[p]
            for p in PHASES
            if isinstance(series.phases.get(p), dict) and series.phases[p].get("ops")
        ]
    audit = next((c.details for c in result.checks if "by_path" in c.details), None)
    return ScenarioView(
        result,
        anchor,
        tuple(windows),
        series,
        plots,
        tuple(phases),
        audit,
        tuple(findings(result.checks)),
        tuple(breaker_rows(result.checks)),
    )


def fmt_secs(value: JSON) -> str:
    """Seconds with two decimals, or a dash."""
    return DASH if value is None else f"{float(value):.2f} s"


def fmt_ms(value: JSON) -> str:
    """Seconds shown as milliseconds, or a dash."""
    return DASH if value is None else f"{float(value) * 1000:.1f} ms"


def fmt_thresholds(value: JSON) -> str:
    """`k=v, k=v` with unset (None) thresholds left out; nested mappings as `k: (...)`."""
    if isinstance(value, Mapping):
        parts = []
        for k, v in value.items():
            if v is None:
                continue
            if isinstance(v, Mapping):
                inner = fmt_thresholds(v)
                if inner:
                    parts.append(f"{k}: ({inner})")
            else:
                parts.append(f"{k}={fmt_thresholds(v)}")
        return ", ".join(parts)
    if isinstance(value, list | tuple | set | frozenset):
        return "{" + ", ".join(fmt_thresholds(v) for v in value) + "}"
    return str(value)
