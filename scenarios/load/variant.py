"""One variant under load: reset, start the target, seed, run Locust, heal, judge."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from scenarios.load.env import LoadEnv, beneficio_ids, cache_keys
from scenarios.load.locust import LocustRun
from scenarios.load.options import VARIANTS, LoadOptions, say, target_env
from scenarios.load.stats import (
    VariantResult,
    Verdict,
    audit_verdicts,
    fault_verdict,
    phase_durations,
    read_acks,
    read_phase_log,
    read_phase_stats,
    read_verdicts,
)
from scenarios.stack import Stack
from scenarios.target import TargetGroup, TargetSpec, settle, wait_healthy
from scenarios.truth import TRUTH_QUERY, read_truth, reset_state


def load_env(options: LoadOptions, stack: Stack, run_dir: Path) -> LoadEnv:
    """The locustfile's settings for one variant's run."""
    return LoadEnv(
        phases=options.phases,
        warmup_s=options.warmup_s,
        users=options.users,
        spawn_rate=float(options.users),
        user_rps=options.user_rps,
        timeout_s=options.request_timeout_s,
        fault=options.fault,
        toxiproxy_url=stack.urls.toxiproxy_url,
        ids=beneficio_ids(options.ids),
        cache_keys=cache_keys(options.ids),
        acks=run_dir / "acks.txt",
        phase_log=run_dir / "phases.json",
    )


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
        say(f"{variant}: starting the target")
        targets.start()
        asyncio.run(wait_healthy(targets.urls, 15.0))
        seeded = seed(targets.urls[0], options)
        say(
            f"{variant}: locust, {options.users} users x {options.user_rps:g}/s, "
            f"{options.warmup_s:g}s warm-up + {options.duration_s:g}s "
            f"({options.fault} in the middle third)"
            + (f", {options.workers} workers" if options.workers else "")
        )
        locust = LocustRun(
            options,
            targets.urls[0],
            run_dir,
            load_env(options, stack, run_dir).to_env(),
        )
        code = locust.run()
        if code != 0:
            log = "locust-master.log" if options.workers else "locust.log"
            problem = f"locust exited with {code}; see {run_dir / log}"
        stack.heal()  # the locustfile reverts its fault; this is the belt to its braces
        say(f"{variant}: recovery (audit backlog)")
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
