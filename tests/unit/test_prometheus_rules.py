"""The Prometheus alert rules: `promtool check rules`, `promtool test rules`, and proof that
the unit tests cover every rule (fires, does not fire, resolves) and can fail."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scenarios.pytest_plugin import unavailable

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
TESTS_DIR = ROOT / "deploy" / "prometheus" / "tests"
RUNBOOK = ROOT / "docs" / "runbook.md"
TIMEOUT_S = 60
NEVER = "vector(1) == 0"
"""An expression that never returns a series: the alert can never fire."""
ALWAYS = 'count by (job, instance) ({__name__=~"stormproof_.+"})'
"""An expression true whenever the target exports anything: the alert always fires."""


def promtool() -> str:
    """The promtool binary, or skip (fail when services are required)."""
    found = shutil.which("promtool")
    if found is None:
        unavailable("no promtool on PATH (scripts/bootstrap --test installs Debian's prometheus)")
        raise AssertionError("unreachable: unavailable() skips or fails")
    return found


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """promtool with its stderr (where failures go) interleaved into stdout, in order."""
    return subprocess.run(
        [promtool(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT_S,
        cwd=cwd,
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules(rules: Any) -> Iterator[dict[str, Any]]:
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                yield rule


def unit_test_files() -> list[Path]:
    return sorted(TESTS_DIR.glob("*.yml"))


def alert_names() -> list[str]:
    return [rule["alert"] for rule in alert_rules(load(RULES))]


def test_promtool_check_rules_passes() -> None:
    """`promtool check rules` accepts the file and finds every rule."""
    result = run("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    """`promtool test rules` passes every unit test in deploy/prometheus/tests/."""
    result = run("test", "rules", *map(str, unit_test_files()))
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("SUCCESS") == len(unit_test_files())


def test_every_alert_has_a_summary_a_severity_and_a_runbook_section() -> None:
    """Each alert's runbook_url is docs/runbook.md#<its name>, a heading that exists."""
    headings = {
        slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", RUNBOOK.read_text(), re.MULTILINE)
    }
    for rule in alert_rules(load(RULES)):
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"].strip(), name
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/runbook.md#{name.lower()}", (name, url)
        assert url.partition("#")[2] in headings, f"{name}: no runbook heading for {url}"


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def coverage() -> dict[str, set[str]]:
    """alert -> the kinds of case the unit tests have for it: "fires", "quiet" (a test
    group where it is never expected), "resolves" (expected, then not, later)."""
    kinds: dict[str, set[str]] = {}
    for path in unit_test_files():
        for group in load(path)["tests"]:
            by_alert: dict[str, list[tuple[str, bool]]] = {}
            for case in group.get("alert_rule_test", []):
                firing = bool(case.get("exp_alerts"))
                by_alert.setdefault(case["alertname"], []).append((case["eval_time"], firing))
            for alert, cases in by_alert.items():
                found = kinds.setdefault(alert, set())
                ordered = [firing for _, firing in sorted(cases, key=lambda c: seconds(c[0]))]
                if any(ordered):
                    found.add("fires")
                    first = ordered.index(True)
                    if not all(ordered[first:]):
                        found.add("resolves")
                else:
                    found.add("quiet")
    return kinds


def seconds(duration: str) -> float:
    """A Prometheus duration ("1m30s") in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(int(n) * units[u] for n, u in parts)


def test_every_alert_has_firing_quiet_and_resolving_cases() -> None:
    """The unit tests hold, for every alert, a case where it fires, a test group where it
    never fires, and a firing that resolves later in the same series."""
    kinds = coverage()
    missing = {
        name: sorted({"fires", "quiet", "resolves"} - kinds.get(name, set()))
        for name in alert_names()
    }
    assert {n: m for n, m in missing.items() if m} == {}
    assert set(kinds) <= set(alert_names()), "tests name an alert the rules do not have"


def broken_copy(root: Path, alert: str, expr: str) -> list[Path]:
    """Under `root`: rules.yml with `alert`'s expression replaced, next to copies of the
    unit test files that test `alert`; the copies' paths."""
    rules = load(RULES)
    for rule in alert_rules(rules):
        if rule["alert"] == alert:
            rule["expr"] = expr
    root.mkdir(parents=True)
    (root / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    tests = root / "tests"
    tests.mkdir()
    copies = []
    for path in unit_test_files():
        if f"alertname: {alert}" not in path.read_text():
            continue  # other files do not load this alert's results: they cannot change
        shutil.copy(path, tests / path.name)
        copies.append(tests / path.name)
    return copies


MUTATIONS = {"never": NEVER, "always": ALWAYS}


@pytest.fixture(scope="module")
def mutant_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], str]:
    """(mutation, alert) -> promtool's report on the unit tests run against rules.yml with
    that one alert broken. One promtool run for all of them (each run costs seconds)."""
    root = tmp_path_factory.mktemp("broken-rules")
    files: dict[tuple[str, str], list[Path]] = {
        (kind, alert): broken_copy(root / f"{kind}-{alert}", alert, expr)
        for kind, expr in MUTATIONS.items()
        for alert in alert_names()
    }
    everything = [str(path) for paths in files.values() for path in paths]
    result = run("test", "rules", *everything, cwd=root)
    assert result.returncode != 0, "every broken rule set passed its tests"
    sections = re.split(r"^Unit Testing:\s+", result.stdout, flags=re.MULTILINE)
    by_file: dict[str, str] = {}
    for section in sections[1:]:
        name, _, body = section.partition("\n")
        by_file[name.strip()] = by_file.get(name.strip(), "") + body
    reports = {}
    for key, paths in files.items():
        reports[key] = "".join(by_file.get(str(p), "") for p in paths)
    return reports


def failed_alerts(output: str) -> set[str]:
    return set(re.findall(r"alertname: (\w+)", output))


@pytest.mark.parametrize("alert", alert_names())
def test_unit_tests_catch_an_alert_that_never_fires(
    alert: str, mutant_reports: dict[tuple[str, str], str]
) -> None:
    """With the alert's expression replaced by one that never matches, `promtool test
    rules` fails, and on that alert only (its firing cases)."""
    report = mutant_reports[("never", alert)]
    assert "FAILED" in report, f"{alert}: a never-firing rule passed its tests"
    assert failed_alerts(report) == {alert}, report[-3000:]


@pytest.mark.parametrize("alert", alert_names())
def test_unit_tests_catch_an_alert_that_always_fires(
    alert: str, mutant_reports: dict[tuple[str, str], str]
) -> None:
    """With the alert's expression replaced by one that is always true, `promtool test
    rules` fails on that alert only (its quiet and resolved cases)."""
    report = mutant_reports[("always", alert)]
    assert "FAILED" in report, f"{alert}: an always-firing rule passed its tests"
    assert failed_alerts(report) == {alert}, report[-3000:]
