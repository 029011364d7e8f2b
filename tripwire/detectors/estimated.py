"""Label-free performance estimation from calibrated scores (CBPE)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tripwire.detectors.plain import plain_floats

__all__ = ["ConfidenceEstimate", "MulticlassConfidenceEstimate", "score_calibration"]


def _plain(value: Any) -> Any:
    # numpy scalars are not JSON-serialisable; .item() gives the Python equivalent.
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _running_sum(start: float, values: np.ndarray) -> float:
    """``start + values[0] + values[1] + ...`` added left to right, as a loop of ``+=`` adds them."""
    if values.size == 0:
        return start
    return float(np.add.accumulate(np.concatenate(([start], values)))[-1])


def _ratio(num: float, den: float) -> float:
    # Same zero_division=0 convention as the realised metrics, so the two are comparable.
    return num / den if den else 0.0


class ConfidenceEstimate:
    """Confidence-based performance estimation for a binary classifier.

    If the model's score ``p`` is a calibrated probability of the positive class, an
    event predicted positive (``p >= threshold``) is a true positive with probability
    ``p`` and a false positive with probability ``1 - p``; an event predicted negative
    is a false negative with probability ``p`` and a true negative with probability
    ``1 - p``. Summing these probabilities gives the expected confusion matrix, from
    which accuracy, precision, recall and F1 are estimated before any label arrives.

    Parameters
    ----------
    positive_class
        The class whose probability the score is. Only carried along so that the
        estimates can be labelled and compared with the realised metrics.
    threshold
        The decision threshold the model applies to its score.
    calibration
        Optional histogram-binning calibration measured on labelled reference data,
        ``{"edges": [...], "rates": [...]}``: the observed positive rate of the scores in
        each bin (``bin = bisect_right(edges, score)``). With it the expected confusion
        uses ``rates[bin]`` instead of the raw score, so scores that are over- or
        under-confident still give an honest estimate. The predicted class still comes
        from the raw score and the threshold, as the model decides.

    Notes
    -----
    The estimates are only as good as the calibration of the scores: they assume
    ``P(label = + | score = p) = p`` on the monitored data, i.e. no concept drift, only
    covariate shift. Precision, recall and F1 are 0.0 when their expected denominator is
    0; every estimate is ``None`` on an empty window. The predicted class is derived
    from the score, so the estimates refer to the model's thresholded decision.

    Examples
    --------
    >>> from tripwire.detectors.estimated import ConfidenceEstimate
    >>> est = ConfidenceEstimate(positive_class=1)
    >>> for p in [0.9, 0.8, 0.3, 0.1]:
    ...     est.update(p)
    >>> {k: round(v, 6) for k, v in est.expected_confusion().items()}
    {'tp': 1.7, 'fp': 0.3, 'fn': 0.4, 'tn': 1.6}
    >>> r = est.result()
    >>> r["n"], round(r["estimated_accuracy"], 6), round(r["estimated_precision"], 6)
    (4, 0.825, 0.85)
    >>> round(r["estimated_recall"], 6), round(r["estimated_f1"], 6)
    (0.809524, 0.829268)

    References
    ----------
    [^1]: NannyML documentation, "Performance Estimation: Confidence-based Performance
    Estimation (CBPE)":
    https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html

    [^2]: Zadrozny, B., & Elkan, C. (2001). Obtaining calibrated probability estimates
    from decision trees and naive Bayesian classifiers. ICML (histogram binning).

    """

    def __init__(self, positive_class: Any, threshold: float = 0.5,
                 calibration: dict[str, list[float]] | None = None) -> None:
        threshold = float(threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        if calibration is not None and len(calibration["rates"]) != len(calibration["edges"]) + 1:
            raise ValueError("calibration needs one rate per bin: len(rates) == len(edges) + 1")
        self.positive_class = _plain(positive_class)
        self.threshold = threshold
        self.calibration = calibration
        if calibration is not None:
            self._edges = np.asarray(calibration["edges"], dtype=np.float64)
            self._rates = np.asarray(calibration["rates"], dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Forget every event seen so far."""
        self.n = 0
        self._tp = 0.0
        self._fp = 0.0
        self._fn = 0.0
        self._tn = 0.0

    def update(self, score: float) -> None:
        """Add one unlabelled prediction.

        Parameters
        ----------
        score
            Calibrated probability of ``positive_class``, in [0, 1].

        """
        p = float(score)
        # NaN fails both comparisons, so this rejects it as well.
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"score must be a probability in [0, 1], got {score!r}")
        self.n += 1
        predicted_positive = p >= self.threshold
        if self.calibration is not None:
            p = self.calibration["rates"][bisect_right(self.calibration["edges"], p)]
        if predicted_positive:
            self._tp += p
            self._fp += 1.0 - p
        else:
            self._fn += p
            self._tn += 1.0 - p

    def update_many(self, scores: Iterable[float], floats: np.ndarray | None = None) -> None:
        """:meth:`update` for each score in order (the same sums, added in the same order), faster.

        ``floats``, optional, is ``scores`` as float64 when the caller knows every score to be a
        plain ``int`` or ``float`` (it saves converting them again).
        """
        if floats is None and isinstance(scores, (list, tuple)):
            floats = plain_floats(scores)
        if floats is not None and ((floats >= 0.0) & (floats <= 1.0)).all():
            self._add_probabilities(floats)
            return
        threshold, calibration = self.threshold, self.calibration
        rates: list[float] = calibration["rates"] if calibration is not None else []
        edges: list[float] = calibration["edges"] if calibration is not None else []
        n, tp, fp, fn, tn = self.n, self._tp, self._fp, self._fn, self._tn
        try:
            for score in scores:
                p = float(score)
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"score must be a probability in [0, 1], got {score!r}")
                n += 1
                predicted_positive = p >= threshold
                if calibration is not None:
                    p = rates[bisect_right(edges, p)]
                if predicted_positive:
                    tp += p
                    fp += 1.0 - p
                else:
                    fn += p
                    tn += 1.0 - p
        finally:  # the scores before a bad one stay counted, as with update()
            self.n, self._tp, self._fp, self._fn, self._tn = n, tp, fp, fn, tn

    def _add_probabilities(self, p: np.ndarray) -> None:
        """The loop of :meth:`update_many` on valid scores, in numpy: the sums are running sums
        (``np.add.accumulate`` adds left to right, as the loop does), so they are the same floats."""
        positive = p >= self.threshold
        if self.calibration is not None:
            p = self._rates[np.searchsorted(self._edges, p, side="right")]  # bisect_right per score
        self.n += int(p.size)
        on, off = p[positive], p[~positive]
        self._tp = _running_sum(self._tp, on)
        self._fp = _running_sum(self._fp, 1.0 - on)
        self._fn = _running_sum(self._fn, off)
        self._tn = _running_sum(self._tn, 1.0 - off)

    def expected_confusion(self) -> dict[str, float]:
        """The expected confusion matrix ``{tp, fp, fn, tn}`` of the window."""
        return {"tp": self._tp, "fp": self._fp, "fn": self._fn, "tn": self._tn}

    def result(self) -> dict[str, Any]:
        """Estimated metrics of the window; ``None`` where undefined.

        Returns
        -------
        dict
            ``{n, estimated_accuracy, estimated_precision, estimated_recall,
            estimated_f1}``.

        """
        if self.n == 0:
            return {
                "n": 0,
                "estimated_accuracy": None,
                "estimated_precision": None,
                "estimated_recall": None,
                "estimated_f1": None,
            }
        tp, fp, fn, tn = self._tp, self._fp, self._fn, self._tn
        return {
            "n": self.n,
            "estimated_accuracy": (tp + tn) / self.n,
            "estimated_precision": _ratio(tp, tp + fp),
            "estimated_recall": _ratio(tp, tp + fn),
            "estimated_f1": _ratio(2.0 * tp, 2.0 * tp + fp + fn),
        }

    def summary(self) -> dict[str, Any]:
        """The window's expected confusion sums as mergeable plain data."""
        return {"n": self.n, "tp": self._tp, "fp": self._fp, "fn": self._fn, "tn": self._tn}

    def merge(self, summary: dict[str, Any]) -> None:
        """Add another window's :meth:`summary` (sums add in the order merged)."""
        self.n += int(summary["n"])
        self._tp += float(summary["tp"])
        self._fp += float(summary["fp"])
        self._fn += float(summary["fn"])
        self._tn += float(summary["tn"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {
            "positive_class": self.positive_class,
            "threshold": self.threshold,
            "calibration": self.calibration,
            "n": self.n,
            "tp": self._tp,
            "fp": self._fp,
            "fn": self._fn,
            "tn": self._tn,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConfidenceEstimate:
        """Rebuild an estimator from :meth:`to_dict` output."""
        est = cls(d["positive_class"], d["threshold"], d.get("calibration"))
        est.n = int(d["n"])
        est._tp = float(d["tp"])
        est._fp = float(d["fp"])
        est._fn = float(d["fn"])
        est._tn = float(d["tn"])
        return est


class MulticlassConfidenceEstimate:
    """Confidence-based performance estimation for a multi-class classifier (one-vs-rest).

    Each event brings the model's probability of every class. The predicted class is the
    most probable one, as the model decides. With a calibration, each class's probability
    is first mapped through that class's one-vs-rest histogram calibration (the observed
    rate of the class among reference scores in the bin, see :func:`score_calibration`),
    and the calibrated vector is renormalised to sum to 1, as NannyML's multi-class CBPE
    does. Then per class ``c``, one-vs-rest, the event adds its calibrated probability
    ``q_c`` to the expected true positives of ``c`` when ``c`` is predicted (``1 - q_c`` to
    its false positives), and ``q_c`` to its false negatives otherwise.

    ``estimated_accuracy`` is the expected share of events whose predicted class is right
    (the mean calibrated probability of the predicted class); ``estimated_macro_precision``,
    ``estimated_macro_recall`` and ``estimated_macro_f1`` average the per-class estimates
    over the class set (0.0 for a class whose expected denominator is 0).

    Parameters
    ----------
    classes
        The class set, in the order of the probability vectors.
    calibrations
        Optional, one ``{"edges": [...], "rates": [...]}`` per class, in class order.

    Notes
    -----
    As for the binary estimator, the estimate assumes the calibration measured on the
    reference still holds: covariate shift is seen, concept drift is not.

    Examples
    --------
    >>> from tripwire.detectors.estimated import MulticlassConfidenceEstimate
    >>> est = MulticlassConfidenceEstimate(["a", "b", "c"])
    >>> for probabilities in ([0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]):
    ...     est.update(probabilities)
    >>> r = est.result()
    >>> r["n"], round(r["estimated_accuracy"], 6), round(r["estimated_macro_f1"], 6)
    (4, 0.625, 0.607407)

    References
    ----------
    [^1]: NannyML documentation, "Estimation of Performance of the Monitored Model",
    multiclass classification:
    https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html

    """

    def __init__(self, classes: Sequence[Any], calibrations: Sequence[dict[str, list[float]]] | None = None) -> None:
        self.classes = [_plain(c) for c in classes]
        if calibrations is not None:
            if len(calibrations) != len(self.classes):
                raise ValueError(f"{len(calibrations)} calibrations for {len(self.classes)} classes")
            for calibration in calibrations:
                if len(calibration["rates"]) != len(calibration["edges"]) + 1:
                    raise ValueError("calibration needs one rate per bin: len(rates) == len(edges) + 1")
        self.calibrations = list(calibrations) if calibrations is not None else None
        self.reset()

    def reset(self) -> None:
        """Forget every event seen so far."""
        k = len(self.classes)
        self.n = 0
        self._tp = [0.0] * k
        self._fp = [0.0] * k
        self._fn = [0.0] * k

    def update(self, probabilities: Sequence[float]) -> None:
        """Add one unlabelled prediction: the probability of each class, in class order."""
        if len(probabilities) != len(self.classes):
            raise ValueError(f"{len(probabilities)} probabilities for {len(self.classes)} classes")
        p = [float(value) for value in probabilities]
        if not all(0.0 <= value <= 1.0 for value in p):
            raise ValueError(f"probabilities must be in [0, 1], got {list(probabilities)!r}")
        predicted = max(range(len(p)), key=p.__getitem__)
        if self.calibrations is not None:
            calibrated = [c["rates"][bisect_right(c["edges"], value)] for c, value in zip(self.calibrations, p)]
            total = sum(calibrated)
            p = [value / total for value in calibrated] if total > 0 else p
        self.n += 1
        for position, q in enumerate(p):
            if position == predicted:
                self._tp[position] += q
                self._fp[position] += 1.0 - q
            else:
                self._fn[position] += q

    def update_many(self, predictions: Iterable[Sequence[float]]) -> None:
        """:meth:`update` for each prediction's probabilities, in order."""
        for probabilities in predictions:
            self.update(probabilities)

    def result(self) -> dict[str, Any]:
        """``{n, estimated_accuracy, estimated_macro_precision, estimated_macro_recall, estimated_macro_f1}``."""
        names = ("estimated_accuracy", "estimated_macro_precision", "estimated_macro_recall", "estimated_macro_f1")
        if self.n == 0:
            return {"n": 0, **dict.fromkeys(names)}
        k = len(self.classes)
        tp, fp, fn = self._tp, self._fp, self._fn
        return {
            "n": self.n,
            "estimated_accuracy": sum(tp) / self.n,
            "estimated_macro_precision": sum(_ratio(tp[c], tp[c] + fp[c]) for c in range(k)) / k,
            "estimated_macro_recall": sum(_ratio(tp[c], tp[c] + fn[c]) for c in range(k)) / k,
            "estimated_macro_f1": sum(_ratio(2.0 * tp[c], 2.0 * tp[c] + fp[c] + fn[c]) for c in range(k)) / k,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {"classes": self.classes, "calibrations": self.calibrations, "n": self.n,
                "tp": list(self._tp), "fp": list(self._fp), "fn": list(self._fn)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MulticlassConfidenceEstimate:
        """Rebuild an estimator from :meth:`to_dict` output."""
        est = cls(d["classes"], d.get("calibrations"))
        est.n = int(d["n"])
        est._tp, est._fp, est._fn = ([float(x) for x in d[key]] for key in ("tp", "fp", "fn"))
        return est


def score_calibration(scores: Any, labels: Any, positive_class: Any, bins: int = 20) -> dict[str, list[float]]:
    """Histogram-binning calibration of scores against labels, for :class:`ConfidenceEstimate`.

    Bins are score quantiles (ties merge bins); each bin's rate is the share of positive
    labels among its scores, shrunk towards the bin's mean score by one pseudo-observation
    so that a small bin cannot claim certainty.

    >>> cal = score_calibration([0.1, 0.2, 0.8, 0.9], [0, 1, 1, 1], positive_class=1, bins=2)
    >>> cal["edges"], [round(r, 3) for r in cal["rates"]]
    ([0.5], [0.383, 0.95])
    """
    s = np.asarray(scores, dtype=float)
    y = np.array([label == positive_class for label in labels], dtype=float)
    finite = np.isfinite(s)
    s, y = s[finite], y[finite]
    edges = np.unique(np.quantile(s, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = edges[edges > s.min()]
    index = np.searchsorted(edges, s, side="right")
    count = np.bincount(index, minlength=len(edges) + 1)
    positives = np.bincount(index, weights=y, minlength=len(edges) + 1)
    mean_score = np.bincount(index, weights=s, minlength=len(edges) + 1) / np.maximum(count, 1)
    rates = (positives + mean_score) / (count + 1)
    return {"edges": edges.tolist(), "rates": rates.tolist()}
