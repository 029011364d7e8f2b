"""The worker's capacity view: the metrics topic, followed by the worker, feeding a :class:`CapacityMonitor`.

:mod:`tripwire.streams.app` wires it in with three lines: :meth:`CapacityAgent.window_sink` adds the
engine's windows (request rate, latency) to the view, :meth:`CapacityAgent.attach` has the worker
follow the metrics topic live. The view reads every record of the metrics topic partitions this
worker owns: the replica samples of ``tripwire compute sample`` (keyed by service, so one worker sees every replica of a service,
and, the metrics and input topics having the same partition count, the worker that monitors the
model of the same name) and the workers' own utilization samples. After each sample it judges the
view at the sample's time and publishes each changed advice as a ``capacity`` event on the alerts
topic (key: the service) and in the ``tripwire_recommended_replicas{service}`` gauge.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import orjson

from tripwire.compute.capacity import CapacityMonitor
from tripwire.compute.settings import capacity_settings
from tripwire.config import MonitorConfig

log = logging.getLogger("tripwire.worker")
WindowSink = Callable[[dict[str, Any]], None]


class CapacityAgent:
    def __init__(self, config: MonitorConfig, kafka: Any) -> None:
        self.monitor = CapacityMonitor(capacity_settings(config.capacity), worker_partitions=kafka.partitions)
        self.metrics_topic = kafka.topics["metrics"]
        self.alerts_topic = kafka.topics["alerts"]
        self.published = 0

    def window_sink(self, other: WindowSink | None = None) -> WindowSink:
        """The ``on_window`` sink for the worker: this view's, then ``other``'s (if any)."""
        observe = self.monitor.observe_window
        if other is None:
            return observe

        def both(window: dict[str, Any]) -> None:
            observe(window)
            other(window)

        return both

    def attach(self, worker: Any) -> None:
        """Have ``worker`` consume the metrics topic live and hand each record to this view."""
        async def on_value(value: bytes) -> None:
            for event in self.on_record(value, worker.metrics):
                await worker.send_now(self.alerts_topic, event["service"].encode(),
                                      orjson.dumps(event, option=orjson.OPT_SORT_KEYS))
                self.published += 1
                log.info("capacity: %s", event["message"])

        worker.follow(self.metrics_topic, on_value)

    def on_record(self, value: bytes, metrics: Any = None) -> list[dict[str, Any]]:
        """One record of the metrics topic -> the capacity events it causes (never raises on bad input)."""
        try:
            sample = orjson.loads(value)
        except (orjson.JSONDecodeError, TypeError):
            return []
        if not isinstance(sample, dict) or not self.monitor.observe_sample(sample):
            return []
        events = self.monitor.advise(float(sample["ts"]))
        if metrics is not None:
            metrics.observe_capacity(self.monitor.recommended)
        return events
