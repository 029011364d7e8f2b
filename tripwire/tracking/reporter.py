"""Reporting back to MLflow: :class:`MlflowReporter` logs window statistics and alerts to monitoring runs."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import orjson

from tripwire.sinks.delivery import DeliveryRunner
from tripwire.tracking.references import DEFAULT_EXPERIMENT, _client, _finite, metric_key

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from tripwire.config import MonitorConfig

log = logging.getLogger("tripwire.tracking")


ALERTS_ARTIFACT = "alerts.jsonl"
_MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit


def window_metrics(window: Mapping[str, Any]) -> list[tuple[str, float, int, int]]:
    """One engine window as (key, value, timestamp ms, step) tuples: numeric stats plus ``<family>.n``."""
    timestamp = int(round(float(window["end"]) * 1000))
    step = int(window["index"])
    rows = [(f"{window['family']}.n", float(window["n"]), timestamp, step)]
    for name, value in window["stats"].items():
        if _finite(value):
            rows.append((metric_key(name), float(value), timestamp, step))
    return rows


@dataclass(eq=False)
class _Window:
    model: str
    version: str | None
    metrics: list[tuple[str, float, int, int]]
    sent: bool = False  # in MLflow already: a retry of its batch skips it


class MlflowReporter:
    """Logs window statistics and alerts to MLflow: one monitoring run per (model, model version).

    Pass :meth:`on_window` as the engine's ``on_window`` sink and every alert (and
    ``reference_changed`` event) to :meth:`on_alert`; call :meth:`close` at the end. Both sinks only
    append to a buffer. Every ``flush_windows`` windows the buffer goes out with ``log_batch``, on a
    background thread by default (``background=False`` flushes inline, for replays and tests).

    MLflow being unreachable never reaches the caller: the failure is logged as a warning, the
    windows stay buffered (at most ``buffer_windows``; past that the oldest are dropped and
    counted), and the next attempt waits ``retry_seconds``, doubling up to ``max_retry_seconds``:
    the buffer, thread and backoff of the alert sinks (:class:`~tripwire.sinks.delivery.DeliveryRunner`).
    MLflow's own HTTP client also retries (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, default 7) before
    an attempt counts as failed.
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT, *,
                 flush_windows: int = 10, buffer_windows: int = 10_000, background: bool = True,
                 retry_seconds: float = 1.0, max_retry_seconds: float = 300.0,
                 references: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.references: dict[str, str] = dict(references or {})
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self.runs: dict[tuple[str, str | None], str] = {}  # (model, version) -> monitoring run id
        self._alerts: dict[tuple[str, str | None], list[bytes]] = {}
        self._lock = threading.Lock()  # guards the alerts
        self._closed = False
        # Windows go out in batches of every window buffered; alerts.jsonl and the runs' end at close.
        def runner(send: Callable[[list[Any]], None], **options: Any) -> DeliveryRunner:
            return DeliveryRunner(f"MLflow at {self._where()}", send, background=background, retry_seconds=retry_seconds,
                                  max_retry_seconds=max_retry_seconds, clock=clock, **options)

        self._windows = runner(self._send_windows, buffer=buffer_windows, batch_size=buffer_windows,
                               min_batch=flush_windows, item="window")
        self._finish = runner(self._send_finish, item="alerts artifact")
        self.windows = 0

    @classmethod
    def from_config(cls, config: MonitorConfig, **kwargs: Any) -> MlflowReporter | None:
        """The reporter the ``[mlflow]`` table asks for, or None unless ``report = true``."""
        settings = config.mlflow
        if not settings.report:
            return None
        kwargs.setdefault("references", {m.name: m.reference for m in config.models})
        return cls(settings.tracking_uri, settings.experiment,
                   flush_windows=settings.flush_windows, buffer_windows=settings.buffer_windows,
                   **kwargs)

    # -- sinks (cheap, never raise) ------------------------------------------------------------
    def on_window(self, window: dict[str, Any]) -> None:
        try:
            metrics = window_metrics(window)
        except Exception as error:  # a malformed window must not stop the engine
            log.warning("MLflow reporter: skipping a window it cannot read (%s)", error)
            return
        version = window.get("model_version")
        self.windows += 1
        self._windows.submit(_Window(window["model"], None if version is None else str(version), metrics))

    def on_alert(self, alert: dict[str, Any]) -> None:
        """Keep an alert (or a reference_changed event) for the ``alerts.jsonl`` artifact at close."""
        if alert.get("model") in (None, "*"):
            return  # stream-level alerts (dead-letter rate) belong to no model version
        try:
            model = str(alert.get("model"))
            version = alert.get("model_version")
            if alert.get("type") == "reference_changed" and alert.get("reference"):
                self.references[model] = alert["reference"]
            line = orjson.dumps(alert, option=orjson.OPT_SORT_KEYS)
        except Exception as error:
            log.warning("MLflow reporter: skipping an alert it cannot encode (%s)", error)
            return
        with self._lock:
            self._alerts.setdefault((model, None if version is None else str(version)), []).append(line)

    # -- delivery ------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Windows buffered and not yet in MLflow."""
        return self._windows.pending

    @property
    def delivered(self) -> int:
        return self._windows.delivered

    @property
    def dropped(self) -> int:
        return self._windows.dropped

    @property
    def failures(self) -> int:
        return self._windows.failures + self._finish.failures

    @property
    def last_error(self) -> str | None:
        return self._finish.last_error or self._windows.last_error

    def flush(self, timeout: float = 30.0) -> bool:
        """Deliver every buffered window now (retrying for at most ``timeout`` s); True when none is left."""
        return self._windows.flush(timeout)

    def _send_windows(self, batch: list[_Window]) -> None:
        from mlflow.entities import Metric

        client = self._client = self._client or _client(self.tracking_uri)
        groups: dict[tuple[str, str | None], list[_Window]] = {}
        for window in batch:
            if not window.sent:
                groups.setdefault((window.model, window.version), []).append(window)
        for key, windows in groups.items():
            run_id = self._run(client, *key)
            for chunk in _chunks(windows):
                metrics = [Metric(k, v, ts, step) for w in chunk for (k, v, ts, step) in w.metrics]
                for start in range(0, len(metrics), _MAX_METRICS_PER_BATCH):
                    client.log_batch(run_id, metrics=metrics[start:start + _MAX_METRICS_PER_BATCH])
                for window in chunk:
                    window.sent = True

    def _send_finish(self, _batch: list[None]) -> None:
        client = self._client = self._client or _client(self.tracking_uri)
        with self._lock:
            alerts = dict(self._alerts)
        for key, lines in alerts.items():
            run_id = self._run(client, *key)
            client.log_text(run_id, b"".join(line + b"\n" for line in lines).decode(), ALERTS_ARTIFACT)
            with self._lock:
                self._alerts.pop(key, None)
        for run_id in self.runs.values():
            client.set_terminated(run_id, "FINISHED")

    def _run(self, client: MlflowClient, model: str, version: str | None) -> str:
        run_id = self.runs.get((model, version))
        if run_id is not None:
            return run_id
        if self._experiment_id is None:
            found = client.get_experiment_by_name(self.experiment)
            self._experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
        tags = {"tripwire.model": model, "tripwire.model_version": version or "", "tripwire.monitoring": "true"}
        if model in self.references:
            tags["tripwire.reference"] = self.references[model]
        name = f"{model} v{version}" if version is not None else f"{model} (unversioned)"
        run = client.create_run(self._experiment_id, tags=tags, run_name=f"monitor {name}")
        self.runs[(model, version)] = run.info.run_id
        return run.info.run_id

    def run_id(self, model: str, version: str | None) -> str | None:
        """The monitoring run of a model version, once it has been created in MLflow."""
        return self.runs.get((model, None if version is None else str(version)))

    # -- the end -------------------------------------------------------------------------------
    def close(self, timeout: float = 30.0) -> bool:
        """Deliver what is buffered and the alerts, finish the runs; True when everything arrived.

        Retries with backoff for at most ``timeout`` seconds, then returns; what could not be
        delivered is logged as a warning and counted, never raised.
        """
        if self._closed:
            return self.pending == 0 and not self._alerts
        deadline = time.monotonic() + timeout
        self._closed = True
        outcome = [False]

        def deliver() -> None:
            if self._windows.close(timeout):  # every window first: alerts.jsonl and FINISHED come last
                self._finish.submit(None)
                outcome[0] = self._finish.close(max(0.0, deadline - time.monotonic()))

        # On a thread of its own, so a hanging MLflow (its client retries for minutes) cannot hold us past timeout.
        closing = threading.Thread(target=deliver, name="tripwire-mlflow-close", daemon=True)
        closing.start()
        closing.join(max(0.0, deadline - time.monotonic()))
        ok = outcome[0]
        if not ok:
            log.warning("MLflow reporter: gave up after %.1f s; %d windows and %d alerts not delivered to %s (%s)",
                        timeout, self.pending, sum(len(v) for v in self._alerts.values()), self._where(),
                        self.last_error or "no answer yet")
        if self.dropped:
            log.warning("MLflow reporter: %d windows were dropped while MLflow was unreachable", self.dropped)
        return ok

    def summary(self) -> str:
        runs = ", ".join(f"{m} v{v}: {r}" for (m, v), r in self.runs.items()) or "none"
        text = (f"MLflow ({self._where()}, experiment {self.experiment!r}): {self.delivered} of {self.windows} windows "
                f"logged, runs {runs}")
        if self.pending or self.dropped or self.failures:
            text += f"; {self.pending} undelivered, {self.dropped} dropped, {self.failures} failed attempts"
        return text

    def _where(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        import mlflow

        return mlflow.get_tracking_uri()

    def __enter__(self) -> MlflowReporter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

def _chunks(windows: list[_Window]) -> Iterator[list[_Window]]:
    """Whole windows per log_batch, up to MLflow's metric limit, so a retry never repeats a sent window."""
    chunk: list[_Window] = []
    size = 0
    for window in windows:
        if chunk and size + len(window.metrics) > _MAX_METRICS_PER_BATCH:
            yield chunk
            chunk, size = [], 0
        chunk.append(window)
        size += len(window.metrics)
    if chunk:
        yield chunk
