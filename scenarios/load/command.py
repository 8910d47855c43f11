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
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from scenarios.faults import NETWORK_KINDS, FaultError, FaultSpec
from scenarios.load.options import LoadOptions, say
from scenarios.load.stats import Thresholds, VariantResult, render_table, render_verdicts
from scenarios.load.variant import run_variant
from scenarios.stack import open_stack


def run_load(options: LoadOptions) -> list[VariantResult]:
    """Run every variant on one stack; writes load.json and returns the results."""
    stamp = datetime.now(UTC).strftime("load-%Y%m%dT%H%M%S")
    base = options.report_dir / stamp
    base.mkdir(parents=True, exist_ok=True)
    results: list[VariantResult] = []
    with open_stack(options.provider, base_dir=base / "stack") as stack:
        say(f"stack up ({stack.provider})")
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
    """The text report: the per-phase table, each variant's verdicts, the comparison."""
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
    """LoadOptions from the command line; ValueError or FaultError on bad input."""
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
    """`stormproof load`: the exit code of the run (2 on bad usage)."""
    try:
        options = options_from_args(args)
    except (ValueError, FaultError) as exc:
        print(f"stormproof load: {exc}", file=sys.stderr)
        return 2
    results = run_load(options)
    print(report(results))
    return exit_code(results)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `load` sub-command."""
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
