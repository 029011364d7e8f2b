"""Prometheus metrics of a worker, in the standard exposition format, from the standard client library.

Names follow the Prometheus conventions (``tripwire_..._total`` counters, base units). Window
statistics become gauges labelled by model, signal and statistic; their number is bounded by
``max_series`` so a model with unexpected feature names cannot blow up the scrape.
"""

from __future__ import annotations

import time
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from tripwire.detectors.registry import family_of_statistic
from tripwire.statistic_keys import split_statistic

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Window statistics worth a time series, with those of the registered detector families (their thresholded
# statistics); p-values and counts stay in the report and MLflow.
EXPORTED_STATISTICS = frozenset({
    "psi", "js", "wasserstein", "missing_rate", "type_error_rate", "out_of_range_rate", "unseen_rate",
    "latency_p50", "latency_p95", "latency_p99", "throughput_per_s", "demographic_parity_difference",
    "equalized_odds_difference", "disparate_impact_ratio",
})


class WorkerMetrics:
    """One registry per worker; the engine's outputs and the process samples feed it."""

    def __init__(self, max_series: int = 5000) -> None:
        self.registry = CollectorRegistry()
        self.max_series = max_series
        self.events = Counter("tripwire_events", "Records consumed, by input topic.", ["topic"], registry=self.registry)
        self.rejected = Counter("tripwire_records_rejected", "Records that broke the event contract (dead-lettered).",
                                registry=self.registry)
        self.alerts = Counter("tripwire_alerts", "Alerts published, by kind and severity (or 'resolved').",
                              ["kind", "severity"], registry=self.registry)
        self.lag = Gauge("tripwire_processing_lag_seconds",
                         "Wall-clock time minus the event time of the last processed event.", registry=self.registry)
        self.window = Gauge("tripwire_window_statistic", "Latest value of a monitored statistic per window.",
                            ["model", "signal", "statistic"], registry=self.registry)
        self.windows_dropped = Counter("tripwire_window_series_dropped",
                                       "Statistics not exported because max_series was reached.", registry=self.registry)
        self.cpu = Gauge("tripwire_process_cpu_percent", "CPU use of the worker process (percent of one core).",
                         registry=self.registry)
        self.memory = Gauge("tripwire_process_resident_memory_bytes", "Resident memory of the worker process.",
                            registry=self.registry)
        self.misrouted = Counter("tripwire_records_misrouted", "Input records not keyed by a monitored model.",
                                 registry=self.registry)
        self.publish_failures = Counter("tripwire_publish_failures", "Sends to the broker that failed (retried).",
                                        ["topic"], registry=self.registry)
        self.unpublished = Gauge("tripwire_unpublished_outputs",
                                 "Alerts and dead letters awaiting a retry; no checkpoint covers them.",
                                 registry=self.registry)
        self.open_alerts = Gauge("tripwire_open_alerts", "Alerts firing now.", ["kind"], registry=self.registry)
        self.recommended_replicas = Gauge("tripwire_recommended_replicas", "Replicas a service should run (the HPA "
                                          "rule with scale-down stabilisation, tripwire.compute).", ["service"],
                                          registry=self.registry)
        # Counted per data window by the engine (see ModelMonitor._join_stats): window stat -> counter.
        self.join_counters = {
            "join_evicted": Counter("tripwire_join_evicted", "Predictions and labels evicted from a model's label "
                                    "join, oldest first, past label_join_max_pending.", ["model"], registry=self.registry),
            "request_ids_duplicate": Counter("tripwire_request_ids_duplicate", "Predictions and labels refused "
                                             "(dead-lettered) for a request_id already waiting or joined.", ["model"],
                                             registry=self.registry),
        }
        self._series: set[tuple[str, str, str]] = set()
        self._process = psutil.Process()

    def observe_records(self, topic: str, count: int, rejected: int = 0) -> None:
        self.events.labels(topic=topic).inc(count)
        if rejected:
            self.rejected.inc(rejected)

    def observe_event_time(self, event_ts: float, now: float | None = None) -> None:
        self.lag.set(max(0.0, (time.time() if now is None else now) - event_ts))

    def observe_alert(self, alert: dict[str, Any]) -> None:
        severity = alert["severity"] if alert["status"] == "firing" else "resolved"
        self.alerts.labels(kind=alert["kind"], severity=severity).inc()

    def observe_open_alerts(self, alerts: list[dict[str, Any]]) -> None:
        counts: dict[str, int] = {}
        for alert in alerts:
            counts[alert["kind"]] = counts.get(alert["kind"], 0) + 1
        for kind in {*counts, *(labels[0] for labels in self._open_kinds())}:
            self.open_alerts.labels(kind=kind).set(counts.get(kind, 0))

    def _open_kinds(self) -> list[tuple[str, ...]]:
        return [tuple(sample.labels.values()) for metric in self.open_alerts.collect() for sample in metric.samples]

    def observe_capacity(self, recommended: dict[str, int]) -> None:
        """The latest advice per service; a service no longer in the view loses its series."""
        for labels in [tuple(s.labels.values()) for m in self.recommended_replicas.collect() for s in m.samples]:
            if labels[0] not in recommended:
                self.recommended_replicas.remove(*labels)
        for service, replicas in recommended.items():
            self.recommended_replicas.labels(service=service).set(replicas)

    def observe_window(self, window: dict[str, Any]) -> None:
        model = window["model"]
        for key, counter in self.join_counters.items():
            count = window["stats"].get(key)
            if count:
                counter.labels(model=model).inc(count)
        for key, value in window["stats"].items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            signal, statistic = split_statistic(key)
            if (statistic not in EXPORTED_STATISTICS and not signal.startswith(("performance", "estimated"))
                    and family_of_statistic(statistic) is None):
                continue
            series = (model, signal, statistic)
            if series not in self._series:
                if len(self._series) >= self.max_series:
                    self.windows_dropped.inc()
                    continue
                self._series.add(series)
            self.window.labels(model=model, signal=signal, statistic=statistic).set(value)

    def sample_process(self) -> dict[str, float]:
        cpu = self._process.cpu_percent(interval=None)
        rss = float(self._process.memory_info().rss)
        self.cpu.set(cpu)
        self.memory.set(rss)
        return {"cpu_percent": cpu, "resident_memory_bytes": rss}

    def render(self) -> bytes:
        return generate_latest(self.registry)
