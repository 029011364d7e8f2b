"""A sharded model's window summary: what one partition folded into one event-time window, as plain data.

Built by :func:`window_summary` when a partition closes the window (the monitor's detectors hold
the folded window), read back by :func:`merge_summary` into the detectors of the monitor that
judges the merged window. Everything in it adds up across partitions: counts on the reference
bins, quality counts, confusion counts and error sums, scores and latencies on fixed bins (see
:mod:`tripwire.detectors.histogram`), per-group counts for fairness, the label join's counts.

A summary is JSON: ``{"type": "window_summary", "schema", "model", "partition", "window",
"start", "end", "n", "watermark", "model_version", "data", "performance", "join"}`` where
``window`` is ``floor(start / window_seconds)`` and ``watermark`` the start of the partition's
window opened after it: that partition never adds to a window before it again.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

from tripwire.detectors.estimated import ConfidenceEstimate
from tripwire.detectors.performance import ClassificationWindow, RegressionWindow

if TYPE_CHECKING:
    from tripwire.monitor import ModelMonitor

SCHEMA = 1
JOIN_COUNTS = ("labels_pending", "join_evicted", "request_ids_duplicate", "predictions_expired_unlabelled",
               "labels_unmatched")


def window_summary(monitor: ModelMonitor, start: float, end: float, n: int, *, watermark: float) -> dict[str, Any]:
    """The folded window of a sharded ``monitor`` as a summary; its detectors are reset for the next window.

    ``partition`` is left None: the runner that owns the monitor's partition sets it.
    """
    data: dict[str, Any] = {
        "drift": {name: _take(detector) for name, detector in monitor.drift.items()},
        "quality": {name: _take(detector) for name, detector in monitor.quality.items()},
        "prediction": _take(monitor.prediction_drift),
        "score": _take(monitor.score_drift) if monitor.score_drift is not None else None,
        "estimate": _take(monitor.estimate) if monitor.estimate is not None else None,
        "serving": _take(monitor.serving),
    }
    performance = {"n": monitor._perf_n, "start": monitor._perf_start, "end": monitor._perf_end,
                   "window": _take(monitor.performance),
                   "fairness": {attribute: _take(window) for attribute, window in monitor.fairness.items()}}
    join: dict[str, Any] = {}
    monitor._join_stats(join)  # (its evictions and duplicates since the last window)
    join["predictions_expired_unlabelled"] = monitor.join.expired_predictions
    join["labels_unmatched"] = monitor.join.expired_labels
    seconds = monitor.config.window_seconds
    return {"type": "window_summary", "schema": SCHEMA, "model": monitor.config.name, "partition": None,
            "window": math.floor(start / seconds), "start": start, "end": end, "n": n, "watermark": watermark,
            "model_version": monitor.model_version, "data": data, "performance": performance, "join": join}


def _take(detector: Any) -> dict[str, Any]:
    summary = detector.summary()
    detector.reset()
    return summary


def merge_summary(monitor: ModelMonitor, summary: dict[str, Any]) -> None:
    """Add one partition's window ``summary`` into the detectors of ``monitor`` (which judges merged windows)."""
    if monitor.multiclass:  # (refused by the configuration: multi-class windows have no summary yet)
        raise ValueError(f"model {monitor.config.name!r} is multi-class: it cannot be sharded")
    estimate = cast(ConfidenceEstimate | None, monitor.estimate)
    performance_window = cast(ClassificationWindow | RegressionWindow, monitor.performance)
    data = summary["data"]
    for family, detectors in (("drift", monitor.drift), ("quality", monitor.quality)):
        for name, part in data[family].items():
            if name not in detectors:
                raise ValueError(f"summary of model {monitor.config.name!r} has {family} of feature {name!r}, "
                                 f"which this configuration does not monitor")
            detectors[name].merge(part)
    monitor.prediction_drift.merge(data["prediction"])
    for detector, part in ((monitor.score_drift, data["score"]), (estimate, data["estimate"])):
        if (detector is None) != (part is None):
            raise ValueError(f"summary of model {monitor.config.name!r} does not match its reference's detectors")
        if detector is not None:
            detector.merge(part)
    monitor.serving.merge(data["serving"])
    performance = summary["performance"]
    performance_window.merge(performance["window"])
    for attribute, part in performance["fairness"].items():
        if attribute in monitor.fairness:
            monitor.fairness[attribute].merge(part)
