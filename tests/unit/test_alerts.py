"""Alerts: rules, firing/resolved/cooldown/flapping semantics, signal window, sinks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reference.alerts import (
    RULES,
    AlertEvaluator,
    AlertEvent,
    AlertSignals,
    AlertThresholds,
    CumulativeCounters,
    LogSink,
    SignalWindow,
    WebhookSink,
)
from reference.clock import FakeClock
from reference.config import Settings
from reference.metrics import ResilienceMetrics
from reference.service.configs import alert_evaluator, alert_thresholds

WALL = 1_700_000_000.0
COOLDOWN = 300.0
QUIET = AlertSignals()
UNHEALTHY = AlertSignals(health_status="UNHEALTHY")
THRESHOLDS = AlertThresholds(redis_failures=5, fallback_usage=0.5, min_cache_reads=20)


class RecordingSink:
    """A sink that keeps every event it is sent."""

    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def send(self, event: AlertEvent) -> None:
        self.events.append(event)


def make(
    cooldown_s: float = COOLDOWN, thresholds: AlertThresholds = THRESHOLDS
) -> tuple[AlertEvaluator, FakeClock, RecordingSink]:
    clock = FakeClock(wall=WALL)
    sink = RecordingSink()
    evaluator = AlertEvaluator(thresholds, [sink], clock, cooldown_s, "node-1")
    return evaluator, clock, sink


async def drive(
    clock: FakeClock, condition: Callable[[], bool], *, step_s: float, timeout_s: float = 5.0
) -> None:
    """Advance `clock` by `step_s` (waking the loop's sleep) until `condition()` holds;
    fails after `timeout_s` of real time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        clock.advance(step_s)
        await asyncio.sleep(0.001)


def states(sink: RecordingSink, name: str = "SYSTEM_UNHEALTHY") -> list[str]:
    return [e.state for e in sink.events if e.name == name]


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll `predicate` (plain counters, no event to wait on) until true, at most `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


# -- firing / resolved / cooldown / flapping -------------------------------------------


def test_fires_once_over_many_evaluations() -> None:
    """A condition that stays true (within the cooldown) is sent exactly once."""
    evaluator, clock, sink = make()
    for _ in range(50):
        evaluator.evaluate(UNHEALTHY)
        clock.advance(5.0)
    assert states(sink) == ["firing"]
    assert evaluator.active == frozenset({"SYSTEM_UNHEALTHY"})


def test_resolved_once_when_it_clears() -> None:
    """Clearing sends one "resolved", however many quiet evaluations follow."""
    evaluator, clock, sink = make()
    evaluator.evaluate(UNHEALTHY)
    clock.advance(5.0)
    returned = evaluator.evaluate(QUIET)
    for _ in range(20):
        clock.advance(5.0)
        evaluator.evaluate(QUIET)
    assert states(sink) == ["firing", "resolved"]
    assert [e.state for e in returned] == ["resolved"]
    assert returned[0].message.startswith("resolved:")
    assert evaluator.active == frozenset()


def test_quiet_signals_send_nothing() -> None:
    """No condition true, nothing was firing: no events, not even "resolved"."""
    evaluator, clock, sink = make()
    for _ in range(10):
        assert evaluator.evaluate(QUIET) == []
        clock.advance(1.0)
    assert sink.events == []


def test_cooldown_resends_while_still_active() -> None:
    """A still-true condition is re-sent once the cooldown has elapsed, not before."""
    evaluator, clock, sink = make()
    evaluator.evaluate(UNHEALTHY)
    clock.advance(COOLDOWN - 0.001)
    evaluator.evaluate(UNHEALTHY)
    assert states(sink) == ["firing"]
    clock.advance(0.001)
    again = evaluator.evaluate(UNHEALTHY)
    assert [e.state for e in again] == ["firing"]
    assert "still firing since" in again[0].message
    clock.advance(COOLDOWN / 2)
    evaluator.evaluate(UNHEALTHY)
    assert states(sink) == ["firing", "firing"]


def test_flapping_within_cooldown_is_held_and_resolved_once() -> None:
    """Fire, clear (resolved), return within the cooldown: held silently; a held episode
    that clears sends no second "resolved"; one that persists is sent after the cooldown."""
    evaluator, clock, sink = make()
    evaluator.evaluate(UNHEALTHY)  # t=0: firing
    clock.advance(10)
    evaluator.evaluate(QUIET)  # resolved
    for _ in range(5):  # flaps inside the cooldown
        clock.advance(10)
        assert evaluator.evaluate(UNHEALTHY) == []
        clock.advance(10)
        assert evaluator.evaluate(QUIET) == []
    assert states(sink) == ["firing", "resolved"]
    clock.advance(10)
    evaluator.evaluate(UNHEALTHY)  # returns and stays
    clock.advance(COOLDOWN)  # past the cooldown of the first firing
    back = evaluator.evaluate(UNHEALTHY)
    assert [e.state for e in back] == ["firing"]
    assert "still firing" not in back[0].message
    clock.advance(10)
    evaluator.evaluate(QUIET)
    assert states(sink) == ["firing", "resolved", "firing", "resolved"]


def test_returns_after_cooldown_fires_at_once() -> None:
    """A condition that comes back after the cooldown fires on that evaluation."""
    evaluator, clock, sink = make()
    evaluator.evaluate(UNHEALTHY)
    clock.advance(1)
    evaluator.evaluate(QUIET)
    clock.advance(COOLDOWN)
    assert [e.state for e in evaluator.evaluate(UNHEALTHY)] == ["firing"]
    assert states(sink) == ["firing", "resolved", "firing"]


def test_zero_cooldown_fires_every_evaluation() -> None:
    """cooldown_s=0 disables deduplication."""
    evaluator, clock, sink = make(cooldown_s=0.0)
    for _ in range(3):
        evaluator.evaluate(UNHEALTHY)
        clock.advance(1)
    assert states(sink) == ["firing"] * 3


def test_rejects_negative_cooldown() -> None:
    """A negative cooldown is a programming error."""
    with pytest.raises(ValueError, match="cooldown_s"):
        make(cooldown_s=-1.0)


def test_event_fields() -> None:
    """Events carry severity, value, threshold, ISO UTC time and the instance id."""
    evaluator, _, _ = make()
    (event,) = evaluator.evaluate(AlertSignals(redis_failures_recent=7))
    assert event == AlertEvent(
        name="REDIS_MULTIPLE_FAILURES",
        severity="warning",
        state="firing",
        message=event.message,
        value=7,
        threshold=5,
        at="2023-11-14T22:13:20.000Z",
        instance_id="node-1",
    )
    assert "7 recent Redis failures" in event.message
    assert json.loads(json.dumps(event.to_dict()))["at"] == "2023-11-14T22:13:20.000Z"


def test_failing_sink_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    """A sink that raises is logged; the next sink still gets the event."""

    class Broken:
        def send(self, event: AlertEvent) -> None:
            raise RuntimeError("boom")

    good = RecordingSink()
    evaluator = AlertEvaluator(THRESHOLDS, [Broken(), good], FakeClock(wall=WALL), 60, "i")
    with caplog.at_level(logging.ERROR, logger="reference.alerts"):
        events = evaluator.evaluate(UNHEALTHY)
    assert good.events == events and len(events) == 1
    assert any("Broken" in r.getMessage() for r in caplog.records)


# -- the four rules ---------------------------------------------------------------------

ONE_RULE_EACH = {
    "redis failures": (AlertSignals(redis_failures_recent=5), "REDIS_MULTIPLE_FAILURES"),
    "redis open": (AlertSignals(redis_circuit="OPEN"), "REDIS_MULTIPLE_FAILURES"),
    "fallback": (
        AlertSignals(cache_reads_recent=100, fallback_usage=0.9),
        "HIGH_CACHE_FALLBACK_USAGE",
    ),
    "file recent": (AlertSignals(file_backups_recent=1), "AUDITORIA_FILE_BACKUP_ACTIVE"),
    "file backlog": (AlertSignals(journal_backlog=3), "AUDITORIA_FILE_BACKUP_ACTIVE"),
    "unhealthy": (UNHEALTHY, "SYSTEM_UNHEALTHY"),
    "queue unsafe": (AlertSignals(audit_queue_unsafe=True), "AUDIT_QUEUE_UNSAFE"),
    "chain broken": (AlertSignals(journal_chain_breaks_recent=1), "AUDIT_JOURNAL_CHAIN_BROKEN"),
}


@pytest.mark.parametrize(("signals", "name"), ONE_RULE_EACH.values(), ids=ONE_RULE_EACH.keys())
def test_each_rule_fires_from_its_own_signal_only(signals: AlertSignals, name: str) -> None:
    """One abnormal signal fires exactly its own rule."""
    evaluator, _, _ = make()
    assert [(e.name, e.state) for e in evaluator.evaluate(signals)] == [(name, "firing")]


def test_all_rules_fire_together_in_order() -> None:
    """Every abnormal signal at once fires every rule: the seed's four in the seed's order,
    then the audit's own two."""
    evaluator, _, _ = make()
    signals = AlertSignals(6, "OPEN", 50, 0.8, 2, 2, "UNHEALTHY", True, 1)
    events = evaluator.evaluate(signals)
    assert [e.name for e in events] == [r.name for r in RULES]
    severities = ["warning", "warning", "critical", "critical", "critical", "critical"]
    assert [e.severity for e in events] == severities


@pytest.mark.parametrize(
    "signals",
    [
        AlertSignals(redis_failures_recent=4),
        AlertSignals(redis_circuit="HALF_OPEN"),
        AlertSignals(cache_reads_recent=100, fallback_usage=0.5),  # not strictly above
        AlertSignals(health_status="DEGRADED"),
    ],
    ids=["failures-below", "half-open", "fallback-at-threshold", "degraded"],
)
def test_below_thresholds_nothing_fires(signals: AlertSignals) -> None:
    """Values just short of each threshold fire nothing."""
    evaluator, _, _ = make()
    assert evaluator.evaluate(signals) == []


def test_fallback_needs_minimum_reads() -> None:
    """1 fallback of 1 read does not fire; the same ratio over min_cache_reads does."""
    evaluator, _, _ = make()
    assert evaluator.evaluate(AlertSignals(cache_reads_recent=1, fallback_usage=1.0)) == []
    assert evaluator.evaluate(AlertSignals(cache_reads_recent=19, fallback_usage=1.0)) == []
    fired = evaluator.evaluate(AlertSignals(cache_reads_recent=20, fallback_usage=1.0))
    assert [e.name for e in fired] == ["HIGH_CACHE_FALLBACK_USAGE"]


def test_thresholds_and_evaluator_from_settings() -> None:
    """Settings' thresholds, cooldown and instance id reach the evaluator."""
    settings = Settings(
        alert_redis_failures_threshold=2,
        alert_fallback_usage_threshold=0.25,
        alert_cooldown_s=7.0,
        instance_id="blue",
    )
    thresholds = alert_thresholds(settings, min_cache_reads=3)
    assert thresholds == AlertThresholds(redis_failures=2, fallback_usage=0.25, min_cache_reads=3)
    clock, sink = FakeClock(wall=WALL), RecordingSink()
    evaluator = alert_evaluator(settings, [sink], clock)
    evaluator.evaluate(AlertSignals(redis_failures_recent=2))
    clock.advance(6.999)
    evaluator.evaluate(AlertSignals(redis_failures_recent=2))
    clock.advance(0.001)
    evaluator.evaluate(AlertSignals(redis_failures_recent=2))
    assert [(e.name, e.instance_id) for e in sink.events] == [
        ("REDIS_MULTIPLE_FAILURES", "blue")
    ] * 2


# -- signal window ----------------------------------------------------------------------


def observe(window: SignalWindow, counters: CumulativeCounters) -> AlertSignals:
    return window.observe(
        counters, redis_circuit="CLOSED", journal_backlog=0, health_status="HEALTHY"
    )


def test_window_zero_gives_deltas_since_previous_observation() -> None:
    """window_s=0: "recent" is the increase since the previous observation."""
    clock = FakeClock(wall=WALL)
    window = SignalWindow(clock, 0.0)
    first = observe(window, CumulativeCounters(3, 10, 4, 1))
    assert (first.redis_failures_recent, first.cache_reads_recent) == (3, 10)
    assert first.fallback_usage == pytest.approx(0.4)
    assert first.file_backups_recent == 1
    clock.advance(5)
    second = observe(window, CumulativeCounters(4, 30, 4, 1))
    assert (second.redis_failures_recent, second.cache_reads_recent) == (1, 20)
    assert (second.fallback_usage, second.file_backups_recent) == (0.0, 0)
    clock.advance(5)
    idle = observe(window, CumulativeCounters(4, 30, 4, 1))
    assert (idle.cache_reads_recent, idle.fallback_usage) == (0, 0.0)


def test_window_slides_over_window_s() -> None:
    """With window_s=10 and a sample every 5 s, "recent" spans the last 10 s."""
    clock = FakeClock(wall=WALL)
    window = SignalWindow(clock, 10.0)
    totals = [2, 5, 9, 14]
    recents = []
    for n in totals:
        clock.advance(5)
        recents.append(observe(window, CumulativeCounters(redis_failures=n)).redis_failures_recent)
    # t=5: 2-0; t=10: 5-0 (the initial sample is exactly 10 s old); t=15: 9-2; t=20: 14-5
    assert recents == [2, 5, 7, 9]


def test_window_never_negative_and_passes_through_state() -> None:
    """A counter reset gives 0, not a negative delta; circuit/backlog/health pass through."""
    clock = FakeClock(wall=WALL)
    window = SignalWindow(clock, 0.0, CumulativeCounters(redis_failures=10))
    signals = window.observe(
        CumulativeCounters(redis_failures=3),
        redis_circuit="OPEN",
        journal_backlog=4,
        health_status="DEGRADED",
    )
    assert signals == AlertSignals(0, "OPEN", 0, 0.0, 0, 4, "DEGRADED")


def test_counters_from_totals_follow_resilience_metrics() -> None:
    """The totals ResilienceMetrics hands over match what it recorded."""
    metrics = ResilienceMetrics()
    for _ in range(3):
        metrics.record_cache_hit("l1")
    metrics.record_cache_hit("l2")
    metrics.record_cache_miss()
    metrics.record_loader_fallback()
    metrics.record_stale_served()
    metrics.record_redis_failure()
    metrics.record_redis_failure()
    metrics.record_audit_event("file")
    metrics.record_audit_event("db")
    counters = CumulativeCounters.from_totals(metrics.totals())
    assert counters == CumulativeCounters(
        redis_failures=2, cache_reads=6, cache_fallbacks=2, file_backups=1
    )
    signals = observe(SignalWindow(FakeClock(wall=WALL), 0.0), counters)
    assert signals.fallback_usage == pytest.approx(metrics.snapshot().fallback_usage)


# -- run_forever ------------------------------------------------------------------------


async def test_run_forever_evaluates_async_and_sync_sources() -> None:
    """The loop evaluates from a coroutine source or a plain one, and survives errors."""
    for kind in ("async", "sync"):
        evaluator, clock, sink = make()
        calls = 0

        def next_signals() -> AlertSignals:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("source failed once")
            return UNHEALTHY if calls < 4 else QUIET

        async def async_source() -> AlertSignals:
            return next_signals()

        source = async_source if kind == "async" else next_signals
        task = asyncio.create_task(evaluator.run_forever(source, 0.01))
        try:
            await drive(clock, lambda: len(sink.events) >= 2, step_s=0.01)  # noqa: B023
        finally:
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        assert states(sink) == ["firing", "resolved"], kind
        assert task.cancelled()


async def test_run_forever_skips_a_source_that_hangs() -> None:
    """A source slower than its timeout is skipped; the loop keeps going."""
    evaluator, clock, sink = make()
    calls = 0

    async def source() -> AlertSignals:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)
        return UNHEALTHY

    task = asyncio.create_task(evaluator.run_forever(source, 0.01, source_timeout_s=0.05))
    try:
        await drive(clock, lambda: len(sink.events) >= 1, step_s=0.01, timeout_s=2.0)
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    assert calls >= 2 and states(sink) == ["firing"]


# -- LogSink ----------------------------------------------------------------------------


def test_log_sink_levels_and_fields(caplog: pytest.LogCaptureFixture) -> None:
    """Critical firings log at ERROR, warnings at WARNING, resolutions at INFO."""
    logger = logging.getLogger("test.alerts.logsink")
    evaluator, clock, _ = make()
    evaluator = AlertEvaluator(THRESHOLDS, [LogSink(logger)], clock, 60, "n")
    with caplog.at_level(logging.INFO, logger=logger.name):
        evaluator.evaluate(AlertSignals(redis_failures_recent=9, health_status="UNHEALTHY"))
        clock.advance(1)
        evaluator.evaluate(QUIET)
    seen = [(r.levelno, r.alert["name"], r.alert["state"]) for r in caplog.records]  # type: ignore[attr-defined]
    assert seen == [
        (logging.WARNING, "REDIS_MULTIPLE_FAILURES", "firing"),
        (logging.ERROR, "SYSTEM_UNHEALTHY", "firing"),
        (logging.INFO, "REDIS_MULTIPLE_FAILURES", "resolved"),
        (logging.INFO, "SYSTEM_UNHEALTHY", "resolved"),
    ]
    assert "alert firing SYSTEM_UNHEALTHY [critical]" in caplog.records[1].getMessage()


# -- WebhookSink ------------------------------------------------------------------------


def an_event(n: int = 0) -> AlertEvent:
    return AlertEvent(
        "SYSTEM_UNHEALTHY", "critical", "firing", f"event {n}", "UNHEALTHY", "UNHEALTHY",
        "2023-11-14T22:13:20.000Z", "node-1",
    )  # fmt: skip


class Receiver(ThreadingHTTPServer):
    """A local HTTP server that records JSON bodies and answers `status`."""

    status = 204
    received: list[dict[str, object]]

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/hooks/s3cr3t-path"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(("127.0.0.1", 0), _Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
async def hanging_url() -> AsyncIterator[str]:
    """A server that accepts connections and never answers."""
    release = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), timeout=30)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        release.set()
        for writer in writers:
            writer.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), timeout=5)


async def test_webhook_posts_json_to_a_real_receiver(receiver: Receiver) -> None:
    """The receiver gets the event's JSON; the sink counts it sent."""
    sink = WebhookSink(receiver.url, timeout_s=2.0)
    await sink.start()
    try:
        sink.send(an_event(1))
        await wait_until(lambda: sink.sent == 1)
    finally:
        await sink.aclose(timeout_s=2.0)
    assert receiver.received == [an_event(1).to_dict()]
    assert (sink.sent, sink.failed, sink.dropped) == (1, 0, 0)


async def test_webhook_error_answers_count_as_failed(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A 500 answer counts as failed and is logged without the URL's secret path."""
    receiver.status = 500
    sink = WebhookSink(receiver.url, timeout_s=2.0)
    await sink.start()
    try:
        with caplog.at_level(logging.WARNING, logger="reference.alerts"):
            sink.send(an_event())
            await wait_until(lambda: sink.failed == 1)
    finally:
        await sink.aclose(timeout_s=2.0)
    assert (sink.sent, sink.failed) == (0, 1)
    text = caplog.text
    assert "500" in text and "s3cr3t-path" not in text


async def test_webhook_connection_refused_counts_as_failed(receiver: Receiver) -> None:
    """Nobody listening: the POST fails and is counted, nothing is raised."""
    url = receiver.url
    receiver.shutdown()
    receiver.server_close()
    sink = WebhookSink(url, timeout_s=2.0)
    await sink.start()
    try:
        sink.send(an_event())
        await wait_until(lambda: sink.failed == 1)
    finally:
        await sink.aclose(timeout_s=2.0)
    assert sink.sent == 0


async def test_hanging_webhook_never_slows_send(hanging_url: str) -> None:
    """100 sends to a webhook that never answers return at once; failures are counted
    after the POST timeout; aclose is bounded and accounts for every event."""
    sink = WebhookSink(hanging_url, timeout_s=0.2, queue_size=8)
    await sink.start()
    try:
        started = time.perf_counter()
        for n in range(100):
            sink.send(an_event(n))
        elapsed = time.perf_counter() - started
        assert elapsed < 0.05
        await wait_until(lambda: sink.failed >= 1, timeout_s=3.0)
        assert time.perf_counter() - started >= 0.2
    finally:
        closing = time.perf_counter()
        await sink.aclose(timeout_s=0.3)
        assert time.perf_counter() - closing < 2.0
    assert sink.sent == 0 and sink.dropped >= 92
    assert sink.sent + sink.failed + sink.dropped == 100


async def test_full_queue_drops_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    """Beyond queue_size the events are dropped and counted (one warning, not one each);
    events still queued at close are counted as dropped too."""
    sink = WebhookSink("http://127.0.0.1:9/never", timeout_s=1.0, queue_size=2)
    with caplog.at_level(logging.WARNING, logger="reference.alerts"):
        for n in range(5):
            sink.send(an_event(n))
    assert (sink.pending, sink.dropped) == (2, 3)
    assert sum("queue full" in r.getMessage() for r in caplog.records) == 1
    await sink.aclose()
    assert (sink.pending, sink.dropped, sink.sent, sink.failed) == (0, 5, 0, 0)
    sink.send(an_event())
    assert sink.dropped == 6


async def test_evaluator_to_webhook_end_to_end(receiver: Receiver) -> None:
    """Firing and resolved reach the webhook through the evaluator."""
    sink = WebhookSink(receiver.url, timeout_s=2.0)
    await sink.start()
    clock = FakeClock(wall=WALL)
    evaluator = AlertEvaluator(THRESHOLDS, [sink], clock, 60, "n")
    try:
        evaluator.evaluate(replace(QUIET, journal_backlog=2))
        clock.advance(1)
        evaluator.evaluate(QUIET)
        await wait_until(lambda: sink.sent == 2)
    finally:
        await sink.aclose(timeout_s=2.0)
    assert [(b["name"], b["state"]) for b in receiver.received] == [
        ("AUDITORIA_FILE_BACKUP_ACTIVE", "firing"),
        ("AUDITORIA_FILE_BACKUP_ACTIVE", "resolved"),
    ]
