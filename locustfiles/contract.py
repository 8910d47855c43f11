"""Locust load against the target contract, in phases: warmup -> baseline -> fault -> recovery.

Run it through `stormproof load` (which starts the stack and the target, seeds the data,
runs this file headless and applies thresholds), or by hand against a target you started:

    python -m locust -f locustfiles/contract.py --headless --host http://127.0.0.1:8000 \
        --csv out/locust --html out/locust.html

Configuration: the environment, read once by `LoadEnv.from_env` (scenarios/load/env.py, the
typed contract with `stormproof load`; every variable optional, a bad value stops start-up
naming the variable):

    STORMPROOF_LOAD_PHASES      "20,20,20": seconds of baseline, fault and recovery
    STORMPROOF_LOAD_WARMUP_S    2: users start and caches warm; labelled [warmup], not judged
    STORMPROOF_LOAD_USERS       20 users, 3 readers to 1 writer;
                                STORMPROOF_LOAD_SPAWN_RATE (default: all at once)
    STORMPROOF_LOAD_USER_RPS    10: each user's pace (constant_throughput), so a healthy
                                target sees users x pace requests/s in every phase
    STORMPROOF_LOAD_TIMEOUT_S   5: client connect and network timeout
    STORMPROOF_LOAD_FAULT       redis-blackhole (a network fault of scenarios.faults; "none")
    STORMPROOF_TOXIPROXY_URL    the Toxiproxy API the fault goes through
    STORMPROOF_LOAD_IDS         "load-1,...,load-20": beneficio ids (must exist: seed them)
    STORMPROOF_LOAD_CACHE_KEYS  "load-k1,...,load-k20": cache keys read and written
    STORMPROOF_LOAD_ACKS        file for acknowledged audit event ids (one per line, flushed);
                                a distributed worker appends ".<pid>" to it
    STORMPROOF_LOAD_PHASE_LOG   JSON file: when each phase started and ended, and the fault

Every request's name carries its phase ("[fault] GET /beneficios/[id]"), and each phase gets
two summary rows of type PHASE ("[fault] reads", "[fault] writes") so the CSV and HTML
reports have exact per-phase percentiles for reads and for writes.

Only the master (or the single local process) runs the shape, moves the phases and injects
the fault; it tells the workers the phase with a custom message. The fault is reverted when
its phase ends, and again (idempotently) at test stop, at quit and at exit.

Locust imports this file as a module named after the file (`contract`): the file must not
be named like a package the harness imports (it was `reference.py` once, which shadowed the
`reference` package inside the Locust process; see docs/DECISIONS.md). It still imports
nothing from `reference`, directly or through a scenarios module (scenarios.faults,
scenarios.toxiproxy and scenarios.load.env do not), so Locust's gevent patching stays away
from the service's code.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import random
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import gevent
from locust import FastHttpUser, LoadTestShape, constant_throughput, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from scenarios.faults import NETWORK_KINDS, FaultInjector, FaultSpec
from scenarios.load.env import LoadEnv
from scenarios.toxiproxy import Toxiproxy

_log = logging.getLogger("stormproof.load")

PHASE_MESSAGE = "stormproof_phase"
SUMMARY_TYPE = "PHASE"


SETTINGS = LoadEnv.from_env(os.environ)
USERS = SETTINGS.users
USER_RPS = SETTINGS.user_rps
FAULT = SETTINGS.fault


class _State:
    """What this process knows: the current phase, its environment, where acks go."""

    phase = "warmup"
    environment: Environment | None = None
    acks: Any = None  # an open text file, or None when acks are not recorded


def _set_phase(name: str) -> None:
    _State.phase = name


def _record_ack(event_id: str) -> None:
    if _State.acks is not None:
        _State.acks.write(event_id + "\n")
        _State.acks.flush()


def _listen(hook: Any, listener: Callable[..., None]) -> None:
    """`hook.add_listener(listener)` (Locust's event hooks are untyped)."""
    hook.add_listener(listener)


def _on_phase_message(msg: Any, **_: Any) -> None:
    _set_phase(str(msg.data["phase"]))


def _on_init(environment: Environment, **_: Any) -> None:
    _State.environment = environment
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(PHASE_MESSAGE, _on_phase_message)
    else:
        # Headless with a shape, Locust installs its SIGTERM handler only after the shape
        # has finished: a SIGTERM during the run would kill it with the fault applied.
        gevent.signal_handler(signal.SIGTERM, _on_sigterm)
    path = SETTINGS.acks
    if path is not None and not isinstance(runner, MasterRunner):
        name = f"{path}.{os.getpid()}" if isinstance(runner, WorkerRunner) else path
        _State.acks = open(name, "a", encoding="utf-8")  # noqa: SIM115 (closed at quit)


def _close_acks(**_: Any) -> None:
    if _State.acks is not None:
        _State.acks.close()
        _State.acks = None


def _summarise(
    response_time: float | None,
    response_length: int | None,
    exception: Exception | None,
    context: dict[str, Any],
    **_: Any,
) -> None:
    """Log each read or write again into its phase's summary row ("[fault] reads")."""
    kind = context.get("stormproof_kind")
    environment = _State.environment
    if kind is None or environment is None:
        return
    entry = environment.stats.get(f"[{context['stormproof_phase']}] {kind}s", SUMMARY_TYPE)
    entry.log(response_time, response_length or 0)  # type: ignore[arg-type]
    if exception is not None:
        entry.log_error(exception)


_listen(events.init, _on_init)
_listen(events.quitting, _close_acks)
_listen(events.request, _summarise)


class _ContractUser(FastHttpUser):
    """A user at a fixed pace whose request names carry the phase."""

    abstract = True
    wait_time = constant_throughput(USER_RPS)
    network_timeout = SETTINGS.timeout_s
    connection_timeout = SETTINGS.timeout_s

    def _request(self, method: str, path: str, label: str, kind: str | None, **kw: Any) -> Any:
        phase = _State.phase
        context = {"stormproof_phase": phase, "stormproof_kind": kind} if kind else {}
        return self.client.request(
            method,
            path,
            name=f"[{phase}] {method} {label}",
            context=context,
            catch_response=True,
            **kw,
        )


class Reader(_ContractUser):
    """Three users in four: cached reads of beneficios and cache keys, a little /health.

    Readers and writers are separate users so that each one's pace depends only on its own
    requests: a write stuck on a dead database does not thin out the reads.
    """

    weight = 3

    @task(80)
    def read_beneficio(self) -> None:
        beneficio = random.choice(SETTINGS.ids)
        with self._request("GET", f"/beneficios/{beneficio}", "/beneficios/[id]", "read") as r:
            if r.status_code != 200:
                r.failure(_why(r))

    @task(20)
    def read_cache(self) -> None:
        key = random.choice(SETTINGS.cache_keys)
        with self._request("GET", f"/cache/{key}", "/cache/[key]", "read") as r:
            if r.status_code in (200, 404):  # a miss is an answer
                r.success()
            else:
                r.failure(_why(r))

    @task(3)
    def health(self) -> None:
        with self._request("GET", "/health", "/health", None) as r:
            if r.status_code in (200, 503):  # UNHEALTHY is an answer too
                r.success()
            else:
                r.failure(_why(r))


class Writer(_ContractUser):
    """One user in four: beneficio updates (audited), cache writes, audit events."""

    weight = 1

    @task(8)
    def write_beneficio(self) -> None:
        beneficio = random.choice(SETTINGS.ids)
        body = {
            "nome": f"beneficio {beneficio}",
            "valor": random.randint(100, 100_000),
            "v": random.randint(1, 2**31),
            "event_id": str(uuid.uuid4()),
            "actor": "locust",
        }
        path = f"/beneficios/{beneficio}"
        with self._request("PUT", path, "/beneficios/[id]", "write", json=body) as r:
            if r.status_code != 200:
                r.failure(_why(r))
                return
            try:
                event_id = str(r.json()["audit"]["event_id"])
            except (ValueError, KeyError, TypeError):
                r.failure("2xx without audit.event_id")
                return
            _record_ack(event_id)  # acknowledged: it must be in audit_log after recovery

    @task(5)
    def write_cache(self) -> None:
        key = random.choice(SETTINGS.cache_keys)
        body = {"value": {"n": random.randint(0, 10**6), "at": time.time()}, "ttl_s": 600}
        with self._request("PUT", f"/cache/{key}", "/cache/[key]", "write", json=body) as r:
            if r.status_code != 204:
                r.failure(_why(r))

    @task(10)
    def post_audit(self) -> None:
        event_id = str(uuid.uuid4())
        body = {
            "event_id": event_id,
            "actor": "locust",
            "action": "load.audit",
            "entity": "load",
            "entity_id": str(random.randint(1, 1000)),
            "payload": {"phase": _State.phase},
        }
        with self._request("POST", "/audit", "/audit", "write", json=body) as r:
            if r.status_code != 202:
                r.failure(_why(r))
                return
            _record_ack(event_id)


def _why(response: Any) -> str:
    if not response.status_code:  # timed out or refused: FastHttp reports status 0
        return f"no answer: {getattr(response, 'error', None)}"
    return f"HTTP {response.status_code}"


# -- the phases and the fault (master or local process only) --------------------------------


def _fault_injector() -> FaultInjector:
    """An injector on the Toxiproxy at $STORMPROOF_TOXIPROXY_URL (network faults only)."""
    if not SETTINGS.toxiproxy_url:
        raise RuntimeError("STORMPROOF_TOXIPROXY_URL is not set: nowhere to inject the fault")
    return FaultInjector(Toxiproxy(SETTINGS.toxiproxy_url))


class PhaseClock:
    """Moves through the phases on time, injects and reverts the fault, logs what happened."""

    def __init__(self, environment: Environment) -> None:
        self._environment = environment
        self._log_path = SETTINGS.phase_log
        self._injector: FaultInjector | None = None
        self._spec: FaultSpec | None = None
        self.done = False
        self.record: dict[str, Any] = {
            "fault": {"name": FAULT, "applied_at": None, "reverted_at": None, "error": None},
            "users": USERS,
            "user_rps": USER_RPS,
            "phases": [],
        }
        self._greenlet: gevent.Greenlet | None = None
        self._t0 = time.monotonic()

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._greenlet = gevent.spawn(self._run)

    def _enter(self, name: str) -> None:
        phases = self.record["phases"]
        now = time.monotonic() - self._t0
        if phases:
            phases[-1]["end_s"] = now
        phases.append({"name": name, "start_s": now, "end_s": None})
        _set_phase(name)
        runner = self._environment.runner
        if isinstance(runner, MasterRunner):
            runner.send_message(PHASE_MESSAGE, {"phase": name})
        _log.info("phase %s at +%.1fs", name, now)
        self._write()

    def _sleep_until(self, moment: float) -> None:
        gevent.sleep(max(0.0, self._t0 + moment - time.monotonic()))

    def _run(self) -> None:
        baseline, fault, recovery = SETTINGS.phases
        try:
            self._enter("warmup")
            self._sleep_until(SETTINGS.warmup_s)
            self._enter("baseline")
            self._sleep_until(SETTINGS.warmup_s + baseline)
            self._enter("fault")
            self._inject()
            self._sleep_until(SETTINGS.warmup_s + baseline + fault)
            self.revert()
            self._enter("recovery")
            self._sleep_until(SETTINGS.warmup_s + baseline + fault + recovery)
            self._enter("stop")
        finally:
            self.revert()
            self.done = True

    def _inject(self) -> None:
        if FAULT == "none":
            return
        try:
            spec = FaultSpec.parse(FAULT)
            if spec.kind not in NETWORK_KINDS:
                raise ValueError(f"{FAULT}: only network faults can be injected under load")
            self._injector = _fault_injector()
            self._spec = self._injector.apply(spec)
        except Exception as exc:
            _log.error("fault %s not injected: %s", FAULT, exc)
            self.record["fault"]["error"] = f"{type(exc).__name__}: {exc}"
        else:
            self.record["fault"]["applied_at"] = time.monotonic() - self._t0
            _log.info("fault %s injected", FAULT)
        self._write()

    def revert(self) -> None:
        """Undo the fault if it is still applied (idempotent; never raises)."""
        injector = self._injector
        if injector is None or not injector.active:
            return
        errors = injector.revert_all()
        fault = self.record["fault"]
        if errors:
            fault["error"] = "revert failed: " + "; ".join(errors)
            _log.error("fault %s revert failed: %s", FAULT, errors)
        else:
            fault["reverted_at"] = time.monotonic() - self._t0
            _log.info("fault %s reverted", FAULT)
        self._write()

    def stop(self) -> None:
        """The test stopped (early or not): stop moving phases and revert the fault."""
        greenlet = self._greenlet
        if greenlet is not None and not greenlet.dead and gevent.getcurrent() is not greenlet:
            greenlet.kill(block=True, timeout=5)
        self.revert()

    def _write(self) -> None:
        path = self._log_path
        if path is None:
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.record, indent=2))
        os.replace(tmp, path)


class _Clock:
    current: PhaseClock | None = None


def _stop_clock(**_: Any) -> None:
    if _Clock.current is not None:
        _Clock.current.stop()


_listen(events.test_stop, _stop_clock)
_listen(events.quitting, _stop_clock)
atexit.register(lambda: _Clock.current.revert() if _Clock.current is not None else None)


def _on_sigterm() -> None:
    """Revert the fault first, then let Locust stop and write its reports."""
    _log.warning("SIGTERM: reverting the fault and stopping the test")
    _stop_clock()
    environment = _State.environment
    if environment is not None and environment.runner is not None:
        environment.runner.quit()


class FaultPhases(LoadTestShape):
    """USERS users throughout; the phase clock (started at the first tick) ends the test."""

    def tick(self) -> tuple[int, float] | None:
        clock = _Clock.current
        if clock is None:
            if self.runner is None:
                return None
            clock = _Clock.current = PhaseClock(self.runner.environment)
            clock.start()
        if clock.done:
            return None
        return USERS, SETTINGS.users_per_s
