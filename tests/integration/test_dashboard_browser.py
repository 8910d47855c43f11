"""`GET /dashboard` in headless Chromium against a real service on the real stack: HEALTHY
and CLOSED, then DEGRADED and the Redis breaker OPEN during a Redis outage (the redis
proxy disabled in Toxiproxy), then HEALTHY and CLOSED again after healing.

Screenshots of the three moments are saved as artifacts under $STORMPROOF_ARTIFACTS (or
reports/dashboard/) and their paths printed.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from reference.service.dashboard import page as dashboard_page
from tests.integration.service_support import ADMIN_TOKEN, Service, ServiceFactory, wait_until
from tests.integration.test_report_browser import chromium, run_chromium

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
BUDGET_MS = 4000
"""Virtual time Chromium gives the page's script (its fetches pause it) before dumping."""
RESET_TIMEOUT_MS = "8000"
"""Long enough for the page to be rendered while the breaker is still OPEN."""


class DashboardScan(HTMLParser):
    """What the rendered page shows: element id -> text and data-* attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: dict[str, dict[str, str | None]] = {}
        self.text: dict[str, str] = {}
        self.alerts: list[str] = []
        self.external: list[str] = []
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        element_id = a.get("id")
        if element_id:
            self.attrs[element_id] = a
            self.text.setdefault(element_id, "")
        if a.get("data-alert"):
            self.alerts.append(a["data-alert"] or "")
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(a[key] or "")
        if tag not in ("meta", "br", "link", "img", "input"):
            self._open.append(element_id)

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element_id in self._open:
            if element_id:
                self.text[element_id] += data

    def state(self, element_id: str) -> str:
        return self.text.get(element_id, "").strip()


def artifacts_dir() -> Path:
    where = Path(os.environ.get("STORMPROOF_ARTIFACTS", ROOT / "reports" / "dashboard"))
    where.mkdir(parents=True, exist_ok=True)
    return where


def render(binary: str, url: str, profile: Path) -> tuple[DashboardScan, str]:
    """The page's DOM after its script has fetched and rendered."""
    dom = run_chromium(binary, profile, f"--virtual-time-budget={BUDGET_MS}", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    scan = DashboardScan()
    scan.feed(dom.stdout)
    return scan, dom.stdout


def screenshot(binary: str, url: str, profile: Path, name: str) -> Path:
    """A 1280x900 PNG of the page, saved as an artifact; its path."""
    png = artifacts_dir() / f"dashboard-{name}.png"
    png.unlink(missing_ok=True)
    shot = run_chromium(
        binary,
        profile,
        f"--virtual-time-budget={BUDGET_MS}",
        f"--screenshot={png}",
        "--window-size=1280,900",
        "--hide-scrollbars",
        url,
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 900)
    print(f"dashboard screenshot ({name}): {png}")
    return png


def traffic(service: Service, reads: int = 30) -> None:
    """Cache reads (a miss each goes to L2), one write and one audit event."""
    service.client.put("/cache/dash", json={"value": {"v": 1}})
    for n in range(reads):
        service.client.get(f"/cache/dash-miss-{n % 7}")
        service.client.get("/cache/dash")
    service.post_audit()


def wait_breaker(service: Service, state: str, status: str, timeout_s: float) -> dict[str, Any]:
    """Drive cache reads until /health shows `status` and the Redis breaker `state`."""

    def probe() -> dict[str, Any] | None:
        service.client.get("/cache/dash-probe")
        body = service.health()
        return body if (body["status"], body["circuit"]) == (status, state) else None

    found: dict[str, Any] = wait_until(probe, timeout_s, 0.1, f"/health {status} + {state}")
    return found


def probe_failed(service: Service) -> Callable[[], dict[str, Any] | None]:
    """/health once its Redis probe has failed (with an error text), else None."""

    def probe() -> dict[str, Any] | None:
        body = service.health()
        return body if body["redis"].get("error") else None

    return probe


def test_dashboard_follows_a_redis_outage_in_headless_chromium(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    """HEALTHY/CLOSED; DEGRADED/OPEN with the Redis alert during the outage, no error text
    or secret on the page; HEALTHY/CLOSED after healing. Screenshots of each are saved."""
    binary = chromium()
    service = service_factory(
        CIRCUIT_BREAKER_RESET_TIMEOUT=RESET_TIMEOUT_MS, CIRCUIT_BREAKER_FAILURE_THRESHOLD="3"
    )
    url = f"{service.url}/dashboard"
    page = service.client.get("/dashboard")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", ""), "the page names another origin"

    traffic(service)
    service.wait_status("HEALTHY")
    scan, _ = render(binary, url, tmp_path / "p1")
    assert scan.attrs["status"]["data-status"] == "HEALTHY", scan.text
    assert scan.state("breaker-redis") == "CLOSED"
    assert scan.state("breaker-database") == "CLOSED"
    assert scan.state("dependency-redis") == "UP"
    assert scan.state("hit-l1").endswith("%"), scan.text
    assert scan.external == [], "nothing may be loaded from elsewhere"
    screenshot(binary, url, tmp_path / "p2", "healthy")

    redis_proxy = service.stack.redis_proxy
    redis_proxy.disable()
    try:
        wait_breaker(service, "OPEN", "DEGRADED", 15.0)
        # the breaker alone makes the service DEGRADED; the Redis probe (every health
        # interval) records its error a moment later on a loaded machine
        degraded = wait_until(probe_failed(service), 10.0, 0.1, "the Redis probe's error")
        error_text = str(degraded["redis"].get("error") or "")
        assert service.post_audit().json()["path"] == "db"  # the database path, shown
        metrics = service.client.get("/metrics").text
        assert "\nstormproof_health_status 1.0\n" in metrics  # DEGRADED, for Prometheus
        assert error_text, "the outage must produce an error text for the page to withhold"
        wait_until(
            lambda: (
                "REDIS_MULTIPLE_FAILURES" in service.client.get("/dashboard/state").json()["alerts"]
            ),
            10.0,
            what="the in-service Redis alert active",
        )
        opened_at = time.monotonic()
        scan, dom = render(binary, url, tmp_path / "p3")
        shot = screenshot(binary, url, tmp_path / "p4", "redis-outage")
        rendered_in = time.monotonic() - opened_at
        assert scan.attrs["status"]["data-status"] == "DEGRADED", scan.text
        assert scan.state("breaker-redis") == "OPEN", (scan.text, f"{rendered_in:.1f}s")
        assert "REDIS_MULTIPLE_FAILURES" in scan.alerts
        for secret in (error_text, ADMIN_TOKEN, service.stack.urls.redis_url):
            assert secret not in dom, f"the page shows {secret!r}"
        assert shot.stat().st_size > 20_000, "a blank page compresses to a few KB"
    finally:
        redis_proxy.enable()

    wait_breaker(service, "CLOSED", "HEALTHY", 30.0)
    scan, _ = render(binary, url, tmp_path / "p5")
    assert scan.attrs["status"]["data-status"] == "HEALTHY", scan.text
    assert scan.state("breaker-redis") == "CLOSED"
    assert scan.state("dependency-redis") == "UP"
    screenshot(binary, url, tmp_path / "p6", "healed")


def test_dashboard_says_unreachable_when_nothing_answers(tmp_path: Path) -> None:
    """The page opened where its endpoints do not answer (a file) says UNREACHABLE, not a
    made-up state."""
    binary = chromium()
    page = tmp_path / "dashboard.html"
    page.write_text(dashboard_page())
    scan, _ = render(binary, page.as_uri(), tmp_path / "p1")
    assert scan.attrs["status"]["data-status"] == "UNREACHABLE", scan.text
    assert scan.state("status") == "UNREACHABLE"
