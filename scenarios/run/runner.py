"""The runner: stack -> target -> workload + fault schedule -> heal -> truth -> checkers.

Every fault is reverted and every process stopped in `finally`, whatever happened
(exceptions, Ctrl-C). Each scenario gets a clean slate: proxies healed, the audit and
beneficios tables dropped and Redis flushed (over the direct URLs) before its target starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from reference.clock import SYSTEM_CLOCK
from scenarios.checkers import CheckResult, Truth, run_checkers
from scenarios.faults import FaultInjector
from scenarios.history import History
from scenarios.history_recorder import HistoryRecorder
from scenarios.observe import Observer
from scenarios.ports import free_port
from scenarios.redis_data import apply_redis_config
from scenarios.report import (
    RunSummary,
    ScenarioResult,
    series_from_history,
    write_html_report,
    write_junit_xml,
    write_results_json,
)
from scenarios.run.final_read import FinalReadPlan, read_after_stop, read_live
from scenarios.run.prometheus import (
    EXPECTATION,
    collect_alerts,
    expected_alerts,
    watch_targets,
)
from scenarios.run.scenario import Scenario, ScheduledFault
from scenarios.stack import Stack, StackError, open_stack
from scenarios.target import TargetGroup, TargetSpec, settle, wait_healthy
from scenarios.toxiproxy import ProxySpec
from scenarios.truth import (
    TRUTH_QUERY,
    read_audit_rows,
    read_beneficios,
    read_truth,
    reset_state,
)
from scenarios.webhook import WebhookReceiver
from scenarios.workload import Workload

Progress = Callable[[str, float], None]
"""Called with (what is happening, fraction of the scenario done)."""


@dataclass(frozen=True)
class RunOptions:
    """How to run scenarios: where reports go, the target, quick or long, the seed."""

    report_dir: Path = Path("reports")
    target: TargetSpec = field(default_factory=TargetSpec)
    quick: bool = True
    seed: int = 0
    provider: str | None = None
    truth_query: str = TRUTH_QUERY
    allow_reset: bool = False
    """Allow dropping the tables and flushing Redis on an external stack."""
    prometheus: bool = False
    """Run a Prometheus scraping the targets for every scenario (`--with-prometheus`)."""
    jobs: int = 1
    """Scenarios run at once, each lane on stacks of its own (`--jobs`)."""


def run_catalogue(
    scenarios: Sequence[Scenario],
    options: RunOptions,
    progress: Callable[[int, Scenario], Progress] | None = None,
) -> tuple[RunSummary, Path]:
    """Run scenarios on shared stacks, `options.jobs` at a time (each lane on its own
    stacks); write results (in the given order), JUnit XML and HTML report."""
    if options.jobs < 1:
        raise ValueError("jobs must be at least 1")
    if options.jobs > 1 and options.provider == "external":
        raise StackError("an external stack is one stack: run its scenarios with jobs = 1")
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    # absolute: the stack, its disks and Prometheus get paths under it, used from other cwds
    run_dir = (options.report_dir / datetime.now(UTC).strftime("run-%Y%m%dT%H%M%S")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    done: dict[int, tuple[ScenarioResult, History | None]] = {}
    try:
        lanes = _lanes(scenarios, options.jobs)
        if len(lanes) <= 1:
            for lane in lanes:
                _run_lane(lane, options, run_dir, progress, done)
        else:
            with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="lane") as pool:
                running = [
                    pool.submit(_run_lane, lane, options, run_dir, progress, done) for lane in lanes
                ]
                for future in running:
                    future.result()
    finally:
        results = [done[number][0] for number in sorted(done)]
        histories = {
            result.name: history
            for result, history in (done[number] for number in sorted(done))
            if history is not None
        }
        summary = RunSummary.of(results, time.monotonic() - started, started_at)
        write_results_json(run_dir, summary)
        write_junit_xml(run_dir / "junit.xml", summary)
        write_html_report(run_dir / "report.html", summary, histories)
    return summary, run_dir


Lane = list[tuple[int, Scenario]]


def _lanes(scenarios: Sequence[Scenario], jobs: int) -> list[Lane]:
    """Scenarios (with their positions) split into at most `jobs` lanes of about equal
    length: longest first, each to the lane that ends soonest; a lane keeps the order."""
    lanes: list[Lane] = [[] for _ in range(min(jobs, len(scenarios)))]
    if len(lanes) == 1:
        return [list(enumerate(scenarios))]
    totals = [0.0] * len(lanes)
    by_length = sorted(enumerate(scenarios), key=lambda pair: -pair[1].duration_s)
    for number, scenario in by_length:
        shortest = totals.index(min(totals))
        lanes[shortest].append((number, scenario))
        totals[shortest] += scenario.duration_s
    return [sorted(lane, key=lambda pair: pair[0]) for lane in lanes]


def _run_lane(
    lane: Lane,
    options: RunOptions,
    run_dir: Path,
    progress: Callable[[int, Scenario], Progress] | None,
    done: dict[int, tuple[ScenarioResult, History | None]],
) -> None:
    """Run one lane's scenarios in order on stacks of its own, closed at the end."""
    stacks: dict[tuple[bool, str, bool, str], Stack] = {}
    try:
        for number, scenario in lane:
            aof = bool(scenario.stack.get("redis_aof", True))
            appendfsync = str(scenario.stack.get("redis_appendfsync", "always"))
            redis_mode = str(scenario.stack.get("redis", "single"))
            key = (aof, appendfsync, wants_prometheus(scenario, options.prometheus), redis_mode)
            if key not in stacks:
                stacks[key] = open_stack(
                    options.provider,
                    base_dir=run_dir / "stack",
                    redis_aof=aof,
                    redis_appendfsync=appendfsync,
                    prometheus=key[2],
                    redis_mode=redis_mode,
                )
            report = progress(number, scenario) if progress else None
            done[number] = asyncio.run(
                run_scenario(scenario, stacks[key], options, run_dir / scenario.name, report)
            )
    finally:
        for stack in stacks.values():
            stack.close()


async def run_scenario(
    scenario: Scenario,
    stack: Stack,
    options: RunOptions,
    scenario_dir: Path,
    progress: Progress | None = None,
) -> tuple[ScenarioResult, History | None]:
    """Run one scenario on `stack`; never leaves a fault applied or a target running."""
    if not options.quick:
        scenario = scenario.scaled(3.0)
    say = progress or (lambda what, done: None)
    wall_started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    scenario_dir.mkdir(parents=True, exist_ok=True)
    history_path = scenario_dir / "history.jsonl"
    history_path.unlink(missing_ok=True)
    spec = TargetSpec(
        command=options.target.command,
        instances=scenario.instances,
        env={**options.target.env, **scenario.target_env},
        startup_timeout_s=options.target.startup_timeout_s,
    )
    if stack.provider == "external" and not options.allow_reset:
        raise StackError(
            "refusing to drop audit_log/beneficios and FLUSHALL on an external stack: "
            "pass --allow-reset if it is a throwaway stack"
        )
    stack.heal()
    await asyncio.to_thread(reset_state, stack)
    undo_redis_config = await asyncio.to_thread(
        apply_redis_config, stack.urls.redis_direct_url, scenario.stack.get("redis_config", {})
    )
    extra_proxies = (
        _instance_proxies(stack, scenario.instances)
        if scenario.stack.get("redis_proxy_per_instance")
        else {}
    )
    receiver = WebhookReceiver().start()  # the operator's alert channel
    targets = TargetGroup(
        spec,
        stack.urls,
        scenario_dir,
        extra_env={"ALERT_WEBHOOK_URL": receiver.url},
        instance_env=lambda n: {"REDIS_URL": extra_proxies[n]} if extra_proxies else {},
        backup_root=(
            stack.disks.journal_root(scenario.name)
            if stack.disks is not None and "journal" in stack.disks.mounts
            else None
        ),
    )
    injector = FaultInjector.on_stack(stack, targets=lambda: list(targets.instances))
    prometheus = stack.prometheus if wants_prometheus(scenario, options.prometheus) else None
    error: str | None = None
    history: History | None = None
    checks: tuple[CheckResult, ...] = ()
    observer: Observer | None = None
    try:
        say("starting target", 0.0)
        await asyncio.to_thread(targets.start)
        await wait_healthy(targets.urls, 15.0)
        if prometheus is not None:
            await asyncio.to_thread(watch_targets, prometheus, targets.urls, scenario.name)
        loop = asyncio.get_running_loop()
        t0, wall_t0 = loop.time(), time.time()
        # loop.time() is the system monotonic clock: the recorder and the schedule agree
        with HistoryRecorder(history_path, SYSTEM_CLOCK, origin=t0, flush_every=64) as recorder:
            workload = Workload(
                scenario.workload,
                targets.urls,
                recorder,
                seed=options.seed,
                instance_ids=[i.instance_id for i in targets.instances],
            )
            driver = asyncio.create_task(workload.run())
            ids = [i.instance_id for i in targets.instances]
            poll = "metrics" in scenario.expect
            observer = Observer(receiver, recorder, targets.urls, ids, poll=poll).start()
            try:
                await _play_schedule(scenario, injector, recorder, t0, say)
            finally:
                workload.stop()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(driver, scenario.workload.request_timeout_s + 5)
                await asyncio.to_thread(_heal, stack, injector, targets)
            healed_wall = time.time()
            say("recovering", 0.9)
            pending = await settle(targets, scenario.settle_s, admin=scenario.recovery == "admin")
            await observer.stop()
            history = recorder.history()
        alerts = None
        if prometheus is not None and EXPECTATION in scenario.expect:
            # before the stop: a stopped target's series vanish and would read as resolved
            say("reading alerts from Prometheus", 0.93)
            fire, resolve_within_s = expected_alerts(scenario.expect)
            alerts = await asyncio.to_thread(
                collect_alerts,
                prometheus,
                wall_t0=wall_t0,
                healed_wall=healed_wall,
                fire=fire,
                resolve_within_s=resolve_within_s,
                urls=targets.urls,
            )
        final = scenario.final_read()
        if final is not None:  # every written key, everywhere, converges (bounded)
            say("final reads", 0.94)
            live = await read_live(FinalReadPlan.of(final, targets, stack), history)
        # the truth is read after a graceful (SIGTERM) stop: what the service flushes, or
        # loses, at shutdown counts
        say("stopping target", 0.95)
        await asyncio.to_thread(targets.stop)
        final_reads = (
            await asyncio.to_thread(read_after_stop, live, scenario_dir) if final else None
        )
        truth = Truth(
            audit_rows=await asyncio.to_thread(read_truth, stack, options.truth_query),
            audit_pending=pending,
            audit_full=await asyncio.to_thread(read_audit_rows, stack),
            beneficios=await asyncio.to_thread(read_beneficios, stack),
            alerts=alerts,
            final_reads=final_reads,
        )
        checks = run_checkers(scenario.checkers(), history, truth)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if observer is not None:
            await observer.stop()
        errors = injector.revert_all()
        await asyncio.to_thread(targets.stop)
        try:
            await asyncio.to_thread(undo_redis_config)
        except Exception as exc:
            errors.append(f"redis_config: {exc}")
        if prometheus is not None:
            prometheus.set_targets([])
        receiver.stop()
        for n in extra_proxies:
            with contextlib.suppress(Exception):
                stack.toxiproxy.delete_proxy(f"redis.i{n}")
        if errors and error is None:
            error = "fault revert failed: " + "; ".join(errors)
    passed = error is None and all(c.passed for c in checks)
    say("done", 1.0)
    result = ScenarioResult(
        name=scenario.name,
        description=scenario.description,
        passed=passed,
        checks=tuple(checks),
        wall_s=time.monotonic() - wall_started,
        fault_windows=history.fault_windows() if history else (),
        started_at=started_at,
        run_dir=str(scenario_dir),
        history_path=str(history_path),
        log_excerpt=targets.log_excerpt(40),
        series=series_from_history(history) if history else None,
        error=error,
    )
    return result, history


async def _play_schedule(
    scenario: Scenario,
    injector: FaultInjector,
    recorder: HistoryRecorder,
    t0: float,
    say: Progress,
) -> None:
    """Apply and revert each fault on time; returns at the end of the scenario's duration."""
    loop = asyncio.get_running_loop()

    async def at(moment: float) -> None:
        await asyncio.sleep(max(0.0, t0 + moment - loop.time()))

    async def one(scheduled: ScheduledFault) -> None:
        spec = scheduled.fault
        await at(scheduled.at_s)
        await asyncio.to_thread(injector.apply, spec)
        recorder.fault("start", spec.name, spec.target, spec.kind, dict(spec.params))
        try:
            await at(scheduled.at_s + scheduled.duration_s)
        finally:
            await asyncio.to_thread(injector.revert, spec)
            recorder.fault("end", spec.name, spec.target, spec.kind)

    tasks = [asyncio.create_task(one(f)) for f in scenario.faults]
    try:
        while loop.time() - t0 < scenario.duration_s:
            say("running", min(0.9, (loop.time() - t0) / scenario.duration_s * 0.9))
            await asyncio.sleep(min(0.5, max(0.0, t0 + scenario.duration_s - loop.time())))
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def wants_prometheus(scenario: Scenario, everywhere: bool = False) -> bool:
    """Whether `scenario` runs with a Prometheus (its stack option, or `--with-prometheus`)."""
    return everywhere or bool(scenario.stack.get("prometheus"))


def _heal(stack: Stack, injector: FaultInjector, targets: TargetGroup) -> None:
    injector.revert_all()
    stack.heal()
    targets.ensure_running()


def _instance_proxies(stack: Stack, instances: int) -> dict[int, str]:
    """One extra Redis proxy per instance ("redis.i1", ...): cut one instance off alone."""
    upstream = stack.redis_proxy.upstream
    urls = {}
    for n in range(1, instances + 1):
        name = f"redis.i{n}"
        with contextlib.suppress(Exception):
            stack.toxiproxy.delete_proxy(name)
        proxy = stack.toxiproxy.create_proxy(ProxySpec(name, f"127.0.0.1:{free_port()}", upstream))
        urls[n] = f"redis://127.0.0.1:{proxy.listen_port}/0"
    return urls
