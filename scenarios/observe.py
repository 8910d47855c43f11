"""What an operator sees during a run, recorded into the history for the checkers.

- Alerts: every notification the target POSTs to the harness's webhook receiver becomes
  an `alert` operation (key = the alert's name, response = its JSON body), timed on the
  history's clock when it arrives.
- Dashboards: every `interval_s`, per instance, `/resilience`, `/health` and `/metrics`
  are read back to back and recorded as one `observe` operation whose response is
  `{"resilience": {...}, "health": {...}, "metrics": {"<sample>": value}}` (only the
  `stormproof_*` samples of the Prometheus text, parsed with prometheus_client).

Reading the three together makes their comparison fair: a breaker transition between two
reads shows as a single disagreeing sample, not as a pattern. The dashboards are polled
only when a scenario checks them (`poll`): those reads reach Redis, and during a Redis
black hole they measurably raised the p95 of the workload's own requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from scenarios.history_recorder import HistoryRecorder
from scenarios.webhook import WebhookReceiver

ALERT_F = "alert"
OBSERVE_F = "observe"
ALERT_PROCESS = 9_000
OBSERVE_PROCESS = 9_100
METRIC_PREFIX = "stormproof_"


def parse_metrics(text: str) -> dict[str, float]:
    """`name{label="v",...}` -> value for every `stormproof_*` sample of a Prometheus text."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(METRIC_PREFIX):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


class Observer:
    """Records alerts and dashboard samples of `urls` into `recorder` until stopped."""

    def __init__(
        self,
        receiver: WebhookReceiver,
        recorder: HistoryRecorder,
        urls: Sequence[str],
        instance_ids: Sequence[str],
        interval_s: float = 0.5,
        poll: bool = True,
    ) -> None:
        self._receiver = receiver
        self._recorder = recorder
        self._targets = list(zip(urls, instance_ids, strict=True))
        self._interval_s = interval_s
        self._poll_dashboards = poll
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Observer:
        """Start recording alerts (from now on) and polling the dashboards."""
        self._receiver.listener = self._on_alert
        if self._poll_dashboards:
            self._task = asyncio.create_task(self._poll(), name="observer")
        return self

    async def stop(self) -> None:
        """Stop polling and recording alerts (idempotent)."""
        self._receiver.listener = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _on_alert(self, body: dict[str, Any]) -> None:
        name = str(body.get("name", ""))
        instance = str(body.get("instance_id") or "") or None
        invoked = self._recorder.invoke(ALERT_PROCESS, ALERT_F, name, {}, instance)
        self._recorder.complete(invoked, "ok", body)

    async def _poll(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                for number, (url, instance) in enumerate(self._targets):
                    await self._sample(client, number, url, instance)
                await asyncio.sleep(self._interval_s)

    async def _sample(
        self, client: httpx.AsyncClient, number: int, url: str, instance: str
    ) -> None:
        invoked = self._recorder.invoke(OBSERVE_PROCESS + number, OBSERVE_F, None, {}, instance)
        try:
            resilience = (await client.get(f"{url}/resilience")).json()
            health = (await client.get(f"{url}/health")).json()
            metrics = parse_metrics((await client.get(f"{url}/metrics")).text)
        except (httpx.HTTPError, ValueError) as exc:
            self._recorder.complete(invoked, "info", error=f"{type(exc).__name__}: {exc}")
            return
        value = {"resilience": resilience, "health": health, "metrics": metrics}
        self._recorder.complete(invoked, "ok", value)
