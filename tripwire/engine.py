"""The engine: routes typed events to each model's detectors in event time and returns alerts.

It is transport-free and deterministic, so the Faust worker, ``tripwire replay`` and ``tripwire
demo`` run it unchanged: the same events in the same order give the same alerts, byte for byte.

Per event the engine only appends to the open window's buffers; the detectors fold a whole
window at once with numpy when it closes. That keeps the per-event cost a few list appends.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from tripwire.alerts import AlertPolicy, Finding
from tripwire.classes import ClassSet
from tripwire.config import DEFAULT_THRESHOLDS, ConfigError, ModelConfig, MonitorConfig, Threshold, check_references
from tripwire.detectors.change import ChangeDetector
from tripwire.detectors.distribution import CategoricalDrift, NumericDrift, drift_detector_for
from tripwire.detectors.estimated import ConfidenceEstimate, MulticlassConfidenceEstimate
from tripwire.detectors.fairness import FairnessWindow
from tripwire.detectors.multiclass import MulticlassWindow
from tripwire.detectors.multiple_testing import benjamini_hochberg, bonferroni
from tripwire.detectors.performance import ClassificationWindow, RegressionWindow
from tripwire.detectors.quality import FeatureQuality
from tripwire.detectors.registry import DataWindow, PerformanceWindow, detectors_for, judge_window
from tripwire.detectors.serving import ServingWindow
from tripwire.event_time import EARLIEST_TS, LATEST_TS, EventClock
from tripwire.events import Event, Features, Label, Prediction, Rejection, decode_batch, format_ts
from tripwire.join import LabelJoin, Outcome
from tripwire.reference import is_multiclass, load_reference, validate_reference

Alert = dict[str, Any]
WindowSink = Callable[[dict[str, Any]], None]
SummarySink = Callable[[dict[str, Any]], None]

# Metrics where a larger value is worse; for the others a smaller value is worse.
ERROR_METRICS = frozenset({"mae", "rmse", "mape", "log_loss"})
DEFAULT_METRICS = {"regression": ("mae", "rmse"), "classification": ("accuracy", "f1", "roc_auc"),
                   "multiclass": ("accuracy", "macro_f1", "roc_auc")}
ESTIMATED_METRICS = {"classification": ("accuracy", "f1"), "multiclass": ("accuracy", "macro_f1")}
# Per-class statistics of a multi-class performance window, drawn in the report as context.
PER_CLASS_STATS = ("precision", "recall")
SCORE_ORDERS_KEPT = 16  # key orders of `scores` objects whose class positions a monitor remembers
QUALITY_CHECKS = ("missing_rate", "type_error_rate", "out_of_range_rate", "unseen_rate")
EXPIRE_EVERY = 1024
MIN_RUN = 8  # the batch path takes a run of one model's predictions and labels from this long
TRANSPOSE_ROWS = 128  # window rows turned into columns once this many are new (see _transpose_new_rows)
UNATTRIBUTED = "*"


_NUMBER_TYPES = frozenset({float, int})


def _plain_numbers(values: Sequence[Any]) -> np.ndarray | None:
    """The values as floats when every one is a plain number (int or float), else None."""
    return np.array(values, dtype=float) if set(map(type, values)) <= _NUMBER_TYPES else None


def _as_numbers(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Raw JSON values to floats; anything that is not a number (quality counts it) becomes NaN."""
    if isinstance(values, np.ndarray):
        return values  # already converted by _plain_numbers
    floats = _plain_numbers(values)
    if floats is not None:
        return floats
    return np.array([v if type(v) is float or type(v) is int else None for v in values], dtype=float)


def _is_number(value: Any) -> bool:
    return type(value) is float or type(value) is int


class Refused(Exception):
    """Raised by :meth:`Engine.process` for an event its state refuses (a duplicate ``request_id``), before
    the event changed anything: reject ``rejection`` (dead-letter it) instead."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


def degradation(metric: str, current: float, baseline: float) -> float:
    """How much worse than the baseline, as a fraction of it (absolute when the baseline is 0)."""
    worse = current - baseline if metric in ERROR_METRICS else baseline - current
    return worse / abs(baseline) if baseline else worse


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
        # A classifier's predictions and labels are compared in one canonical form (see admit).
        self.multiclass = is_multiclass(reference)
        self.classes = ClassSet(reference["classes"]) if self.task == "classification" else None
        self.positive_class = config.positive_class if config.positive_class is not None else reference.get("positive_class")
        if self.classes is not None and self.positive_class is not None:
            positive = self.classes.canonical(self.positive_class)
            if positive is None:
                raise ConfigError(f"model {config.name!r}: positive_class {self.positive_class!r} is not one of the "
                                  f"reference's classes {self.classes.describe()}")
            self.positive_class = positive
        self._positive_position = (self.classes.index(self.positive_class)
                                   if self.classes is not None and self.positive_class is not None else None)
        self._score_orders: dict[tuple[str, ...], list[int]] = {}  # see _score_vector
        self.model_version: str | None = None
        self.on_window = on_window
        self.policy = AlertPolicy(config.min_samples, config.resolve_windows, config.cooldown_windows)
        self.join = LabelJoin(config.label_ttl_seconds, config.label_join_max_pending)
        self.clock = EventClock(config.allowed_lateness_seconds, config.max_future_seconds)
        self._join_counts_shown = (0, 0)  # (evicted, duplicates) at the last data window: see _join_stats

        profiles = reference["features"]
        self.drift = {n: drift_detector_for(p) for n, p in profiles.items() if config.enabled("drift", f"feature:{n}")}
        self.quality = {n: FeatureQuality(p) for n, p in profiles.items() if config.enabled("quality", f"feature:{n}")}
        self.monitored_features = [n for n in profiles if n in self.drift or n in self.quality]
        self.prediction_drift = drift_detector_for(reference["prediction_profile"])
        score_profile = reference.get("score_profile")
        self.score_drift = NumericDrift(score_profile) if score_profile else None
        self.serving = ServingWindow()
        # A multi-class model has its own performance window and estimate, and a drift detector per class probability.
        class_profiles = reference.get("class_score_profiles") if self.multiclass else None
        self.class_score_drift = [NumericDrift(p) for p in class_profiles] if class_profiles else []
        calibrations = reference.get("class_score_calibrations") if self.multiclass else None
        if not config.enabled("estimated"):
            self.estimate = None
        elif calibrations:
            self.estimate = MulticlassConfidenceEstimate(self.classes.classes, calibrations)
        elif self.task == "classification" and score_profile and not self.multiclass:
            self.estimate = ConfidenceEstimate(self.positive_class, calibration=reference.get("score_calibration"))
        else:
            self.estimate = None
        if self.multiclass:
            self.performance = MulticlassWindow(self.classes.classes)
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
        # Streams fed per prediction; "error" is fed per labelled outcome instead.
        self._event_streams = [(s, d) for s, d in self.change.items() if s != "error"]
        # Families registered in tripwire.detectors.registry; the outcomes are kept only for one that judges them.
        # They judge a window's raw values, which a sharded model's merged windows do not have.
        self.registered = [] if config.sharded else detectors_for(config, reference)
        self._keeps_outcomes = any(family.window == "performance" for family, _ in self.registered)
        self.window_index = 0
        self.performance_index = 0
        self._reset_data_window()
        self._reset_performance_window()
        self._since_expiry = 0
        # Unmatched labels (see _judge_unmatched_labels): labels since the last check, the join's
        # joined and expired-label counts when the open window began, and its start.
        self._unmatched_window: list[Any] = [0, 0, 0, None]  # labels since judged, joined, expired, start

    # -- events ----------------------------------------------------------------------------
    def on_prediction(self, event: Prediction) -> list[Alert]:
        duplicate = self.join.prediction_refusal(event.request_id)
        if duplicate is not None:
            raise Refused(Rejection(duplicate, event.model))
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
        self._rows += [e.features for e in events if e.features]
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
        outcome = self.join.add_label(event.request_id, event.ts, event.label)
        if outcome is not None:
            alerts += self._on_outcome(outcome, event.ts)
        window = self._unmatched_window
        if window[3] is None:
            window[3] = event.ts
        window[0] += 1
        if window[0] >= EXPIRE_EVERY:
            alerts += self._judge_unmatched_labels(event.ts)
        return alerts

    def _judge_unmatched_labels(self, ts: float) -> list[Alert]:
        """Every EXPIRE_EVERY labels: the share of the labels settled since the last window (joined to a
        prediction, or expired after the TTL) that expired without ever meeting one.

        A window is judged once ``min_samples`` labels were settled in it. Labels that never meet a
        prediction are those of a model whose labels land on another partition than its predictions
        (another key or partitioner), or carry other request ids. Counted in event time on this
        model's own events, so replay and worker judge the same windows.
        """
        window = self._unmatched_window
        window[0] = 0
        self.join.expire(ts)  # a partition holding only this model's labels never reaches the prediction path's expiry
        joined = self.join.joined - window[1]
        unmatched = self.join.expired_labels - window[2]
        settled = joined + unmatched
        if settled < self.config.min_samples:
            return []
        start = window[3]
        self._unmatched_window = [0, self.join.joined, self.join.expired_labels, ts]
        name = self.config.name
        rate = unmatched / settled
        finding = Finding(
            model=UNATTRIBUTED, kind="data_quality", signal=f"labels:{name}", detector="unmatched_label_rate",
            value=rate, threshold=self.config.threshold("unmatched_label_rate", "labels"), window_start=start,
            window_end=ts, n=settled,
            evidence={"model": name, "labels_unmatched": unmatched, "labels_joined": joined,
                      "label_ttl_seconds": self.join.ttl},
            message=f"{unmatched} of {settled} labels of {name} expired after {self.join.ttl:g} s without meeting "
                    f"a prediction ({rate:.0%}): are they keyed like its predictions (same partition), with the "
                    "same request ids?",
        )
        alert = self.policy.evaluate(finding, model_version=None, reference=None, ts=ts)
        return [alert] if alert else []

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
        for stream, detector in self._event_streams:
            if stream == "score":
                value = event.score
            elif stream == "prediction":
                value = event.prediction
            else:
                value = event.features.get(stream.removeprefix("feature:"))
            if (type(value) is float or type(value) is int) and detector.update(value):
                alerts += self._change_alarm(stream, detector, event.ts)
        return alerts

    def _on_outcome(self, outcome: Outcome, ts: float) -> list[Alert]:
        alerts: list[Alert] = []
        if self._perf_n == 0:
            self._perf_start = self._perf_end = ts
        elif ts > self._perf_end:
            self._perf_end = ts
        self._perf_n += 1
        self._label_lags.append(outcome.label_lag)
        if self._keeps_outcomes:
            self._outcomes.append(outcome)
        if self.task == "classification":
            self.performance.update(outcome.prediction, outcome.label, outcome.score)
            for attribute, window in self.fairness.items():
                group = outcome.attributes.get(attribute)
                if group is not None:
                    window.update(str(group), outcome.prediction, outcome.label)
        else:  # a regression prediction and label are numbers (see admit)
            self.performance.update(outcome.prediction, outcome.label)
        if self.sharded:  # its performance window is its data window, judged after the merge
            return alerts
        error_stream = self.change.get("error")
        if error_stream is not None:
            if error_stream.update(self._error(outcome)):
                alerts += self._change_alarm("error", error_stream, ts)
        if self._perf_n >= self.config.performance_window:
            alerts += self.close_performance_window(ts)
        return alerts

    def _error(self, outcome: Outcome) -> float:
        """Per-event error on a scale the change detectors' defaults suit: 0/1, or |error| / baseline MAE."""
        if self.task == "classification":
            return float(outcome.prediction != outcome.label)
        scale = self.reference["baseline"].get("mae") or 1.0
        return abs(outcome.prediction - outcome.label) / scale

    def _change_alarm(self, stream: str, detector: ChangeDetector, ts: float) -> list[Alert]:
        self._change_hits[stream] = self._change_hits.get(stream, 0) + 1
        kind = "concept_drift" if stream == "error" else ("data_drift" if stream.startswith("feature:") else "prediction_drift")
        method = self.config.change_method
        finding = Finding(
            model=self.config.name, kind=kind, signal=f"change:{stream}", detector=method, value=1,
            threshold=self.config.threshold(method, f"change:{stream}"),
            window_start=self._perf_start if stream == "error" else self._start, window_end=ts, n=detector.n,
            message=f"{method} detected a change in the {stream} stream of {self.config.name} after {detector.n} values",
        )
        alert = self._evaluate(finding, ts, min_samples=1)
        return [alert] if alert else []

    # -- windows ---------------------------------------------------------------------------
    def _reset_data_window(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._column_parts: list[list[tuple[Any, ...]]] = []  # the first `_transposed` rows, as columns
        self._transposed = 0
        self._predictions: list[Any] = []
        self._scores: list[float] = []
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
        profiles = self.reference["features"]
        for name, column in zip(self.monitored_features, self._feature_columns()):
            # A numeric column of plain numbers is converted once, for quality and drift both.
            floats = _plain_numbers(column) if profiles[name]["kind"] == "numeric" else None
            if name in self.quality:
                self.quality[name].update_many(column, floats)
            if name in self.drift:
                _fold_drift(self.drift[name], column if floats is None else floats)
        if self.config.enabled("drift", "prediction"):
            _fold_drift(self.prediction_drift, self._predictions)
        if self.score_drift is not None and self.config.enabled("drift", "score"):
            _fold_drift(self.score_drift, self._scores)
        for position, detector in enumerate(self.class_score_drift):
            if self.config.enabled("drift", f"score:{self.classes.classes[position]}"):
                _fold_drift(detector, [vector[position] for vector in self._scores])
        if self.estimate is not None:
            self.estimate.update_many(self._scores)
        if self.config.enabled("serving", "serving"):
            self.serving.update_many(self._latencies, self._start, self._end)
        self._reset_data_window()

    def judge_data_window(self, start: float, end: float, n: int, ts: float,
                          raw: DataWindow | None = None) -> list[Alert]:
        """Judge the folded data window's detectors (the alert policy decides), reset them, emit the window.

        ``raw``: the window's values, for the registered families (None: a merged window has none).
        """
        findings: list[Finding] = []
        stats: dict[str, Any] = {}
        feature_findings, pvalues = [], []
        for name in self.monitored_features:
            if name in self.quality:
                findings += self._quality_findings(name, start, end, stats)
            if name in self.drift:
                finding, pvalue = self._drift_finding(self.drift[name], "data_drift", f"feature:{name}", start, end,
                                                      stats)
                if finding is not None:
                    feature_findings.append(finding)
                    pvalues.append(pvalue)
        findings += self._significant(feature_findings, pvalues)

        if self.config.enabled("drift", "prediction"):
            finding, pvalue = self._drift_finding(self.prediction_drift, "prediction_drift", "prediction", start, end,
                                                  stats)
            findings += self._significant([finding], [pvalue]) if finding else []
        if self.score_drift is not None and self.config.enabled("drift", "score"):
            finding, pvalue = self._drift_finding(self.score_drift, "prediction_drift", "score", start, end, stats)
            findings += self._significant([finding], [pvalue]) if finding else []
        if self.class_score_drift:
            findings += self._class_score_findings(start, end, stats)
        if self.estimate is not None:
            findings += self._estimate_findings(start, end, stats)
        if self.config.enabled("serving", "serving"):
            findings += self._serving_findings(start, end, stats)
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
        return [tuple(chain.from_iterable(column)) for column in zip(*parts)]

    def _transpose_new_rows(self) -> None:
        """Turn the rows appended since the last call into columns, while they are still in the CPU's caches."""
        rows, names = self._rows, self.monitored_features
        if self._transposed == len(rows) and self._column_parts:
            return
        new = rows[self._transposed:] if self._transposed else rows
        self._transposed = len(rows)
        if len(names) > 1 and new:
            try:
                self._column_parts.append(list(zip(*map(itemgetter(*names), new))))  # every row has every feature
                return
            except KeyError:
                pass
        self._column_parts.append([tuple([row.get(name) for row in new]) for name in names])

    def close_performance_window(self, ts: float) -> list[Alert]:
        alerts = self.judge_performance_window(self._perf_start, self._perf_end, self._perf_n, ts)
        self._reset_performance_window()
        return alerts

    def judge_performance_window(self, start: float, end: float, n: int, ts: float) -> list[Alert]:
        """Judge the performance and fairness windows folded so far (and the change streams' hits), reset them."""
        findings: list[Finding] = []
        stats: dict[str, Any] = {}
        if self.config.enabled("performance"):
            result = self.performance.result()
            findings += self._baseline_findings(result, self.metrics, n, start, end, stats, estimated=False)
            if self.multiclass:
                for cls in self.classes.classes:
                    for metric in PER_CLASS_STATS:
                        stats[f"class:{cls}.{metric}"] = result[f"{metric}:{cls}"]
        self.performance.reset()
        for attribute, window in self.fairness.items():
            findings += self._fairness_findings(attribute, window, start, end, stats)
        for stream, hits in self._change_hits.items():
            stats[f"change:{stream}"] = hits
        for stream in self.change:
            method = self.config.change_method
            findings.append(Finding(
                model=self.config.name, kind="concept_drift" if stream == "error" else "data_drift",
                signal=f"change:{stream}", detector=method, value=self._change_hits.get(stream, 0),
                threshold=self.config.threshold(method, f"change:{stream}"), window_start=start, window_end=end,
                n=n, message=f"{method} on the {stream} stream of {self.config.name}",
            ))
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

    def _quality_findings(self, name: str, start: float, end: float, stats: dict[str, Any]) -> list[Finding]:
        quality = self.quality[name]
        result = quality.result()
        quality.reset()
        signal = f"feature:{name}"
        baseline_missing = self.reference["features"][name].get("missing_rate", 0.0)
        findings = []
        for check in QUALITY_CHECKS:
            rate = result[check]
            if rate is None:
                continue
            stats[f"{signal}.{check}"] = rate
            value = rate - baseline_missing if check == "missing_rate" else rate
            evidence = {"rate": rate}
            if check == "unseen_rate" and result["unseen_examples"]:
                evidence["examples"] = result["unseen_examples"]
            findings.append(Finding(
                model=self.config.name, kind="data_quality", signal=signal, detector=check, value=value,
                threshold=self.config.threshold(check, signal), window_start=start, window_end=end,
                n=result["n"], evidence=evidence,
                message=f"{check.replace('_', ' ')} of {name} is {rate:.2%} over {result['n']} values",
            ))
        return findings

    def _drift_finding(self, detector: NumericDrift | CategoricalDrift, kind: str, signal: str,
                       start: float, end: float, stats: dict[str, Any]) -> tuple[Finding | None, float | None]:
        result = detector.result()
        window_counts = detector.counts
        detector.reset()
        if result["n"] == 0:
            return None, None
        statistic = self.config.drift_statistic
        if result.get(statistic) is None:
            statistic = "psi"  # Wasserstein has no meaning between categories
        pvalue = result.get("ks_pvalue", result.get("chi2_pvalue"))
        for key in ("psi", "js", "wasserstein"):
            if result.get(key) is not None:
                stats[f"{signal}.{key}"] = result[key]
        stats[f"{signal}.pvalue"] = pvalue
        # The window's histogram on the reference bins (a list, not a scalar): the report draws it.
        stats[f"{signal}.fractions"] = (window_counts / result["n"]).tolist()
        value = result[statistic]
        name = signal.removeprefix("feature:")
        finding = Finding(
            model=self.config.name, kind=kind, signal=signal, detector=statistic, value=value,
            threshold=self.config.threshold(statistic, signal), window_start=start, window_end=end, n=result["n"],
            evidence={"pvalue": pvalue, "top_bins": result["top_bins"],
                      **{k: result[k] for k in ("psi", "js", "wasserstein") if result.get(k) is not None}},
            message=f"{statistic.upper() if statistic != 'wasserstein' else 'Wasserstein'} of {name} is {value:.3g} "
                    f"over {result['n']} values (p = {pvalue:.2g})",
        )
        return finding, pvalue

    def _significant(self, findings: list[Finding], pvalues: list[float | None]) -> list[Finding]:
        """A drift must be large (effect size) and not chance (p-value after multiple-testing correction)."""
        if not findings:
            return []
        correction = self.config.drift_correction
        alpha = self.config.drift_alpha
        if correction == "benjamini-hochberg":
            passed = benjamini_hochberg(pvalues, alpha)
        elif correction == "bonferroni":
            passed = bonferroni(pvalues, alpha)
        else:
            passed = [p is not None and p <= alpha for p in pvalues]
        return [Finding(**{**_fields(f), "significant": ok}) for f, ok in zip(findings, passed)]

    def _class_score_findings(self, start: float, end: float, stats: dict[str, Any]) -> list[Finding]:
        """Drift of each class's probability (multi-class), corrected for testing one signal per class."""
        findings, pvalues = [], []
        for position, detector in enumerate(self.class_score_drift):
            signal = f"score:{self.classes.classes[position]}"
            if not self.config.enabled("drift", signal):
                continue
            finding, pvalue = self._drift_finding(detector, "prediction_drift", signal, start, end, stats)
            if finding is not None:
                findings.append(finding)
                pvalues.append(pvalue)
        return self._significant(findings, pvalues)

    def _estimate_findings(self, start: float, end: float, stats: dict[str, Any]) -> list[Finding]:
        result = self.estimate.result()
        self.estimate.reset()
        return self._baseline_findings(result, self.estimated_metrics, result["n"], start, end, stats, estimated=True)

    def _baseline_findings(self, result: dict[str, Any], metrics: Iterable[str], n: int, start: float, end: float,
                           stats: dict[str, Any], *, estimated: bool) -> list[Finding]:
        """Each metric's degradation against the reference baseline: realized, or estimated before labels."""
        family, kind = ("estimated", "estimated_performance") if estimated else ("performance", "performance")
        baseline = self.reference["baseline"]
        findings = []
        for metric in metrics:
            detector = f"estimated_{metric}" if estimated else metric
            current, base = result.get(detector), baseline.get(metric)
            signal = f"{family}:{metric}"
            stats[signal] = current
            if current is None or base is None or not self.config.enabled(family, signal):
                continue
            worse = degradation(metric, current, base)
            if estimated:
                evidence = {"estimated": current, "baseline": base}
                message = (f"estimated {metric} of {self.config.name} (from scores, before labels) is {current:.4g} "
                           f"vs baseline {base:.4g}")
            else:
                evidence = {"current": current, "baseline": base}
                message = (f"{metric} of {self.config.name} is {current:.4g} vs baseline {base:.4g} "
                           f"({worse:+.1%} worse) over {n} labelled predictions")
            findings.append(Finding(
                model=self.config.name, kind=kind, signal=signal, detector=detector, value=worse,
                threshold=self.config.threshold(detector, signal), window_start=start, window_end=end, n=n,
                evidence=evidence, message=message,
            ))
        return findings

    def _serving_findings(self, start: float, end: float, stats: dict[str, Any]) -> list[Finding]:
        result = self.serving.result()
        self.serving.reset()
        findings = []
        for key in ("latency_p50", "latency_p95", "latency_p99", "throughput_per_s"):
            stats[f"serving.{key}"] = result[key]
        for key, unit in (("latency_p95", "ms"), ("latency_p99", "ms"), ("throughput_per_s", "/s")):
            value = result[key]
            threshold = self.config.threshold(key, "serving")
            if value is None or (threshold.warning is None and threshold.critical is None):
                continue
            findings.append(Finding(
                model=self.config.name, kind="infrastructure", signal="serving", detector=key, value=value,
                threshold=threshold, window_start=start, window_end=end, n=result["n"],
                evidence={k: result[k] for k in ("latency_p50", "latency_p95", "latency_p99", "throughput_per_s")},
                message=f"{key.replace('_', ' ')} of {self.config.name} is {value:.4g} {unit} over {result['n']} requests",
            ))
        return findings

    def _fairness_findings(self, attribute: str, window: FairnessWindow, start: float, end: float,
                           stats: dict[str, Any]) -> list[Finding]:
        result = window.result()
        window.reset()
        signal = f"fairness:{attribute}"
        if not self.config.enabled("fairness", signal):
            return []
        findings = []
        for metric in ("demographic_parity_difference", "equalized_odds_difference", "disparate_impact_ratio"):
            value = result.get(metric)
            stats[f"{signal}.{metric}"] = value
            if value is None:
                continue
            findings.append(Finding(
                model=self.config.name, kind="fairness", signal=signal, detector=metric, value=value,
                threshold=self.config.threshold(metric, signal), window_start=start, window_end=end,
                n=result.get("min_group_n") or 0, evidence={"groups": result["groups"]},
                message=f"{metric.replace('_', ' ')} across {attribute} is {value:.3g} "
                        f"(smallest group {result.get('min_group_n')} labelled predictions)",
            ))
        return findings

    def _evaluate(self, finding: Finding, ts: float, min_samples: int | None = None) -> Alert | None:
        return self.policy.evaluate(finding, model_version=self.model_version, reference=self.reference_uri,
                                    ts=ts, min_samples=min_samples)

    # -- checkpoint ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything that is not rebuilt from config and reference, as a plain JSON-able dict.

        Drift, quality and serving detectors are folded and reset at every window close, so
        between events their state is the buffered window itself.
        """
        return {
            "model_version": self.model_version,
            "indices": [self.window_index, self.performance_index, self._since_expiry],
            "window": {"rows": self._rows, "predictions": self._predictions, "scores": self._scores,
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
            "unmatched_labels": list(self._unmatched_window),
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
        self.performance = type(self.performance).from_dict(state["performance"])
        self.fairness = {a: FairnessWindow.from_dict(w) for a, w in state["fairness"].items()}
        self.change = {s: ChangeDetector.from_dict(d) for s, d in state["change"].items()}
        self._event_streams = [(s, d) for s, d in self.change.items() if s != "error"]
        self.join = LabelJoin.from_dict(state["join"], self.config.label_join_max_pending)
        self._join_counts_shown = tuple(state.get("join_counts_shown", (self.join.evicted, self.join.duplicates)))
        if "clock" in state:  # (a checkpoint from before the event clock starts it afresh at the next record)
            self.clock.restore(state["clock"])
        self.policy.restore(state["policy"])
        fresh = [0, self.join.joined, self.join.expired_labels, None]  # a checkpoint from before this rule
        since, joined, expired, start = state.get("unmatched_labels") or fresh
        self._unmatched_window = [int(since), int(joined), int(expired), None if start is None else float(start)]

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

    # -- admission: values in the reference's form, times on the model's event clock ----------------
    def admit(self, event: Event) -> Event | Rejection:
        """The event, checked and in canonical form, or a rejection saying why not.

        A classifier's prediction and label are put in the reference's class form (see
        :meth:`_admit_classes`); a regression model's must be numbers. Then the event's time must
        suit the model's event clock (late or far-future records are refused, see
        :class:`tripwire.event_time.EventClock`); an event that passes moves the clock, even one the
        label join refuses afterwards as a duplicate (admission runs ahead of processing in a batch).
        """
        if type(event) is not Features:
            if self.classes is not None:
                event = self._admit_classes(event)
            elif not _is_number(event.prediction if type(event) is Prediction else event.label):
                event = self._number_rejection(event)
            if type(event) is Rejection:
                return event
        refusal = self.clock.refusal(event.ts, self.config.name)
        return event if refusal is None else Rejection(refusal, self.config.name)

    def _number_rejection(self, event: Prediction | Label) -> Rejection:
        role, value = ("prediction", event.prediction) if type(event) is Prediction else ("label", event.label)
        return Rejection(f"{role} {value!r} of regression model {self.config.name!r} is not a number (an outcome "
                         f"that cannot be scored is refused, never counted as right or wrong)", self.config.name)

    def _admit_classes(self, event: Prediction | Label) -> Prediction | Label | Rejection:
        """The event with its classes in the reference's spelling, or a rejection saying why it has none.

        ``"1"``, ``1`` and ``1.0`` are one class, ``"true"`` and ``True`` too (see
        :mod:`tripwire.classes`), so a label sent as ``1`` for a prediction ``"1"`` is a hit, not
        a miss; a value that is no class of the reference is rejected rather than counted wrong.
        A multi-class prediction's ``scores`` (class -> probability, every class) become its
        ``score``: the probability vector in class order, which the windows and the label join
        carry. A binary prediction with ``scores`` but no ``score`` gets the positive class's.
        """
        classes = self.classes
        if type(event) is Label:
            label = classes.canonical(event.label)
            if label is None:
                return self._class_rejection("label", event.label)
            event.label = label
            return event
        prediction = classes.canonical(event.prediction)
        if prediction is None:
            return self._class_rejection("prediction", event.prediction)
        event.prediction = prediction
        if self.multiclass:
            if event.scores is not None:
                vector = self._score_vector(event.scores)
                if type(vector) is Rejection:
                    return vector
                event.score = vector
            elif event.score is not None:
                return Rejection(f"model {self.config.name!r} has {len(classes)} classes: a prediction gives 'scores' "
                                 f"(class -> probability), not one 'score'", event.model)
        elif event.score is None and event.scores is not None and self._positive_position is not None:
            vector = self._score_vector(event.scores)
            if type(vector) is Rejection:
                return vector
            event.score = vector[self._positive_position]
        return event

    def _score_vector(self, scores: dict[str, float]) -> tuple[float, ...] | Rejection:
        if len(scores) == len(self.classes):
            # A producer sends its keys in the same order every time: their class positions are cached.
            order = self._score_orders.get(tuple(scores))
            if order is not None:
                vector = [0.0] * len(order)
                for position, probability in zip(order, scores.values()):
                    vector[position] = probability
                return tuple(vector)
        vector: list[float | None] = [None] * len(self.classes)
        for key, probability in scores.items():
            position = self.classes.index(key)
            if position is None:
                return self._class_rejection("scores key", key)
            vector[position] = probability
        if None not in vector and len(self._score_orders) < SCORE_ORDERS_KEPT:
            self._score_orders[tuple(scores)] = [self.classes.index(key) for key in scores]
        if None in vector:
            missing = [c for c, p in zip(self.classes.classes, vector) if p is None]
            return Rejection(f"field 'scores' has no probability for the classes {missing} of model "
                             f"{self.config.name!r}", self.config.name)
        return tuple(vector)

    def _class_rejection(self, role: str, value: Any) -> Rejection:
        return Rejection(f"{role} {value!r} is not one of the classes {self.classes.describe()} of model "
                         f"{self.config.name!r} (its reference)", self.config.name)


def _fold_drift(detector: NumericDrift | CategoricalDrift, values: Sequence[Any] | np.ndarray) -> None:
    if isinstance(detector, NumericDrift):
        detector.update_many(_as_numbers(values))
    else:
        detector.update_many(values)  # it skips None itself


def _fields(finding: Finding) -> dict[str, Any]:
    return {name: getattr(finding, name) for name in Finding.__slots__}


@dataclass
class BatchResult:
    """What :meth:`Engine.process_records` made of a batch of raw records."""

    alerts: list[Alert] = field(default_factory=list)  # in the order one-by-one processing would emit them
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)  # (index into the records, rejection)
    events: int = 0  # records that were valid events
    last_ts: float | None = None  # event time of the last valid event
    alert_records: list[int] = field(default_factory=list)  # per alert, the index of the record that raised it


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
        monitor = self.monitors.get(event.model)
        if monitor is None:
            self.unmonitored += 1
            alerts: list[Alert] = []
        elif type(event) is Prediction:
            alerts = monitor.on_prediction(event)
        elif type(event) is Label:
            alerts = monitor.on_label(event)
        else:
            alerts = monitor.on_features(event)
        self.events += 1
        if event.ts > self._last_ts:  # a late record does not move the record window's end back
            self._last_ts = event.ts
        self._records += 1
        if self._records == 1:
            self._window_start = event.ts
        if self._records >= self.config.rejection_window:
            alerts += self._close_record_window()
        return self._tally(alerts) if alerts else alerts

    def admit(self, event: Event | Rejection) -> Event | Rejection:
        """Call between ``decode`` and :meth:`handle`: a classifier's event in its reference's class form.

        A prediction or label whose class the model's reference does not know comes back as a
        :class:`Rejection` (dead-letter it); see :meth:`ModelMonitor.admit`.
        """
        if type(event) is Rejection:
            return event
        monitor = self.monitors.get(event.model)
        if monitor is not None:
            return monitor.admit(event)
        if not EARLIEST_TS <= event.ts <= LATEST_TS:  # no model's clock, but the record window's end is one
            return Rejection(f"field 'ts' is outside the years 1-9999 in UTC ({event.ts:.0f} s from 1970)", event.model)
        return event

    def step(self, event: Event | Rejection) -> tuple[list[Alert], Rejection | None]:
        """Whatever ``decode`` returned, admitted and processed: the alerts, and the rejection to
        dead-letter (None when the event was processed)."""
        event = self.admit(event)
        if type(event) is not Rejection:
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
        record in order; the batch is only faster (see :func:`tripwire.events.decode_batch`). A
        record on which the engine itself fails is rejected with the error, and the batch goes on.
        """
        result = BatchResult()
        alerts, alert_records = result.alerts, result.alert_records
        admit = self.admit
        items = [admit(item) for item in decode_batch(records)]
        index, count = 0, len(items)
        while index < count:
            item = items[index]
            if type(item) is Prediction or type(item) is Label:
                taken = self._run_in_bulk(items, index, result)
                if taken:
                    index += taken
                    continue
            if type(item) is Rejection:
                result.rejections.append((index, item))
                raised = self.reject(item)
            else:
                try:
                    raised = self.process(item)
                    result.events += 1
                    result.last_ts = item.ts
                except Refused as refused:
                    result.rejections.append((index, refused.rejection))
                    raised = self.reject(refused.rejection)
                except Exception as error:  # a bug must not stop a runner: dead-letter the record, go on
                    result.rejections.append((index, Rejection(f"engine error: {type(error).__name__}: {error}",
                                                               item.model)))
                    raised = []
            if raised:
                alerts += raised
                alert_records += [index] * len(raised)
            index += 1
        return result

    def _run_in_bulk(self, items: list[Event | Rejection], first: int, result: BatchResult) -> int:
        """Process the run of one model's predictions and labels from ``items[first]``; return how
        many items it took (0: none, the caller takes ``items[first]`` one by one).

        The predictions go to the data window column-wise, once for the whole run (see
        :meth:`ModelMonitor.bulk_room` and :meth:`~ModelMonitor.bulk_span`: no window close or join
        expiry inside it); before each label, the predictions since the previous one join the label join (see
        :meth:`ModelMonitor.join_predictions`), so the label meets the join, the model version and
        the performance window exactly as one-by-one processing leaves them, and whatever it
        raises is that path's. The run stops before a record that could behave otherwise: a
        prediction a label waits for or that repeats a request id, a label the join would refuse,
        another model, another event type, the record that closes the rejection window.
        """
        model = items[first].model
        stop = min(len(items), first + self.config.rejection_window - self._records - 1)
        if stop - first < MIN_RUN:
            return 0
        for position in range(first + MIN_RUN - 1, first, -1):  # (from the far end: models that alternate fail first)
            item = items[position]
            if (type(item) is not Prediction and type(item) is not Label) or item.model != model:
                return 0  # a short run: its bookkeeping would cost more than the one-by-one path
        monitor = self.monitors.get(model)
        if monitor is None:
            return 0
        join = monitor.join
        prediction_room = monitor.bulk_room()
        low, high = monitor.bulk_span()
        predictions: list[Prediction] = []  # the run's predictions, for the data window at the end
        joined = 0  # how many of them are in the label join already
        position = first
        latest = self._last_ts
        failed: int | None = None  # a label on which the engine failed: dead-lettered, not counted
        while position < stop:
            item = items[position]
            kind = type(item)
            if kind is Prediction:
                if item.model != model or len(predictions) >= prediction_room or not low <= item.ts < high:
                    break
                predictions.append(item)
            elif kind is Label:
                # A sharded model's label may close the data window (see _open_sharded_window): the
                # run's predictions must be in it first, so the label waits for the one-by-one path.
                if item.model != model or monitor.sharded or join.would_refuse_label(item.request_id):
                    break
                if joined < len(predictions):
                    joined += monitor.join_predictions(predictions, joined, len(predictions))
                    if joined < len(predictions):  # from that prediction on, the one-by-one path
                        position -= len(predictions) - joined
                        del predictions[joined:]
                        break
                try:
                    raised = monitor.on_label(item)
                except Exception as error:  # a bug must not stop a runner: dead-letter the record, go on
                    result.rejections.append((position, Rejection(f"engine error: {type(error).__name__}: {error}",
                                                                  item.model)))
                    failed = position
                    position += 1
                    break
                if raised:
                    result.alerts += self._tally(raised)
                    result.alert_records += [position] * len(raised)
                if item.ts > latest:
                    latest = item.ts
            else:
                break
            position += 1
        if joined < len(predictions):
            joined += monitor.join_predictions(predictions, joined, len(predictions))
            position -= len(predictions) - joined
            del predictions[joined:]
        if predictions:
            monitor.append_predictions(predictions)
            latest = max(latest, monitor._end)  # the data window's end is its latest prediction time
        counted = (position if failed is None else failed) - first
        if counted:
            self.events += counted
            self._last_ts = latest
            if self._records == 0:
                self._window_start = items[first].ts
            self._records += counted
            result.events += counted
            result.last_ts = items[first + counted - 1].ts
        return position - first

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


__all__ = ["BatchResult", "Engine", "ModelMonitor", "Refused", "degradation", "Threshold"]
