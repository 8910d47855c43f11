"""`stormproof load`: Locust load in phases (baseline -> fault -> recovery) with thresholds.

For each variant (the reference, the naive variant, or both in turn, on one stack): reset
the state, start the target, seed the beneficios and cache keys, run Locust headless in its
own process(es) with locustfiles/reference.py (which injects and reverts the fault), heal,
run the audit recovery until the backlog is empty, read the audit truth over the direct
database URL, then judge: the read thresholds of `scenarios.load.stats`, the fault really
injected, and no acknowledged audit event lost.

Locust is never imported here (it monkey-patches the whole process with gevent): it runs as
`python -m locust` subprocesses, each with a timeout and killed (its process group) at the
end. `--workers N` runs one master and N workers on 127.0.0.1.

Exit codes: 0 passed; 1 a threshold failed; 2 bad usage or a stack that cannot start.
With `--variant both`, 0 means the reference passed *and* the naive variant failed (the
load tells them apart); the naive variant is expected to fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import httpx

from scenarios.faults import NETWORK_KINDS, FaultError, FaultSpec
from scenarios.load.stats import (
    Thresholds,
    VariantResult,
    Verdict,
    audit_verdicts,
    fault_verdict,
    phase_durations,
    read_acks,
    read_phase_log,
    read_phase_stats,
    read_verdicts,
    render_table,
    render_verdicts,
)
from scenarios.run.runner import TRUTH_QUERY, read_truth, reset_state, settle, wait_healthy
from scenarios.stack import Stack, open_stack
from scenarios.stack.local import free_port
from scenarios.target import DEFAULT_COMMAND, TargetGroup, TargetSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LOCUSTFILE = REPO_ROOT / "locustfiles" / "reference.py"
VARIANTS: dict[str, tuple[str, ...]] = {
    "reference": DEFAULT_COMMAND,
    "naive": (sys.executable, "-m", "scenarios.variants.naive"),
}
LOAD_ENV_OVERRIDES = {"CACHE_L1_TTL": "2"}
"""On top of the catalogue's target settings: a 2-s L1 so reads keep reaching Redis (L2).
With a small id set and the default 300-s L1, every read would be an L1 hit and a Redis
fault would never touch the read path; a short L1 stands in for a key space larger than L1."""
LOCUST_GRACE_S = 60.0
"""Beyond warm-up + duration: Locust start-up, workers connecting, reports written."""


@dataclass(frozen=True)
class LoadOptions:
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
        third = self.duration_s / 3
        return third, third, third


def target_env() -> dict[str, str]:
    """The catalogue's default target settings plus the load's overrides."""
    text = resources.files("scenarios.run").joinpath("catalogue.toml").read_text()
    defaults = tomllib.loads(text).get("defaults", {}).get("target_env", {})
    return {**{str(k): str(v) for k, v in defaults.items()}, **LOAD_ENV_OVERRIDES}


def beneficio_ids(n: int) -> list[str]:
    return [f"load-{i}" for i in range(1, n + 1)]


def cache_keys(n: int) -> list[str]:
    return [f"load-k{i}" for i in range(1, n + 1)]


def _say(text: str) -> None:
    print(f"[load] {text}", file=sys.stderr, flush=True)


# -- seeding ------------------------------------------------------------------------------------


def seed(url: str, options: LoadOptions, timeout_s: float = 20.0) -> set[str]:
    """PUT every beneficio and cache key (retrying while the schema is being created).

    Returns the audit event ids the seeding writes were acknowledged with.
    """
    acknowledged: set[str] = set()
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=5.0) as client:
        for n, beneficio in enumerate(beneficio_ids(options.ids), 1):
            body = {"nome": f"beneficio {beneficio}", "valor": 1000 * n, "v": 0, "actor": "seed"}
            while True:
                try:
                    response = client.put(f"/beneficios/{beneficio}", json=body)
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        acknowledged.add(str(response.json()["audit"]["event_id"]))
                        break
                    problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if time.monotonic() > deadline:
                    raise RuntimeError(f"seeding {beneficio} failed: {problem}")
                time.sleep(0.2)
        for key in cache_keys(options.ids):
            response = client.put(f"/cache/{key}", json={"value": {"seed": key}, "ttl_s": 3600})
            if response.status_code != 204:
                raise RuntimeError(f"seeding cache key {key}: HTTP {response.status_code}")
    return acknowledged


# -- Locust processes ---------------------------------------------------------------------------


class LocustRun:
    """One headless Locust run: a single process, or a master and N workers."""

    def __init__(self, options: LoadOptions, host: str, run_dir: Path, env: Mapping[str, str]):
        self.options = options
        self.host = host
        self.run_dir = run_dir
        self.env = dict(env)
        self.csv_prefix = run_dir / "locust"
        self.html = run_dir / "locust.html"
        self._procs: list[subprocess.Popen[bytes]] = []

    def _argv(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(self.options.locustfile),
            "--headless",
            "--host",
            self.host,
            "--exit-code-on-error",
            "0",
            "--only-summary",
            *extra,
        ]

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.run_dir / f"{name}.log").open("wb")
        try:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO_ROOT,
                start_new_session=True,  # its own process group: killed as a whole
            )
        finally:
            log.close()
        self._procs.append(proc)
        return proc

    def run(self) -> int:
        """Run to completion (or timeout); returns the master's exit status."""
        reports = ["--csv", str(self.csv_prefix), "--html", str(self.html)]
        timeout = self.options.warmup_s + self.options.duration_s + LOCUST_GRACE_S
        try:
            if self.options.workers <= 0:
                main = self._spawn("locust", self._argv(*reports))
            else:
                port = free_port()
                main = self._spawn(
                    "locust-master",
                    self._argv(
                        "--master",
                        "--master-bind-host",
                        "127.0.0.1",
                        "--master-bind-port",
                        str(port),
                        "--expect-workers",
                        str(self.options.workers),
                        "--expect-workers-max-wait",
                        "30",
                        *reports,
                    ),
                )
                for n in range(1, self.options.workers + 1):
                    self._spawn(
                        f"locust-worker-{n}",
                        self._argv(
                            "--worker",
                            "--master-host",
                            "127.0.0.1",
                            "--master-port",
                            str(port),
                        ),
                    )
            try:
                code = main.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _say(f"locust did not finish within {timeout:.0f}s: killed")
                return -1
            for proc in self._procs[1:]:  # workers quit when the master tells them
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=15)
            return code
        finally:
            self.kill()

    def kill(self) -> None:
        """Stop every Locust process this run started that is still alive (group-wide)."""
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def locust_env(options: LoadOptions, stack: Stack, run_dir: Path) -> dict[str, str]:
    baseline, fault, recovery = options.phases
    return {
        **os.environ,
        "STORMPROOF_TOXIPROXY_URL": stack.urls.toxiproxy_url,
        "STORMPROOF_LOAD_PHASES": f"{baseline:g},{fault:g},{recovery:g}",
        "STORMPROOF_LOAD_WARMUP_S": f"{options.warmup_s:g}",
        "STORMPROOF_LOAD_USERS": str(options.users),
        "STORMPROOF_LOAD_SPAWN_RATE": str(options.users),
        "STORMPROOF_LOAD_USER_RPS": f"{options.user_rps:g}",
        "STORMPROOF_LOAD_TIMEOUT_S": f"{options.request_timeout_s:g}",
        "STORMPROOF_LOAD_FAULT": options.fault,
        "STORMPROOF_LOAD_IDS": ",".join(beneficio_ids(options.ids)),
        "STORMPROOF_LOAD_CACHE_KEYS": ",".join(cache_keys(options.ids)),
        "STORMPROOF_LOAD_ACKS": str(run_dir / "acks.txt"),
        "STORMPROOF_LOAD_PHASE_LOG": str(run_dir / "phases.json"),
    }


# -- one variant --------------------------------------------------------------------------------


def run_variant(variant: str, stack: Stack, options: LoadOptions, run_dir: Path) -> VariantResult:
    """Load one variant of the target; never leaves a fault applied or a process running."""
    run_dir.mkdir(parents=True, exist_ok=True)
    result = VariantResult(variant=variant, run_dir=str(run_dir))
    stack.heal()
    reset_state(stack)
    targets = TargetGroup(
        TargetSpec(command=VARIANTS[variant], env=target_env()), stack.urls, run_dir
    )
    seeded: set[str] = set()
    truth: set[str] = set()
    pending: int | None = None
    problem: str | None = None
    try:
        _say(f"{variant}: starting the target")
        targets.start()
        asyncio.run(wait_healthy(targets.urls, 15.0))
        seeded = seed(targets.urls[0], options)
        _say(
            f"{variant}: locust, {options.users} users x {options.user_rps:g}/s, "
            f"{options.warmup_s:g}s warm-up + {options.duration_s:g}s "
            f"({options.fault} in the middle third)"
            + (f", {options.workers} workers" if options.workers else "")
        )
        locust = LocustRun(options, targets.urls[0], run_dir, locust_env(options, stack, run_dir))
        code = locust.run()
        if code != 0:
            log = "locust-master.log" if options.workers else "locust.log"
            problem = f"locust exited with {code}; see {run_dir / log}"
        stack.heal()  # the locustfile reverts its fault; this is the belt to its braces
        _say(f"{variant}: recovery (audit backlog)")
        pending = asyncio.run(settle(targets, options.settle_s))
        truth = set(read_truth(stack, TRUTH_QUERY))
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    finally:
        stack.heal()
        targets.stop()
    if problem is not None:
        result.verdicts.append(Verdict("load.completed", False, problem))
    phase_log = read_phase_log(run_dir / "phases.json")
    stats_csv = run_dir / "locust_stats.csv"
    if stats_csv.exists():
        result.stats = read_phase_stats(stats_csv, phase_durations(phase_log))
        result.verdicts.extend(read_verdicts(result.stats, options.thresholds))
    elif problem is None:
        result.verdicts.append(Verdict("load.completed", False, f"no {stats_csv}"))
    injected = fault_verdict(phase_log, options.fault)
    if injected is not None:
        result.verdicts.append(injected)
    acknowledged = read_acks(run_dir / "acks.txt") | seeded
    result.acknowledged = len(acknowledged)
    result.verdicts.extend(audit_verdicts(acknowledged, truth, pending))
    return result


# -- the command --------------------------------------------------------------------------------


def run_load(options: LoadOptions) -> list[VariantResult]:
    stamp = datetime.now(UTC).strftime("load-%Y%m%dT%H%M%S")
    base = options.report_dir / stamp
    base.mkdir(parents=True, exist_ok=True)
    results: list[VariantResult] = []
    with open_stack(options.provider, base_dir=base / "stack") as stack:
        _say(f"stack up ({stack.provider})")
        for variant in options.variants:
            results.append(run_variant(variant, stack, options, base / variant))
    (base / "load.json").write_text(
        json.dumps({"results": [r.as_json() for r in results]}, indent=2)
    )
    return results


def exit_code(results: Sequence[VariantResult]) -> int:
    """0 when every variant passed; with both variants, 0 when the reference passed and the
    naive one failed a read threshold of the fault phase (not anything else, such as a
    harness error: that would not show the strategy's worth)."""
    by_name = {r.variant: r for r in results}
    if set(by_name) == {"reference", "naive"}:
        naive_reads = [
            name for name in by_name["naive"].failed() if name.startswith("reads.fault.")
        ]
        return 0 if by_name["reference"].passed and naive_reads else 1
    return 0 if all(r.passed for r in results) else 1


def report(results: Sequence[VariantResult]) -> str:
    lines = [render_table(results), ""]
    for result in results:
        lines.extend([render_verdicts(result), ""])
    by_name = {r.variant: r for r in results}
    if set(by_name) == {"reference", "naive"}:
        naive = by_name["naive"]
        lines.append(
            "naive variant: failed " + ", ".join(naive.failed()) + " (expected)"
            if not naive.passed
            else "naive variant PASSED: this load does not tell it from the reference"
        )
    if results:
        lines.append(f"reports: {Path(results[0].run_dir).parent}")
    return "\n".join(lines)


def options_from_args(args: argparse.Namespace) -> LoadOptions:
    if args.users < 1 or args.duration < 3 or args.workers < 0 or args.user_rps <= 0:
        raise ValueError("expected --users >= 1, --duration >= 3, --workers >= 0, --user-rps > 0")
    if args.warmup < 0 or args.settle <= 0 or args.p99_factor < 1 or args.p99_slack_ms < 0:
        raise ValueError(
            "expected --warmup >= 0, --settle > 0, --p99-factor >= 1, --p99-slack-ms >= 0"
        )
    if not 0 < args.min_rps_ratio <= 1:
        raise ValueError("expected 0 < --min-rps-ratio <= 1")
    if args.fault != "none":
        spec = FaultSpec.parse(args.fault)
        if spec.kind not in NETWORK_KINDS:
            raise FaultError(f"{args.fault}: only network faults can be injected under load")
    variants = ("reference", "naive") if args.variant == "both" else (args.variant,)
    options = LoadOptions(
        fault=args.fault,
        users=args.users,
        duration_s=args.duration,
        workers=args.workers,
        report_dir=args.report,
        variants=variants,
        user_rps=args.user_rps,
        warmup_s=args.warmup,
        settle_s=args.settle,
        provider=args.provider,
        thresholds=Thresholds(args.p99_factor, args.p99_slack_ms, args.min_rps_ratio),
    )
    if args.locustfile is not None:
        options = replace(options, locustfile=args.locustfile.resolve())
    return options


def cmd_load(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except (ValueError, FaultError) as exc:
        print(f"stormproof load: {exc}", file=sys.stderr)
        return 2
    results = run_load(options)
    print(report(results))
    return exit_code(results)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = commands.add_parser(
        "load",
        help="Locust load in phases (baseline, fault, recovery) with thresholds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load.add_argument(
        "--fault",
        default="redis-blackhole",
        help="a network fault, e.g. redis-blackhole, redis-down ('none': no fault)",
    )
    load.add_argument("--users", type=int, default=20)
    load.add_argument("--user-rps", type=float, default=10.0, help="each user's pace (req/s)")
    load.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="seconds, split into three equal phases (after --warmup)",
    )
    load.add_argument("--warmup", type=float, default=2.0, help="seconds before the baseline")
    load.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run Locust distributed: a master and N workers on 127.0.0.1",
    )
    load.add_argument("--report", type=Path, default=Path("reports"), help="report directory")
    load.add_argument("--variant", choices=["reference", "naive", "both"], default="reference")
    load.add_argument("--provider", default="local", help="stack provider: local|external|docker")
    load.add_argument(
        "--p99-factor",
        type=float,
        default=3.0,
        help="fault p99 <= max(FACTOR x baseline p99, baseline p99 + SLACK)",
    )
    load.add_argument("--p99-slack-ms", type=float, default=200.0)
    load.add_argument(
        "--min-rps-ratio",
        type=float,
        default=0.9,
        help="fault-phase read throughput >= RATIO x baseline",
    )
    load.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="seconds allowed for the audit backlog to drain after healing",
    )
    load.add_argument("--locustfile", type=Path, default=None)
    load.set_defaults(handler=cmd_load)
