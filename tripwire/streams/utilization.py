"""Worker utilization: samples of CPU, memory, event-loop lag and consumer lag, and their alerts.

Every worker samples itself on a timer (:class:`Sampler`, psutil) and publishes each sample to the
metrics topic. :class:`UtilizationMonitor` is the pure part: it folds samples into tumbling windows
of ``window_seconds`` and raises ``infrastructure`` alerts (model ``*``, signal ``worker:<id>``)
through the same :class:`~tripwire.alerts.AlertPolicy` as the model detectors, so they fire once
and resolve once:

* ``cpu_percent``, ``memory_percent``, ``event_loop_lag_ms`` and ``unpublished`` (alerts, dead
  letters and checkpoints whose publish failed and waits for a retry) fire when the signal *stayed* above
  its threshold for the whole window (the window's minimum crosses it: one spike does not page);
* ``consumer_lag_growth`` fires when the consumer lag grew by more than the threshold over the
  window (records arrive faster than the worker processes them).

>>> monitor = UtilizationMonitor("w1", window_seconds=10)
>>> hot = {"cpu_percent": 99.0, "memory_percent": 40.0, "event_loop_lag_ms": 1.0, "consumer_lag": 0}
>>> [a["detector"] for t in range(0, 12, 2) for a in monitor.update({**hot, "ts": 1_800_000_000.0 + t})]
['cpu_percent']
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Mapping

from tripwire.alerts import AlertPolicy, Finding
from tripwire.config_tables import INFRASTRUCTURE_DETECTORS
from tripwire.events import format_ts
from tripwire.thresholds import DEFAULT_THRESHOLDS, Threshold

SUSTAINED = ("cpu_percent", "memory_percent", "event_loop_lag_ms", "unpublished")
UNITS = {"cpu_percent": "% of a core", "memory_percent": "% of host memory", "event_loop_lag_ms": " ms",
         "unpublished": " outputs awaiting a failed publish's retry",
         "consumer_lag_growth": " records"}


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class UtilizationMonitor:
    """Tumbling windows of utilization samples -> infrastructure alerts for one worker."""

    def __init__(self, worker_id: str, *, window_seconds: float = 60.0,
                 thresholds: Mapping[str, Threshold] | None = None, min_samples: int = 2,
                 resolve_windows: int = 2) -> None:
        self.worker_id = worker_id
        self.window_seconds = window_seconds
        self.thresholds = {name: (thresholds or {}).get(name, DEFAULT_THRESHOLDS[name])
                           for name in INFRASTRUCTURE_DETECTORS}
        self.policy = AlertPolicy(min_samples, resolve_windows)
        self._window: list[Mapping[str, Any]] = []

    @property
    def signal(self) -> str:
        return f"worker:{self.worker_id}"

    def update(self, sample: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Add one sample (``ts`` in epoch seconds); alerts when it closes a window."""
        if self._window and sample["ts"] - self._window[0]["ts"] >= self.window_seconds:
            alerts = self.close(sample)
            self._window = [sample]
            return alerts
        self._window.append(sample)
        return []

    def close(self, next_sample: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Judge the current window. The window runs up to the next sample (or its last one)."""
        window = self._window
        if not window:
            return []
        start = window[0]["ts"]
        end = next_sample["ts"] if next_sample is not None else window[-1]["ts"]
        findings = []
        for name in SUSTAINED:
            values = [s[name] for s in window if s.get(name) is not None]
            if values:
                findings.append(self._finding(name, min(values), start, end, len(values),
                                              {"min": min(values), "max": max(values), "last": values[-1]}))
        lags = [s["consumer_lag"] for s in window if s.get("consumer_lag") is not None]
        if next_sample is not None and next_sample.get("consumer_lag") is not None:
            lags.append(next_sample["consumer_lag"])
        if len(lags) >= 2:
            growth = lags[-1] - lags[0]
            findings.append(self._finding("consumer_lag_growth", growth, start, end, len(lags),
                                          {"first": lags[0], "last": lags[-1], "max": max(lags)}))
        alerts = []
        for finding in findings:
            alert = self.policy.evaluate(finding, model_version=None, reference=None, ts=end)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def _finding(self, name: str, value: float, start: float, end: float, n: int, evidence: dict[str, Any]) -> Finding:
        if name == "consumer_lag_growth":
            message = (f"consumer lag of worker {self.worker_id} grew by {value:,.0f} records in "
                       f"{end - start:.0f} s (now {evidence['last']:,.0f})")
        else:
            message = (f"{name.replace('_', ' ')} of worker {self.worker_id} was at least {value:.4g}"
                       f"{UNITS[name]} throughout {end - start:.0f} s ({n} samples)")
        return Finding(model="*", kind="infrastructure", signal=self.signal, detector=name, value=float(value),
                       threshold=self.thresholds[name], window_start=start, window_end=end, n=n,
                       evidence=evidence, message=message)


class Sampler:
    """psutil readings of this process and its host; call :meth:`sample` on a timer."""

    def __init__(self, worker_id: str) -> None:
        import psutil

        self.worker_id = worker_id
        self._psutil = psutil
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading is meaningless; start the interval now
        psutil.cpu_percent(None)

    def sample(self, *, event_loop_lag_ms: float | None, consumer_lag: int | None,
               now: float | None = None, **extra: Any) -> dict[str, Any]:
        psutil = self._psutil
        memory = psutil.virtual_memory()
        with self._process.oneshot():
            cpu = self._process.cpu_percent(None)
            rss = self._process.memory_info().rss
        ts = time.time() if now is None else now
        return {
            "type": "utilization", "schema": 1, "worker": self.worker_id, "ts": ts, "time": format_ts(ts),
            "cpu_percent": cpu, "host_cpu_percent": psutil.cpu_percent(None), "cpu_count": psutil.cpu_count(),
            "memory_percent": memory.percent, "rss_bytes": rss, "event_loop_lag_ms": event_loop_lag_ms,
            "consumer_lag": consumer_lag, **extra,
        }
