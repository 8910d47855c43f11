"""A real Prometheus next to the stack: our own child process, scraping the targets.

`PrometheusServer.start()` runs Debian's `prometheus` on a free loopback port with a
generated configuration: one job scraping the targets listed in a file (file-based service
discovery, rewritten atomically by `set_targets` for each scenario's instances) every
`scrape_interval_s`, and the alert rules of deploy/prometheus/rules.yml evaluated every
`evaluation_interval_s`. It is stopped (process group) by `close()`, which the stack calls
on every exit path. Every API call has a timeout; a query Prometheus rejects (bad PromQL)
raises `PrometheusError` with Prometheus's own message.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from scenarios.ports import free_port
from scenarios.stack.errors import StackError
from scenarios.stack.process import ManagedProcess

if TYPE_CHECKING:
    from scenarios.stack.base import Stack

__all__ = [
    "DEFAULT_RULES",
    "JOB",
    "PrometheusConfig",
    "PrometheusError",
    "PrometheusServer",
    "Series",
    "attach_prometheus",
    "find_prometheus",
]

JOB = "stormproof"
DEFAULT_RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"
_BINARY_ENV = "STORMPROOF_PROMETHEUS"
_RULES_ENV = "STORMPROOF_PROMETHEUS_RULES"


class PrometheusError(Exception):
    """Prometheus refused a request or did not answer in time."""


@dataclass(frozen=True)
class PrometheusConfig:
    """How our Prometheus scrapes and evaluates (short intervals: scenarios last seconds)."""

    scrape_interval_s: float = 1.0
    evaluation_interval_s: float = 1.0
    rules: Path = DEFAULT_RULES
    request_timeout_s: float = 5.0
    startup_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.scrape_interval_s <= 0 or self.evaluation_interval_s <= 0:
            raise ValueError("Prometheus intervals must be positive")

    def document(self, targets_file: Path) -> dict[str, Any]:
        """prometheus.yml as a dict (written as JSON, which is YAML)."""
        scrape = _duration(self.scrape_interval_s)
        return {
            "global": {
                "scrape_interval": scrape,
                "scrape_timeout": scrape,
                "evaluation_interval": _duration(self.evaluation_interval_s),
            },
            "rule_files": [str(self.rules)],
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}],
                }
            ],
        }


@dataclass(frozen=True)
class Series:
    """One series of a query's answer: its labels and (unix time, value) samples."""

    labels: Mapping[str, str]
    samples: tuple[tuple[float, float], ...] = field(default_factory=tuple)


def find_prometheus() -> str:
    """The prometheus binary: $STORMPROOF_PROMETHEUS, then PATH; StackError when missing."""
    from scenarios.stack.local import find_binary

    return find_binary("prometheus", _BINARY_ENV, [Path("/usr/bin")])


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


class PrometheusServer:
    """One Prometheus process we own, and a small typed client of its HTTP API."""

    def __init__(self, root: Path, config: PrometheusConfig | None = None) -> None:
        self.config = config or PrometheusConfig(
            rules=Path(os.environ.get(_RULES_ENV) or DEFAULT_RULES)
        )
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.targets_file = root / "targets.json"
        self._process: ManagedProcess | None = None
        self._client = httpx.Client(base_url=self.url, timeout=self.config.request_timeout_s)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> PrometheusServer:
        """Write the configuration, start Prometheus, wait until it is ready."""
        if not self.config.rules.is_file():
            raise StackError(f"Prometheus rules not found: {self.config.rules}")
        binary = find_prometheus()
        self.root.mkdir(parents=True, exist_ok=True)
        self.set_targets([])
        config_file = self.root / "prometheus.yml"
        config_file.write_text(json.dumps(self.config.document(self.targets_file), indent=2))
        self._process = ManagedProcess(
            "prometheus",
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            log_path=self.root / "prometheus.log",
            ready=self._ready,
        )
        self._process.start(self.config.startup_timeout_s)
        return self

    def close(self) -> None:
        """Stop Prometheus (idempotent); its data directory stays with the run's files."""
        process, self._process = self._process, None
        try:
            if process is not None:
                process.stop(timeout_s=5.0)
        finally:
            self._client.close()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def _ready(self) -> bool:
        return self._client.get("/-/ready", timeout=1.0).status_code == 200

    # -- targets ----------------------------------------------------------------------------

    def set_targets(self, urls: Sequence[str], labels: Mapping[str, str] | None = None) -> None:
        """Scrape exactly these target base URLs from now on (atomic rewrite)."""
        entries = [
            {"targets": [url.split("://", 1)[-1].rstrip("/")], "labels": dict(labels or {})}
            for url in urls
        ]
        fd, tmp = tempfile.mkstemp(dir=self.targets_file.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(entries, out)
        os.replace(tmp, self.targets_file)

    def wait_scraped(self, urls: Sequence[str], timeout_s: float = 15.0) -> None:
        """Wait until every target in `urls` has been scraped successfully at least once."""
        wanted = {url.split("://", 1)[-1].rstrip("/") for url in urls}
        deadline = time.monotonic() + timeout_s
        up: set[str] = set()
        while True:
            data = self._get("/api/v1/targets", {"state": "active"})
            up = {
                str(t["labels"].get("instance"))
                for t in data.get("activeTargets", [])
                if t.get("health") == "up"
            }
            if wanted <= up:
                return
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"Prometheus did not scrape {sorted(wanted - up)} within {timeout_s:g}s"
                )
            time.sleep(0.2)

    # -- queries ----------------------------------------------------------------------------

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        """An instant query (at unix time `at`, default now)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return _series(self._get("/api/v1/query", params))

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        """A range query over [start, end] (unix times), one point every `step_s`."""
        params = {
            "query": expr,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step_s:g}",
        }
        return _series(self._get("/api/v1/query_range", params))

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts active now (pending or firing), as /api/v1/alerts lists them."""
        found: list[dict[str, Any]] = self._get("/api/v1/alerts", {}).get("alerts", [])
        return found

    def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        try:
            response = self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"GET {path}: {type(exc).__name__}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(f"GET {path}: HTTP {response.status_code}, not JSON") from None
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(
                f"GET {path} {params.get('query', '')!r}: {body.get('errorType', '')}: "
                f"{body.get('error', response.status_code)}"
            )
        data: dict[str, Any] = body.get("data") or {}
        return data


def _series(data: Mapping[str, Any]) -> list[Series]:
    """Series from a query answer (vector or matrix; a scalar is one unlabelled series)."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return [Series({}, ((float(result[0]), float(result[1])),))]
    out = []
    for item in result or []:
        points = item.get("values") or ([item["value"]] if "value" in item else [])
        out.append(
            Series(
                dict(item.get("metric", {})),
                tuple((float(t), float(v)) for t, v in points),
            )
        )
    return out


def attach_prometheus(stack: Stack, base_dir: Path | None = None) -> PrometheusServer:
    """Start a Prometheus for `stack` (any provider: the targets run here); the stack stops
    it on close. When it cannot start, the stack is closed and StackError raised."""
    parent = base_dir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="stormproof-prometheus-", dir=parent))
    server = PrometheusServer(root)
    try:
        server.start()
    except BaseException as exc:
        server.close()
        stack.close()
        if isinstance(exc, PrometheusError):
            raise StackError(f"prometheus: {exc}") from exc
        raise
    stack.prometheus = server
    stack._closers.append(server)
    return server
