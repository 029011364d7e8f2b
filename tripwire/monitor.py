"""One model's monitor: its open windows, its label join and its alert state, fed one event at a time.

Per event the monitor only appends to the open window's buffers; the detectors fold a whole
window at once with numpy when it closes. That keeps the per-event cost a few list appends. The
findings of a closing window are built by :mod:`tripwire.findings`; events reach the monitor
admitted (see :mod:`tripwire.admission`) and routed by :class:`tripwire.engine.Engine`.
"""

from __future__ import annotations

import dataclasses
import math
from itertools import repeat
from operator import itemgetter
from typing import Any, Callable, Sequence, cast

import numpy as np
from msgspec.structs import astuple

from tripwire.admission import Admission
from tripwire.alerts import AlertPolicy, Finding
from tripwire.config import ModelConfig
from tripwire.detectors.change import ChangeDetector
from tripwire.detectors.distribution import NumericDrift, drift_detector_for
from tripwire.detectors.estimated import ConfidenceEstimate, MulticlassConfidenceEstimate
from tripwire.detectors.fairness import FairnessWindow
from tripwire.detectors.multiclass import MulticlassWindow
from tripwire.detectors.performance import ClassificationWindow, RegressionWindow
from tripwire.detectors.quality import FeatureQuality
from tripwire.detectors.registry import DataWindow, PerformanceWindow, detectors_for, judge_window
from tripwire.detectors.serving import ServingWindow
from tripwire.event_time import EARLIEST_TS, EventClock
from tripwire.events import FeatureRow, Features, Label, Prediction, Rejection, Score, format_ts
from tripwire.findings import change_alarm_finding, change_findings, data_window_findings, performance_window_findings
from tripwire.fold import fold_data_window
from tripwire.join import LabelJoin, Outcome
from tripwire.unmatched_labels import UnmatchedLabels

Alert = dict[str, Any]
WindowSink = Callable[[dict[str, Any]], None]
SummarySink = Callable[[dict[str, Any]], None]

DEFAULT_METRICS = {"regression": ("mae", "rmse"), "classification": ("accuracy", "f1", "roc_auc"),
                   "multiclass": ("accuracy", "macro_f1", "roc_auc")}
ESTIMATED_METRICS = {"classification": ("accuracy", "f1"), "multiclass": ("accuracy", "macro_f1")}
EXPIRE_EVERY = 1024
TRANSPOSE_ROWS = 128  # window rows turned into columns once this many are new (see _transpose_new_rows)


class Refused(Exception):
    """Raised by :meth:`Engine.process` for an event its state refuses (a duplicate ``request_id``), before
    the event changed anything: reject ``rejection`` (dead-letter it) instead."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


class ModelMonitor:
    """Every detector of one model, its open windows, its label join and its alert state."""

    def __init__(self, config: ModelConfig, reference: dict[str, Any], on_window: WindowSink | None = None,
                 on_summary: SummarySink | None = None) -> None:
        self.config = config
        # A sharded model's windows go out as summaries (to on_summary) instead of being judged here;
        # a monitor that judges merged summaries holds their join counts in merged_join_stats.
        self.sharded = config.sharded
        self.on_summary = on_summary
        self.merged_join_stats: dict[str, int] | None = None
        self.reference = reference
        self.reference_uri = config.reference
        self.task: str = reference["task"]
        self.model_version: str | None = None
        self.on_window = on_window
        self.policy = AlertPolicy(config.min_samples, config.resolve_windows, config.cooldown_windows)
        self.join = LabelJoin(config.label_ttl_seconds, config.label_join_max_pending)
        self.clock = EventClock(config.allowed_lateness_seconds, config.max_future_seconds)
        # Values in the reference's form (a classifier's classes), times on this clock (see Engine.admit).
        self.admission = Admission(config, reference, self.clock)
        self.multiclass, self.classes = self.admission.multiclass, self.admission.classes
        self.positive_class = self.admission.positive_class
        self.class_names: list[Any] = self.classes.classes if self.classes is not None else []  # (a classifier's)
        self._join_counts_shown = (0, 0)  # (evicted, duplicates) at the last data window: see _join_stats

        profiles = reference["features"]
        self.drift = {n: drift_detector_for(p) for n, p in profiles.items() if config.enabled("drift", f"feature:{n}")}
        self.quality = {n: FeatureQuality(p) for n, p in profiles.items() if config.enabled("quality", f"feature:{n}")}
        self.monitored_features = [n for n in profiles if n in self.drift or n in self.quality]
        self._row_names = tuple(self.monitored_features)  # (one tuple: FeatureRows compare their names to it)
        self.prediction_drift = drift_detector_for(reference["prediction_profile"])
        score_profile = reference.get("score_profile")
        self.score_drift = NumericDrift(score_profile) if score_profile else None
        self.serving = ServingWindow()
        # A multi-class model has its own performance window and estimate, and a drift detector per class probability.
        class_profiles = reference.get("class_score_profiles") if self.multiclass else None
        self.class_score_drift = [NumericDrift(p) for p in class_profiles] if class_profiles else []
        calibrations = reference.get("class_score_calibrations") if self.multiclass else None
        self.estimate: ConfidenceEstimate | MulticlassConfidenceEstimate | None
        if not config.enabled("estimated"):
            self.estimate = None
        elif calibrations:
            self.estimate = MulticlassConfidenceEstimate(self.class_names, calibrations)
        elif self.task == "classification" and score_profile and not self.multiclass:
            self.estimate = ConfidenceEstimate(self.positive_class, calibration=reference.get("score_calibration"))
        else:
            self.estimate = None
        self.performance: MulticlassWindow | ClassificationWindow | RegressionWindow
        if self.multiclass:
            self.performance = MulticlassWindow(self.class_names)
        else:
            self.performance = (ClassificationWindow(self.positive_class) if self.task == "classification"
                                else RegressionWindow())
        kind = "multiclass" if self.multiclass else self.task
        self.estimated_metrics = ESTIMATED_METRICS.get(kind, ())
        attributes = config.attributes if config.attributes is not None else tuple(reference.get("attributes") or ())
        # Multi-class fairness is one-vs-rest for positive_class: without one there is nothing to compare.
        self.fairness = ({a: FairnessWindow(self.positive_class) for a in attributes}
                         if self.task == "classification" and self.positive_class is not None
                         and config.enabled("fairness") else {})
        self.metrics = config.performance_metrics or DEFAULT_METRICS[kind]
        self.change = {s: ChangeDetector(config.change_method) for s in config.change_streams
                       if config.enabled("change", f"change:{s}")}
        self._watch_streams()
        # Families registered in tripwire.detectors.registry; the outcomes are kept only for one that judges them.
        # They judge a window's raw values, which a sharded model's merged windows do not have.
        self.registered = [] if config.sharded else detectors_for(config, reference)
        self._keeps_outcomes = any(family.window == "performance" for family, _ in self.registered)
        # Outcomes of the batch path waiting for a binary classifier's windows (see on_run_label).
        self._defers_outcomes = type(self.performance) is ClassificationWindow
        self._performance_window = config.performance_window
        self._deferred_outcomes: list[tuple[Any, Any, Score | None, dict[str, Any]]] = []
        self.window_index = 0
        self.performance_index = 0
        self._reset_data_window()
        self._reset_performance_window()
        self._since_expiry = 0
        self.unmatched_labels = UnmatchedLabels(config, EXPIRE_EVERY)

    def _watch_streams(self) -> None:
        """The change detectors by what feeds them (looked up per event, so kept at hand)."""
        # Streams fed per prediction; "error" is fed per labelled outcome instead (see _on_joined).
        self._event_streams = [(s, d) for s, d in self.change.items() if s != "error"]
        self._error_stream = self.change.get("error")

    # -- events ----------------------------------------------------------------------------
    def on_prediction(self, event: Prediction) -> list[Alert]:
        duplicate = self.join.prediction_refusal(event.request_id)
        if duplicate is not None:
            raise Refused(Rejection(duplicate, event.model))
        if isinstance(event.features, FeatureRow):  # (its readers below take dicts)
            event.features = event.features.as_dict()
        alerts = self._maybe_close_by_time(event.ts) if self.config.window_seconds else []
        self.model_version = event.model_version or self.model_version
        self._open_data_window(event.ts)
        if event.features:
            self._rows.append(event.features)
        self._predictions.append(event.prediction)
        if event.score is not None:
            self._scores.append(event.score)
        self._latencies.append(event.latency_ms)
        if self._event_streams:
            alerts += self._watch_change_streams(event)
        outcome = self.join.add_prediction(event.request_id, event.ts, event.prediction, event.score, event.attributes)
        if outcome is not None:
            alerts += self._on_outcome(outcome, event.ts)
        alerts += self._after_event(event.ts)
        return alerts

    # -- a run of predictions, column-wise (the batch path) ---------------------------------
    def bulk_room(self) -> int:
        """How many predictions in a row :meth:`on_predictions` may take: none that could alert.

        Only the last event before a window close or a label-join expiry is left to the one-by-one
        path; per-prediction change streams keep every event on it, and so does the first event of
        a time window (it aligns the window's start). Of a time window, take only predictions
        within :meth:`bulk_span`.
        """
        if self._event_streams or (self.config.window_seconds and self._n == 0):
            return 0
        return min(self.config.window_events - self._n, EXPIRE_EVERY - self._since_expiry) - 1

    def bulk_span(self) -> tuple[float, float]:
        """The event times ``[low, high)`` a prediction may have and not close the open time window
        (see :meth:`_maybe_close_by_time`); any time for a window of ``window_events``."""
        seconds = self.config.window_seconds
        if not seconds:
            return -math.inf, math.inf
        return self._start - self.config.allowed_lateness_seconds, self._start + seconds

    def on_predictions(self, events: Sequence[Prediction]) -> None:
        """Exactly what :meth:`on_prediction` does for each of ``events``, appended column by column.

        The caller guarantees that they are at most :meth:`bulk_room` and that each would only wait
        in the label join (see :meth:`LabelJoin.add_waiting`), so none raises an alert.
        """
        self.join_predictions(events, 0, len(events))
        self.append_predictions(events)

    def join_predictions(self, events: Sequence[Prediction], first: int, stop: int) -> int:
        """The label-join half of :meth:`on_predictions` (and the model version) for ``events[first:stop]``,
        as far as each would only wait (see :meth:`LabelJoin.add_waiting`); how many it took. The
        window half, :meth:`append_predictions`, may follow later in the same run."""
        taken = self.join.add_waiting(events, first, stop)
        for position in range(first + taken - 1, first - 1, -1):  # the latest version given
            if events[position].model_version:
                self.model_version = events[position].model_version
                break
        self._since_expiry += taken
        return taken

    def append_predictions(self, events: Sequence[Prediction]) -> None:
        """The data-window half of :meth:`on_predictions`: only a window close reads what it appends."""
        if self._n == 0:
            self._start = self._end = events[0].ts
        self._end = max(self._end, max([e.ts for e in events]))  # a record may be late (see EventClock)
        self._n += len(events)
        if self.registered:  # (the registered families read the window's rows as dicts)
            self._rows += [e.features.as_dict() if isinstance(e.features, FeatureRow) else e.features
                           for e in events if e.features]
        else:
            self._rows += [e.features for e in events if e.features]  # type: ignore[misc]  # (FeatureRows too)
        if len(self._rows) - self._transposed >= TRANSPOSE_ROWS:
            self._transpose_new_rows()
        self._predictions += [e.prediction for e in events]
        self._scores += [e.score for e in events if e.score is not None]
        self._latencies += [e.latency_ms for e in events]

    def on_features(self, event: Features) -> list[Alert]:
        alerts = self._maybe_close_by_time(event.ts)
        self._open_data_window(event.ts)
        self._rows.append(event.features)
        alerts += self._after_event(event.ts)
        return alerts

    def on_label(self, event: Label) -> list[Alert]:
        duplicate = self.join.label_refusal(event.request_id)
        if duplicate is not None:
            raise Refused(Rejection(duplicate, event.model))
        alerts = self._open_sharded_window(event.ts) if self.sharded else []
        return self._take_label(event, alerts, defer=False)

    def on_run_label(self, event: Label) -> list[Alert]:
        """:meth:`on_label` of a label in a run of the batch path (see :mod:`tripwire.batch`): one the
        join lets in (see :meth:`LabelJoin.label_refusal`), of a model that is not sharded.

        The performance and fairness windows take its outcome later, column-wise (see
        :meth:`flush_outcomes`), where they could not fail on it; whatever reads them flushes first.
        """
        return self._take_label(event, [], defer=True)

    def next_label_reads_join(self) -> bool:
        """Whether the next label may read the label join's size or expire it: it may close the
        performance window, or judge the labels that never met a prediction."""
        return self._perf_n + 1 >= self._performance_window or self.unmatched_labels.judges_next()

    def _take_label(self, event: Label, alerts: list[Alert], defer: bool) -> list[Alert]:
        request_id, ts, label = event.request_id, event.ts, event.label
        waiting = self.join.take_prediction(request_id, ts, label)
        if waiting is not None:
            predicted_at, prediction, score, attributes = waiting
            joined = self._on_joined(request_id, prediction, label, score, attributes, predicted_at, ts, ts, defer)
            if joined:
                alerts += joined
        finding = self.unmatched_labels.on_label(self.join, ts)
        if finding is not None:
            alert = self.policy.evaluate(finding, model_version=None, reference=None, ts=ts)
            alerts += [alert] if alert else []
        return alerts

    def _open_data_window(self, ts: float) -> None:
        if self._n == 0:
            seconds = self.config.window_seconds
            # (never before the earliest time an alert can carry: a window of year 1 aligns no further back)
            self._start = max(math.floor(ts / seconds) * seconds, EARLIEST_TS) if seconds else ts
            self._end = ts
        elif ts > self._end:  # a late record (within the allowed lateness) does not move the window's end back
            self._end = ts
        self._n += 1

    def _open_sharded_window(self, ts: float) -> list[Alert]:
        """A label of a sharded model: its outcome folds into the window of its time, so it moves windows too."""
        alerts = self._maybe_close_by_time(ts)
        self._open_data_window(ts)
        return alerts

    def _maybe_close_by_time(self, ts: float) -> list[Alert]:
        seconds = self.config.window_seconds
        if self.sharded and self._n and ts < self._start - self.config.allowed_lateness_seconds:
            # Its window was summarised on this partition already; the merge may have judged it.
            self.clock.late += 1
            raise Refused(Rejection(
                f"late: ts {format_ts(ts)} is before the open window of sharded model {self.config.name!r} on this "
                f"partition ({format_ts(self._start)}) by more than allowed_lateness_seconds = "
                f"{self.config.allowed_lateness_seconds:g}; its window was summarised already", self.config.name))
        # A record before the window by more than the allowed lateness comes after the event clock
        # moved back (see EventClock): it starts a window of its own too.
        if seconds and self._n and not (self._start - self.config.allowed_lateness_seconds <= ts
                                        < self._start + seconds):
            return self.close_data_window(ts)
        return []

    def _after_event(self, ts: float) -> list[Alert]:
        self._since_expiry += 1
        if self._since_expiry >= EXPIRE_EVERY:
            self._since_expiry = 0
            self.join.expire(ts)
        if self._n >= self.config.window_events and not self.sharded:  # a sharded model's windows are event-time only
            return self.close_data_window(ts)
        return []

    def _watch_change_streams(self, event: Prediction) -> list[Alert]:
        alerts = []
        value: Any
        for stream, detector in self._event_streams:
            if stream == "score":
                value = event.score
            elif stream == "prediction":
                value = event.prediction
            else:
                value = cast("dict[str, Any]", event.features).get(stream.removeprefix("feature:"))  # (see on_prediction)
            if (type(value) is float or type(value) is int) and detector.update(value):
                alerts += self._change_alarm(stream, detector, event.ts)
        return alerts

    def _on_outcome(self, outcome: Outcome, ts: float) -> list[Alert]:
        return self._on_joined(outcome.request_id, outcome.prediction, outcome.label, outcome.score,
                               outcome.attributes, outcome.predicted_at, outcome.labelled_at, ts, defer=False)

    def _on_joined(self, request_id: str, prediction: Any, label: Any, score: Score | None, attributes: dict[str, Any],
                   predicted_at: float, labelled_at: float, ts: float, defer: bool) -> list[Alert]:
        """A prediction joined to its label at ``ts``: into the performance window and the error stream.

        ``defer``: leave a binary classifier's window update to :meth:`flush_outcomes` where it
        cannot fail (a score that is None or a probability).
        """
        if self._perf_n == 0:
            self._perf_start = self._perf_end = ts
        elif ts > self._perf_end:
            self._perf_end = ts
        self._perf_n += 1
        self._label_lags.append(labelled_at - predicted_at)
        if self._keeps_outcomes:
            self._outcomes.append(Outcome(request_id, prediction, label, score, attributes, predicted_at, labelled_at))
        if defer and self._defers_outcomes and (score is None or (type(score) is float and 0.0 <= score <= 1.0)):
            self._deferred_outcomes.append((prediction, label, score, attributes))
        elif self.task == "classification":
            self.flush_outcomes()
            # A classifier's window takes the score its admission gave: a multi-class one's vector, a
            # binary one's float (see Admission._admit_classes), a pairing the types cannot state.
            self.performance.update(prediction, label, score)  # type: ignore[arg-type, call-arg]
            for attribute, window in self.fairness.items():
                group = attributes.get(attribute)
                if group is not None:
                    window.update(str(group), prediction, label)
        else:  # a regression prediction and label are numbers (see Admission.admit)
            self.performance.update(prediction, label)
        if self.sharded:  # its performance window is its data window, judged after the merge
            return []
        alerts: list[Alert] = []
        error_stream = self._error_stream
        if error_stream is not None and error_stream.update(self._error(prediction, label)):
            alerts += self._change_alarm("error", error_stream, ts)
        if self._perf_n >= self._performance_window:
            alerts += self.close_performance_window(ts)
        return alerts

    def flush_outcomes(self) -> None:
        """The outcomes :meth:`on_run_label` deferred, into the performance and fairness windows."""
        deferred = self._deferred_outcomes
        if not deferred:
            return
        self._deferred_outcomes = []
        predictions, labels, scores, attributes = zip(*deferred)
        # (deferred only for a binary classifier's window: see _on_joined)
        self.performance.update_many(predictions, labels, scores)  # type: ignore[union-attr]
        for attribute, window in self.fairness.items():
            window.update_many(list(map(dict.get, attributes, repeat(attribute))), predictions, labels)

    def _error(self, prediction: Any, label: Any) -> float:
        """Per-event error on a scale the change detectors' defaults suit: 0/1, or |error| / baseline MAE."""
        if self.task == "classification":
            return float(prediction != label)
        scale = self.reference["baseline"].get("mae") or 1.0
        return abs(prediction - label) / scale

    def _change_alarm(self, stream: str, detector: ChangeDetector, ts: float) -> list[Alert]:
        self._change_hits[stream] = self._change_hits.get(stream, 0) + 1
        finding = change_alarm_finding(self.config, stream, detector.n,
                                       self._perf_start if stream == "error" else self._start, ts)
        alert = self._evaluate(finding, ts, min_samples=1)
        return [alert] if alert else []

    # -- windows ---------------------------------------------------------------------------
    def _reset_data_window(self) -> None:
        self._rows: list[dict[str, Any]] = []  # (or a FeatureRow, see feature_row_names: read by _transpose_new_rows, state)
        self._column_parts: list[list[tuple[Any, ...]]] = []  # the first `_transposed` rows, as columns
        self._transposed = 0
        self._predictions: list[Any] = []
        self._scores: list[Score] = []
        self._latencies: list[float | None] = []
        self._n = 0
        self._start = 0.0
        self._end = 0.0

    def _reset_performance_window(self) -> None:
        self._perf_n = 0
        self._perf_start = 0.0
        self._perf_end = 0.0
        self._label_lags: list[float] = []
        self._change_hits: dict[str, int] = {}
        self._outcomes: list[Outcome] = []  # for the registered families that judge performance windows

    def close_data_window(self, ts: float) -> list[Alert]:
        """Fold the buffered window into the detectors, judge every signal, start a new window.

        A sharded model's window is folded here and judged elsewhere: its detectors' states go out
        as one summary (see :mod:`tripwire.shard`) to be merged with the other partitions' first.
        """
        start, end, n = self._start, self._end, self._n
        # The registered families read the raw window, which folding clears (it keeps no copy).
        raw = (DataWindow(self.config.name, start, end, n, self._rows, self._predictions, self._scores,
                          self._latencies) if self.registered else None)
        self._fold_data_window()
        if self.sharded:
            self._emit_summary(start, end, n, ts)
            return []
        return self.judge_data_window(start, end, n, ts, raw)

    def _fold_data_window(self) -> None:
        """The buffered window into the detectors (the drift, quality, serving and estimate ones); clear the buffers."""
        fold_data_window(self, self._feature_columns(), self._predictions, self._scores, self._latencies, self._start,
                         self._end)
        self._reset_data_window()

    def judge_data_window(self, start: float, end: float, n: int, ts: float,
                          raw: DataWindow | None = None) -> list[Alert]:
        """Judge the folded data window's detectors (the alert policy decides), reset them, emit the window.

        ``raw``: the window's values, for the registered families (None: a merged window has none).
        """
        stats: dict[str, Any] = {}
        findings = data_window_findings(self, start, end, stats)
        if raw is not None:
            findings += judge_window(self.registered, raw, self.config, stats)

        alerts = [a for a in (self._evaluate(f, ts) for f in findings) if a]
        if self.merged_join_stats is None:
            self._join_stats(stats)
        else:
            stats.update(self.merged_join_stats)
        self._emit_window("data", self.window_index, start, end, n, stats)
        self.window_index += 1
        return alerts

    def _emit_summary(self, start: float, end: float, n: int, ts: float) -> None:
        """A sharded model's folded window (data and performance) as a summary to on_summary; reset both windows."""
        from tripwire.shard.summary import window_summary  # (the shard package builds on this module)

        seconds = self.config.window_seconds
        summary = window_summary(self, start, end, n, watermark=max(math.floor(ts / seconds) * seconds, EARLIEST_TS))
        self._reset_performance_window()
        self.window_index += 1
        if self.on_summary is not None:
            self.on_summary(summary)

    def _feature_columns(self) -> list[Sequence[Any]]:
        """The window's rows as one column per monitored feature (None where a row lacks the feature)."""
        self._transpose_new_rows()
        parts = self._column_parts
        if len(parts) == 1:
            return list(parts[0])
        columns: list[Sequence[Any]] = []
        for column_parts in zip(*parts):
            values: list[Any] = []
            for part in column_parts:
                values += part  # (extending by a tuple is a copy of pointers, where chain() steps value by value)
            columns.append(tuple(values))
        return columns

    def feature_row_names(self) -> tuple[str, ...] | None:
        """The feature names :func:`tripwire.events.decode_batch` may give this model's predictions'
        features by (see :class:`~tripwire.events.FeatureRow`): the monitored ones, when they are
        every feature of the reference and the rows are read only as columns; else None."""
        if self.registered or self._event_streams or tuple(self.reference["features"]) != self._row_names:
            return None
        return self._row_names

    def _transpose_new_rows(self) -> None:
        """Turn the rows appended since the last call into columns, while they are still in the CPU's caches."""
        rows, names = self._rows, self.monitored_features
        if self._transposed == len(rows) and self._column_parts:
            return
        new = rows[self._transposed:] if self._transposed else rows
        self._transposed = len(rows)
        if not new:
            self._column_parts.append([() for _name in names])
            return
        if type(new[0]) is dict and type(new[-1]) is dict and len(names) > 1:
            try:
                self._column_parts.append(list(zip(*map(itemgetter(*names), new))))  # every row a dict of every feature
                return
            except (KeyError, TypeError):  # (a FeatureRow among them: not subscriptable)
                pass
        # A FeatureRow of these names (see feature_row_names) is their values in order, then its record.
        row_names = self._row_names
        kinds = set(map(type, new))
        kind = kinds.pop() if len(kinds) == 1 else None
        if kind is not None and issubclass(kind, FeatureRow) and kind.names == row_names:
            self._column_parts.append(list(zip(*map(astuple, new)))[:len(names)])  # type: ignore[arg-type]
            return
        self._column_parts.append(list(zip(*[
            astuple(row) if isinstance(row, FeatureRow) and row.names == row_names
            else tuple([row.get(name) for name in names]) if isinstance(row, dict)
            else tuple([row.as_dict().get(name) for name in names])  # (of other names: a reference reloaded)
            for row in cast("list[dict[str, Any] | FeatureRow]", new)]))[:len(names)])

    def close_performance_window(self, ts: float) -> list[Alert]:
        alerts = self.judge_performance_window(self._perf_start, self._perf_end, self._perf_n, ts)
        self._reset_performance_window()
        return alerts

    def judge_performance_window(self, start: float, end: float, n: int, ts: float) -> list[Alert]:
        """Judge the performance and fairness windows folded so far (and the change streams' hits), reset them."""
        self.flush_outcomes()
        stats: dict[str, Any] = {}
        findings = performance_window_findings(self, start, end, n, stats)
        findings += change_findings(self.config, self.change, self._change_hits, start, end, n, stats)
        if self.registered:
            window = PerformanceWindow(self.config.name, start, end, n, self._outcomes)
            findings += judge_window(self.registered, window, self.config, stats)
        if self.merged_join_stats is None:
            stats["label_lag_p50_s"] = float(np.median(self._label_lags)) if self._label_lags else None
            stats["labels_pending"] = self.join.pending
            stats["predictions_expired_unlabelled"] = self.join.expired_predictions
            stats["labels_unmatched"] = self.join.expired_labels
        alerts = [a for a in (self._evaluate(f, ts) for f in findings) if a]
        self._emit_window("performance", self.performance_index, start, end, n, stats)
        self.performance_index += 1
        return alerts

    def _evaluate(self, finding: Finding, ts: float, min_samples: int | None = None) -> Alert | None:
        return self.policy.evaluate(finding, model_version=self.model_version, reference=self.reference_uri,
                                    ts=ts, min_samples=min_samples)

    # -- checkpoint ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything that is not rebuilt from config and reference, as a plain JSON-able dict.

        Drift, quality and serving detectors are folded and reset at every window close, so
        between events their state is the buffered window itself.
        """
        self.flush_outcomes()
        return {
            "model_version": self.model_version,
            "indices": [self.window_index, self.performance_index, self._since_expiry],
            "window": {"rows": [row.as_dict() if isinstance(row, FeatureRow) else row for row in self._rows],
                       "predictions": self._predictions, "scores": self._scores,
                       "latencies": self._latencies, "n": self._n, "start": self._start, "end": self._end},
            "performance_window": {"n": self._perf_n, "start": self._perf_start, "end": self._perf_end,
                                   "label_lags": self._label_lags, "change_hits": self._change_hits,
                                   "outcomes": [dataclasses.astuple(o) for o in self._outcomes]},
            "performance": self.performance.to_dict(),
            "fairness": {a: w.to_dict() for a, w in self.fairness.items()},
            "change": {s: d.to_dict() for s, d in self.change.items()},
            "join": self.join.to_dict(),
            "join_counts_shown": list(self._join_counts_shown),
            "clock": self.clock.to_dict(),
            "policy": self.policy.to_dict(),
            "unmatched_labels": self.unmatched_labels.to_list(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model_version = state["model_version"]
        self.window_index, self.performance_index, self._since_expiry = state["indices"]
        window = state["window"]
        self._rows, self._predictions, self._scores = window["rows"], window["predictions"], window["scores"]
        self._column_parts, self._transposed = [], 0
        self._latencies, self._n, self._start, self._end = window["latencies"], window["n"], window["start"], window["end"]
        perf = state["performance_window"]
        self._perf_n, self._perf_start, self._perf_end = perf["n"], perf["start"], perf["end"]
        self._label_lags, self._change_hits = perf["label_lags"], perf["change_hits"]
        self._outcomes = [Outcome(*fields) for fields in perf.get("outcomes", ())]
        self._deferred_outcomes = []
        self.performance = type(self.performance).from_dict(state["performance"])
        self.fairness = {a: FairnessWindow.from_dict(w) for a, w in state["fairness"].items()}
        self.change = {s: ChangeDetector.from_dict(d) for s, d in state["change"].items()}
        self._watch_streams()
        self.join = LabelJoin.from_dict(state["join"], self.config.label_join_max_pending)
        self._join_counts_shown = tuple(state.get("join_counts_shown", (self.join.evicted, self.join.duplicates)))
        if "clock" in state:  # (a checkpoint from before the event clock starts it afresh at the next record)
            self.clock.restore(state["clock"])
        self.policy.restore(state["policy"])
        self.unmatched_labels.restore(state.get("unmatched_labels"), self.join)

    def _join_stats(self, stats: dict[str, Any]) -> None:
        """The label join's size, and its evictions and duplicates since the last data window (counters add these up)."""
        evicted, duplicates = self.join.evicted, self.join.duplicates
        shown_evicted, shown_duplicates = self._join_counts_shown
        stats["labels_pending"] = self.join.pending
        stats["join_evicted"] = evicted - shown_evicted
        stats["request_ids_duplicate"] = duplicates - shown_duplicates
        self._join_counts_shown = (evicted, duplicates)

    def _emit_window(self, family: str, index: int, start: float, end: float, n: int, stats: dict[str, Any]) -> None:
        if self.on_window is not None:
            self.on_window({"model": self.config.name, "model_version": self.model_version, "family": family,
                            "index": index, "start": start, "end": end, "n": n, "stats": stats})
