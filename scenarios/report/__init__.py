"""Run results and their forms: JSON, JUnit XML and a self-contained HTML report."""

from scenarios.report.html import render_html_report, write_html_report
from scenarios.report.results import (
    RunSummary,
    ScenarioResult,
    read_results_json,
    write_junit_xml,
    write_results_json,
)
from scenarios.report.series import PlotSeries, series_from_history

__all__ = [
    "PlotSeries",
    "RunSummary",
    "ScenarioResult",
    "read_results_json",
    "render_html_report",
    "series_from_history",
    "write_html_report",
    "write_junit_xml",
    "write_results_json",
]
