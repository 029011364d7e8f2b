"""The engine: routes typed events to each model's detectors in event time and returns alerts.

It is transport-free and deterministic, so the Faust worker, ``tripwire replay`` and ``tripwire
demo`` run it unchanged: the same events in the same order give the same alerts, byte for byte.

Each model has a :class:`~tripwire.monitor.ModelMonitor`; the engine admits events (see
:mod:`tripwire.admission`), routes them, and judges the share of records that broke the event
contract. A batch of raw records goes through :mod:`tripwire.batch`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Sequence

from tripwire.alerts import AlertPolicy, Finding
from tripwire.batch import BatchResult, process_records
from tripwire.config import DEFAULT_THRESHOLDS, MonitorConfig, Threshold, check_references
from tripwire.event_time import EARLIEST_TS, LATEST_TS
from tripwire.events import Event, Label, Prediction, Rejection, format_ts
from tripwire.findings import UNATTRIBUTED, degradation
from tripwire.monitor import Alert, ModelMonitor, Refused, SummarySink, WindowSink
from tripwire.reference import load_reference, validate_reference


class Engine:
    """Routes events to per-model monitors; counts what it could not route."""

    def __init__(self, config: MonitorConfig, references: dict[str, dict[str, Any]] | None = None,
                 on_window: WindowSink | None = None, on_alert: Callable[[Alert], None] | None = None,
                 on_summary: SummarySink | None = None) -> None:
        self.config = config
        self.on_window = on_window
        self.on_summary = on_summary  # a sharded model's window summaries (see tripwire.shard)
        # Called with each alert as it is raised, so that it reaches a sink in order with the windows
        # (a batch returns its alerts only at its end).
        self.on_alert = on_alert
        self.monitors: dict[str, ModelMonitor] = {}
        given = references or {}
        # Given references (the demo's, MLflow's) pass the same check as a file's: one rule for every runner.
        loaded = {model.name: validate_reference(given[model.name], model.reference) if given.get(model.name)
                  else load_reference(model.reference) for model in config.models}
        check_references(config, loaded)
        for model in config.models:
            self.monitors[model.name] = ModelMonitor(model, loaded[model.name], on_window, on_summary)
        self.events = 0
        self.rejected = 0
        self.unmonitored = 0
        self.alerts_by_kind: dict[tuple[str, str], int] = {}
        self._last_ts = 0.0
        self._records = 0
        self._rejected_in_window = 0
        self._window_start = 0.0
        self._stream_policy = AlertPolicy(config.rejection_min_samples)

    def process(self, event: Event) -> list[Alert]:
        """Route an admitted event (see :meth:`admit`) to its model's monitor; the alerts it raised.

        Raises
        ------
        Refused
            When the model's label join refuses it (a duplicate ``request_id``), before anything changed.
        """
        alerts = self.route(event)
        alerts += self.count_event(event.ts)
        return self._tally(alerts) if alerts else alerts

    def route(self, event: Event) -> list[Alert]:
        """The model half of :meth:`process`: the event to its model's monitor; the alerts it raised
        (not tallied). Models share no state, so a batch routes each model's events on their own."""
        monitor = self.monitors.get(event.model)
        if monitor is None:
            self.unmonitored += 1
            return []
        if type(event) is Prediction:
            return monitor.on_prediction(event)
        if type(event) is Label:
            return monitor.on_label(event)
        return monitor.on_features(event)

    def count_event(self, ts: float) -> list[Alert]:
        """The engine half of :meth:`process`: count a processed event of time ``ts`` in the record
        window; the rejection-rate alert when that closes it (not tallied)."""
        closes = self.count_events((ts,))
        return closes[0][1] if closes else []

    def count_events(self, stamps: Sequence[float]) -> list[tuple[int, list[Alert]]]:
        """:meth:`count_event` of each time in ``stamps``, a stretch at a time: the rejection-rate alerts
        raised, each with the position in ``stamps`` of the event that closed the record window."""
        closes: list[tuple[int, list[Alert]]] = []
        window = self.config.rejection_window
        at, count = 0, len(stamps)
        while at < count:
            span = stamps[at:at + window - self._records]
            if self._records == 0:
                self._window_start = span[0]
            latest = max(span)
            if latest > self._last_ts:  # a late record does not move the record window's end back
                self._last_ts = latest
            self.events += len(span)
            self._records += len(span)
            at += len(span)
            if self._records >= window:
                closing = self._close_record_window()
                if closing:
                    closes.append((at - 1, closing))
        return closes

    def admit(self, event: Event | Rejection) -> Event | Rejection:
        """Call between ``decode`` and :meth:`handle`: a classifier's event in its reference's class form.

        A prediction or label whose class the model's reference does not know comes back as a
        :class:`Rejection` (dead-letter it); see :meth:`tripwire.admission.Admission.admit`.
        """
        if isinstance(event, Rejection):
            return event
        monitor = self.monitors.get(event.model)
        if monitor is not None:
            return monitor.admission.admit(event)
        if not EARLIEST_TS <= event.ts <= LATEST_TS:  # no model's clock, but the record window's end is one
            return Rejection(f"field 'ts' is outside the years 1-9999 in UTC ({event.ts:.0f} s from 1970)", event.model)
        return event

    def step(self, event: Event | Rejection) -> tuple[list[Alert], Rejection | None]:
        """Whatever ``decode`` returned, admitted and processed: the alerts, and the rejection to
        dead-letter (None when the event was processed)."""
        event = self.admit(event)
        if not isinstance(event, Rejection):
            try:
                return self.process(event), None
            except Refused as refused:
                event = refused.rejection
        return self.reject(event), event

    def handle(self, event: Event | Rejection) -> list[Alert]:
        """:meth:`step` without the rejection: an event is admitted and processed, a rejection counted."""
        return self.step(event)[0]

    def process_records(self, records: Sequence[bytes]) -> BatchResult:
        """Decode and process a batch of raw records (JSON lines, Kafka values; a tombstone as ``b""``).

        Alerts, rejections and state are exactly those of :meth:`step` of ``decode(r)`` for each
        record in order; the batch is only faster (see :func:`tripwire.batch.process_records`).
        """
        return process_records(self, records)

    def process_batch(self, events: Iterable[Event | Rejection]) -> list[Alert]:
        alerts: list[Alert] = []
        for event in events:
            alerts += self.handle(event)
        return alerts

    def reject(self, rejection: Rejection) -> list[Alert]:
        self.rejected += 1
        self._rejected_in_window += 1
        self._records += 1
        if self._records == 1:
            self._window_start = self._last_ts
        if self._records < self.config.rejection_window:
            return []
        return self._tally(self._close_record_window())

    def _close_record_window(self) -> list[Alert]:
        """Judge the share of records that broke the contract over the last ``rejection_window`` records."""
        rate = self._rejected_in_window / self._records
        finding = Finding(
            model=UNATTRIBUTED, kind="data_quality", signal="stream:deadletter", detector="rejection_rate",
            value=rate, threshold=DEFAULT_THRESHOLDS["rejection_rate"], window_start=self._window_start,
            window_end=self._last_ts, n=self._records, evidence={"rejected": self._rejected_in_window},
            message=f"{rate:.2%} of the last {self._records} records broke the event contract (see the dead-letter output)",
        )
        self._records = 0
        self._rejected_in_window = 0
        alert = self._stream_policy.evaluate(finding, model_version=None, reference=None, ts=self._last_ts)
        return [alert] if alert else []

    def _tally(self, alerts: list[Alert]) -> list[Alert]:
        for alert in alerts:
            key = (alert["kind"], alert["severity"] if alert["status"] == "firing" else "resolved")
            self.alerts_by_kind[key] = self.alerts_by_kind.get(key, 0) + 1
            if self.on_alert is not None:
                self.on_alert(alert)
        return alerts

    def state(self) -> dict[str, Any]:
        """A checkpoint of the whole engine: restore it into an engine built from the same config."""
        return {
            "counts": [self.events, self.rejected, self.unmonitored, self._records, self._rejected_in_window],
            "times": [self._last_ts, self._window_start],
            "alerts_by_kind": [[k, s, n] for (k, s), n in self.alerts_by_kind.items()],
            "stream_policy": self._stream_policy.to_dict(),
            "models": {name: monitor.state() for name, monitor in self.monitors.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` output, all of it or nothing.

        Raises
        ------
        ValueError
            With the reason, when ``state`` cannot be read (garbage, a crafted record, another
            river version); the engine is then left exactly as it was, never half-restored.
        """
        before = self.state()
        try:
            self._restore(state)
        except Exception as error:  # garbage can fail anywhere: roll back, then say why
            self._restore(before)
            raise ValueError(f"unreadable engine state: {error if isinstance(error, ValueError) else repr(error)}"
                             ) from error

    def _restore(self, state: dict[str, Any]) -> None:
        self.events, self.rejected, self.unmonitored, self._records, self._rejected_in_window = state["counts"]
        self._last_ts, self._window_start = state["times"]
        self.alerts_by_kind = {(k, s): n for k, s, n in state["alerts_by_kind"]}
        self._stream_policy.restore(state["stream_policy"])
        for name, monitor_state in state["models"].items():
            if name in self.monitors:
                try:
                    self.monitors[name].restore(monitor_state)
                except Exception as error:
                    raise ValueError(f"model {name!r}: {error if isinstance(error, ValueError) else repr(error)}"
                                     ) from error

    def replace_reference(self, model_name: str, reference: dict[str, Any], uri: str,
                          version: str | None = None) -> dict[str, Any]:
        """Start fresh detectors for ``model_name`` on a new reference (e.g. an MLflow alias moved).

        The old monitor is dropped with its open windows, pending label joins and alert state; its
        open alerts are listed in the returned ``reference_changed`` event (for the alerts topic),
        since no ``resolved`` will follow for them.
        """
        old = self.monitors.get(model_name)
        if old is None:
            raise KeyError(f"{model_name!r} is not a monitored model")
        monitor = ModelMonitor(dataclasses.replace(old.config, reference=uri), reference, self.on_window,
                               self.on_summary)
        monitor.model_version = None if version is None else str(version)
        self.monitors[model_name] = monitor
        return {"type": "reference_changed", "schema": 1, "model": model_name, "model_version": monitor.model_version,
                "reference": uri, "previous_version": old.model_version, "previous_reference": old.reference_uri,
                "closed_alerts": [a["alert_id"] for a in old.policy.open_alerts()], "ts": format_ts(self._last_ts)}

    def bookkeeping(self) -> dict[str, int]:
        """Over all models: records refused by the event clock and the label join, and the join's size."""
        clocks = [m.clock for m in self.monitors.values()]
        joins = [m.join for m in self.monitors.values()]
        return {"late": sum(c.late for c in clocks), "far_future": sum(c.far_future for c in clocks),
                "clock_jumps": sum(c.jumps for c in clocks), "duplicates": sum(j.duplicates for j in joins),
                "join_evicted": sum(j.evicted for j in joins), "join_pending": sum(j.pending for j in joins)}

    def open_alerts(self) -> list[Alert]:
        found = [a for m in self.monitors.values() for a in m.policy.open_alerts()]
        return found + self._stream_policy.open_alerts()


__all__ = ["Alert", "BatchResult", "Engine", "ModelMonitor", "Refused", "SummarySink", "Threshold", "WindowSink",
           "degradation"]
