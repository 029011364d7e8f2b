"""A closing data window folded into its model's detectors: a column of values per detector, at once with numpy.

Folding is the per-window half of a monitor's work (per event it only appends to the window's
buffers); :mod:`tripwire.findings` then judges the folded detectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence, cast

import numpy as np

from tripwire.detectors.distribution import CategoricalDrift, NumericDrift, fold_numeric_columns
from tripwire.detectors.estimated import ConfidenceEstimate
from tripwire.detectors.plain import all_plain_numbers, as_floats, plain_floats
from tripwire.detectors.quality import check_numeric_columns

if TYPE_CHECKING:
    from tripwire.monitor import ModelMonitor


def _as_numbers(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Raw JSON values to floats; anything that is not a number (quality counts it) becomes NaN."""
    if isinstance(values, np.ndarray):
        return values  # already converted by plain_floats
    floats = plain_floats(values)
    if floats is not None:
        return floats
    return np.array([v if type(v) is float or type(v) is int else None for v in values], dtype=float)


def fold_data_window(monitor: ModelMonitor, columns: Sequence[Sequence[Any]], predictions: Sequence[Any],
                     scores: Sequence[Any], latencies: Sequence[float | None], start: float, end: float) -> None:
    """Fold one data window into ``monitor``'s drift, quality, estimate and serving detectors.

    ``columns``: one per monitored feature, in ``monitor.monitored_features`` order.
    """
    profiles = monitor.reference["features"]
    quality, drift = monitor.quality, monitor.drift
    plain: list[tuple[str, Sequence[Any]]] = []  # the numeric columns of plain numbers, folded together
    for name, column in zip(monitor.monitored_features, columns):
        if profiles[name]["kind"] == "numeric" and all_plain_numbers(column):
            plain.append((name, column))
            continue
        if name in quality:
            quality[name].update_many(column)
        if name in drift:
            _fold_drift(drift[name], column)
    if plain:
        # One float64 row per column, converted once for quality and drift, each counted for all rows at once.
        floats = as_floats([column for _, column in plain], len(plain[0][1]))
        checked = [i for i, (name, _) in enumerate(plain) if name in quality]
        check_numeric_columns([quality[plain[i][0]] for i in checked], [plain[i][1] for i in checked], floats[checked])
        drifting = [i for i, (name, _) in enumerate(plain) if name in drift]
        numeric_drift = [drift[plain[i][0]] for i in drifting]  # a numeric profile's are NumericDrift
        fold_numeric_columns(cast("list[NumericDrift]", numeric_drift), floats[drifting])
    if monitor.config.enabled("drift", "prediction"):
        _fold_drift(monitor.prediction_drift, predictions)
    # Scores that are plain numbers (one per prediction: no multi-class vectors) are converted once.
    score_floats = plain_floats(scores) if monitor.score_drift is not None else None
    if monitor.score_drift is not None and monitor.config.enabled("drift", "score"):
        if score_floats is None:
            _fold_drift(monitor.score_drift, scores)
        else:  # (counted on the sorted scores, as the features: cheaper than a binary search per score)
            fold_numeric_columns([monitor.score_drift], score_floats[np.newaxis])
    for position, detector in enumerate(monitor.class_score_drift):
        if monitor.config.enabled("drift", f"score:{monitor.class_names[position]}"):
            _fold_drift(detector, [vector[position] for vector in scores])
    if isinstance(monitor.estimate, ConfidenceEstimate):
        monitor.estimate.update_many(scores, score_floats)
    elif monitor.estimate is not None:
        monitor.estimate.update_many(scores)
    if monitor.config.enabled("serving", "serving"):
        monitor.serving.update_many(latencies, start, end)


def _fold_drift(detector: NumericDrift | CategoricalDrift, values: Sequence[Any] | np.ndarray) -> None:
    if isinstance(detector, NumericDrift):
        detector.update_many(_as_numbers(values))
    else:
        detector.update_many(values)  # it skips None itself
