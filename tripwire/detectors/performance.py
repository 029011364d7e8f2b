"""Realised model performance over a window of labelled events.

The windows are cumulative: they aggregate everything seen since construction or the
last :meth:`reset`, so the caller decides what a window is (tumbling windows by calling
``reset()`` at each boundary). :func:`baseline_metrics` feeds a whole dataset through the
same window so that the reference baseline and the live metrics can never disagree on a
definition.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import reduce
from itertools import repeat
from operator import eq, sub
from typing import Any, cast

import numpy as np

from tripwire.detectors.histogram import SCORE_BINS, binned_auc, score_bins

__all__ = ["RegressionWindow", "ClassificationWindow", "baseline_metrics", "mann_whitney_auc"]

# scikit-learn (>= 1.5) clips probabilities to the machine epsilon of the input dtype,
# which for float64 is this value; older releases used a fixed 1e-15.
LOG_LOSS_EPS: float = sys.float_info.epsilon


def _plain(value: Any) -> Any:
    # numpy scalars (np.int64, np.str_, np.bool_) are not JSON-serialisable; .item()
    # turns them into the equivalent Python object.
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _finite(name: str, value: float) -> float:
    value = float(value)
    # A single NaN or inf would poison the running sums for the rest of the window.
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _ratio(num: float, den: float) -> float:
    # zero_division=0 semantics, as scikit-learn's precision/recall/f1 with zero_division=0.
    return num / den if den else 0.0


def _sparse(counts: list[int]) -> dict[str, int]:
    return {str(i): c for i, c in enumerate(counts) if c}


def mann_whitney_auc(scores: list[float], is_positive: list[bool]) -> float | None:
    """ROC AUC as the exact Mann-Whitney statistic, tied scores counting one half.

    That is what scikit-learn's trapezoidal ROC curve gives; ``None`` unless both a
    positive and a negative are present.

    >>> mann_whitney_auc([0.9, 0.4, 0.6, 0.1, 0.4], [True, True, False, False, False])
    0.75
    """
    n_scored = len(scores)
    n_pos = sum(is_positive)
    n_neg = n_scored - n_pos
    if not (n_pos and n_neg):
        return None
    # Twice the Mann-Whitney U, kept in integers so the only rounding is the final division: per
    # run of tied scores (in ascending order), its positives times (2 * the negatives below it +
    # its own negatives).
    values = np.fromiter(scores, dtype=float, count=n_scored)
    order = np.argsort(values, kind="stable")
    ranked, is_pos = values[order], np.fromiter(is_positive, dtype=bool, count=n_scored)[order]
    starts = np.flatnonzero(np.concatenate(([True], ranked[1:] != ranked[:-1])))
    sizes = np.diff(np.append(starts, n_scored))
    pos_here = np.add.reduceat(is_pos.astype(np.int64), starts)
    neg_here = sizes - pos_here
    neg_below = np.cumsum(neg_here) - neg_here
    twice_u = int((pos_here * (2 * neg_below + neg_here)).sum())
    return twice_u / (2 * n_pos * n_neg)


class RegressionWindow:
    """Mean absolute error, root mean squared error and MAPE of a regression model.

    Notes
    -----
    MAPE is reported as a fraction (0.1 means 10 %). Events whose label is exactly 0 have
    an undefined percentage error and are left out of MAPE only; they still count in
    ``n``, MAE and RMSE. MAPE is ``None`` when every label in the window is 0.

    Examples
    --------
    >>> from tripwire.detectors.performance import RegressionWindow
    >>> w = RegressionWindow()
    >>> for prediction, label in [(2.5, 3.0), (0.0, -0.5), (2.0, 2.0), (8.0, 7.0)]:
    ...     w.update(prediction, label)
    >>> r = w.result()
    >>> r["n"], r["mae"], round(r["rmse"], 6), round(r["mape"], 6)
    (4, 0.5, 0.612372, 0.327381)

    State survives a JSON round trip:

    >>> import json
    >>> RegressionWindow.from_dict(json.loads(json.dumps(w.to_dict()))).result() == r
    True

    References
    ----------
    [^1]: Hyndman, R. J., & Koehler, A. B. (2006). Another look at measures of forecast
    accuracy. International Journal of Forecasting, 22(4), 679-688.
    [^2]: scikit-learn user guide, "Regression metrics":
    https://scikit-learn.org/stable/modules/model_evaluation.html#regression-metrics

    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every event seen so far."""
        self.n = 0
        self._sum_abs = 0.0
        self._sum_sq = 0.0
        self._n_pct = 0
        self._sum_pct = 0.0

    def update(self, prediction: float, label: float) -> None:
        """Add one labelled prediction.

        Parameters
        ----------
        prediction
            The model output.
        label
            The ground truth.

        """
        prediction = _finite("prediction", prediction)
        label = _finite("label", label)
        err = abs(prediction - label)
        self.n += 1
        self._sum_abs += err
        self._sum_sq += err * err
        if label != 0.0:
            self._n_pct += 1
            self._sum_pct += err / abs(label)

    def result(self) -> dict[str, Any]:
        """Metrics of the window: ``{n, mae, rmse, mape}``; ``None`` where undefined."""
        if self.n == 0:
            return {"n": 0, "mae": None, "rmse": None, "mape": None}
        return {
            "n": self.n,
            "mae": self._sum_abs / self.n,
            "rmse": math.sqrt(self._sum_sq / self.n),
            "mape": self._sum_pct / self._n_pct if self._n_pct else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {
            "n": self.n,
            "sum_abs": self._sum_abs,
            "sum_sq": self._sum_sq,
            "n_pct": self._n_pct,
            "sum_pct": self._sum_pct,
        }

    def summary(self) -> dict[str, Any]:
        """The window's error sums as mergeable plain data."""
        return self.to_dict()

    def merge(self, summary: dict[str, Any]) -> None:
        """Add another window's :meth:`summary` (sums add in the order merged)."""
        self.n += int(summary["n"])
        self._sum_abs += float(summary["sum_abs"])
        self._sum_sq += float(summary["sum_sq"])
        self._n_pct += int(summary["n_pct"])
        self._sum_pct += float(summary["sum_pct"])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegressionWindow:
        """Rebuild a window from :meth:`to_dict` output."""
        w = cls()
        w.n = int(d["n"])
        w._sum_abs = float(d["sum_abs"])
        w._sum_sq = float(d["sum_sq"])
        w._n_pct = int(d["n_pct"])
        w._sum_pct = float(d["sum_pct"])
        return w


class ClassificationWindow:
    """Accuracy, precision, recall, F1, ROC AUC and log loss of a classifier.

    Parameters
    ----------
    positive_class
        The label value treated as positive. Labels and predictions are compared to it
        (and to each other) with ``==``, so strings, ints and bools all work as long as
        labels and predictions use the same encoding.

    Notes
    -----
    Accuracy is exact-match accuracy over all events (so it is also right for
    multiclass models). Precision, recall and F1 are binary, for ``positive_class``
    against the rest, and are 0.0 when their denominator is 0 (scikit-learn's
    ``zero_division=0``).

    ``score`` is the model's probability of ``positive_class``. ROC AUC and log loss are
    computed over the events that came with a score; ROC AUC is ``None`` unless those
    events hold both a positive and a negative label. ROC AUC is the exact Mann-Whitney
    statistic, tied scores counting one half, which is what scikit-learn's trapezoidal
    ROC curve gives. Log loss clips probabilities to ``[eps, 1 - eps]`` with ``eps`` the
    float64 machine epsilon, as scikit-learn does.

    All scores are kept until :meth:`reset` because an exact AUC cannot be had from a
    fixed-size summary; memory is therefore linear in the number of scored events.

    Examples
    --------
    >>> from tripwire.detectors.performance import ClassificationWindow
    >>> w = ClassificationWindow(positive_class="fraud")
    >>> events = [
    ...     ("fraud", "fraud", 0.9),
    ...     ("ok", "fraud", 0.4),
    ...     ("fraud", "ok", 0.6),
    ...     ("ok", "ok", 0.1),
    ...     ("ok", "ok", 0.4),
    ... ]
    >>> for prediction, label, score in events:
    ...     w.update(prediction, label, score)
    >>> r = w.result()
    >>> r["n"], r["accuracy"], r["precision"], r["recall"], r["f1"]
    (5, 0.6, 0.5, 0.5, 0.5)
    >>> round(r["roc_auc"], 6), round(r["log_loss"], 6)
    (0.75, 0.510826)

    References
    ----------
    [^1]: Fawcett, T. (2006). An introduction to ROC analysis. Pattern Recognition
    Letters, 27(8), 861-874.
    [^2]: Hand, D. J., & Till, R. J. (2001). A simple generalisation of the area under
    the ROC curve for multiple class classification problems. Machine Learning, 45(2),
    171-186.
    [^3]: scikit-learn user guide, "Classification metrics":
    https://scikit-learn.org/stable/modules/model_evaluation.html#classification-metrics

    """

    def __init__(self, positive_class: Any) -> None:
        self.positive_class = _plain(positive_class)
        self.reset()

    def reset(self) -> None:
        """Forget every event seen so far."""
        self.n = 0
        self._correct = 0
        self._tp = 0
        self._fp = 0
        self._fn = 0
        self._scores: list[float] = []
        self._score_is_pos: list[bool] = []
        self._log_loss_sum = 0.0
        self._auc_cache: tuple[int, float | None] | None = None
        # Merged windows (see merge) hold their scores binned: positives' and negatives' counts per bin.
        self._binned: tuple[list[int], list[int]] | None = None
        self._binned_n = 0

    def update(self, prediction: Any, label: Any, score: float | None = None) -> None:
        """Add one labelled prediction.

        Parameters
        ----------
        prediction
            The predicted class.
        label
            The true class.
        score
            Predicted probability of ``positive_class``, in [0, 1], or ``None`` (NaN is
            read as ``None``).

        """
        if score is not None and math.isnan(score):
            # pandas spells a missing value NaN; treat it like an absent score.
            score = None
        if score is not None:
            score = _finite("score", score)
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"score must be a probability in [0, 1], got {score!r}")
        pred_pos = bool(prediction == self.positive_class)
        label_pos = bool(label == self.positive_class)
        self.n += 1
        self._correct += bool(prediction == label)
        self._tp += pred_pos and label_pos
        self._fp += pred_pos and not label_pos
        self._fn += label_pos and not pred_pos
        if score is not None:
            self._scores.append(score)
            self._score_is_pos.append(label_pos)
            # Clip the probability of the observed class (not p itself) so the loss
            # matches scikit-learn bit for bit near 0 and 1.
            q = score if label_pos else 1.0 - score
            self._log_loss_sum -= math.log(min(max(q, LOG_LOSS_EPS), 1.0 - LOG_LOSS_EPS))

    def update_many(self, predictions: Sequence[Any], labels: Sequence[Any], scores: Sequence[float | None]) -> None:
        """:meth:`update` of each ``(prediction, label, score)`` in order, counted column-wise.

        The predictions and labels are hashable class values; each score is ``None`` or a float
        in [0, 1] (checked first: a ValueError changes nothing).
        """
        positive = self.positive_class
        label_is_pos = list(map(bool, map(eq, labels, repeat(positive))))
        if None in scores:  # (a score may be missing: the window keeps the others)
            kept_pairs = [(score, pos) for score, pos in zip(scores, label_is_pos) if score is not None]
            kept = [score for score, _ in kept_pairs]
            kept_is_pos = [pos for _, pos in kept_pairs]
        else:
            kept, kept_is_pos = cast("list[float]", list(scores)), label_is_pos
        if kept and not (set(map(type, kept)) == {float} and not any(map(math.isnan, kept))
                         and min(kept) >= 0.0 and max(kept) <= 1.0):
            bad = next(s for s in kept if type(s) is not float or not 0.0 <= s <= 1.0)
            raise ValueError(f"score must be a probability in [0, 1], got {bad!r}")
        # The probability of the observed class, clipped where it must be (as update does), its
        # logs subtracted in order from the running sum: update's sum to the last bit.
        observed = [score if pos else 1.0 - score for score, pos in zip(kept, kept_is_pos)]
        low, high = LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS
        if observed and (min(observed) < low or max(observed) > high):
            observed = [min(max(q, low), high) for q in observed]
        log_loss_sum = reduce(sub, map(math.log, observed), self._log_loss_sum)
        # Counts add up per distinct (prediction, label) pair: a binary window has at most a few.
        for (prediction, label), count in Counter(zip(predictions, labels)).items():
            pred_pos = bool(prediction == positive)
            label_pos = bool(label == positive)
            self._correct += count * bool(prediction == label)
            self._tp += count * (pred_pos and label_pos)
            self._fp += count * (pred_pos and not label_pos)
            self._fn += count * (label_pos and not pred_pos)
        self.n += len(predictions)
        self._scores += kept
        self._score_is_pos += kept_is_pos
        self._log_loss_sum = log_loss_sum

    def confusion(self) -> dict[str, int]:
        """Counts of the binary confusion matrix for ``positive_class``."""
        tn = self.n - self._tp - self._fp - self._fn
        return {"tp": self._tp, "fp": self._fp, "fn": self._fn, "tn": tn}

    def summary(self) -> dict[str, Any]:
        """The window as mergeable plain data: confusion counts, log-loss sum, scores binned per label.

        ROC AUC of merged windows is computed on the bins (see :func:`binned_auc`).
        """
        positives, negatives = score_bins(self._scores, self._score_is_pos)
        return {"n": self.n, "correct": self._correct, "tp": self._tp, "fp": self._fp, "fn": self._fn,
                "log_loss_sum": self._log_loss_sum, "n_scored": len(self._scores),
                "score_bins": [_sparse(positives), _sparse(negatives)]}

    def merge(self, summary: dict[str, Any]) -> None:
        """Add another window's :meth:`summary`; from then on this window's ROC AUC is the binned one."""
        if self._scores:
            raise ValueError("a window holding raw scores cannot take merged ones")
        self.n += int(summary["n"])
        self._correct += int(summary["correct"])
        self._tp += int(summary["tp"])
        self._fp += int(summary["fp"])
        self._fn += int(summary["fn"])
        self._log_loss_sum += float(summary["log_loss_sum"])
        self._binned_n += int(summary["n_scored"])
        if self._binned is None:
            self._binned = ([0] * SCORE_BINS, [0] * SCORE_BINS)
        for into, sparse in zip(self._binned, summary["score_bins"]):
            for index, count in sparse.items():
                into[int(index)] += int(count)

    def _roc_auc(self) -> float | None:
        if self._binned is not None:
            return binned_auc(*self._binned)
        n_scored = len(self._scores)
        # result() may be polled far more often than events arrive; sorting is O(n log n).
        if self._auc_cache is not None and self._auc_cache[0] == n_scored:
            return self._auc_cache[1]
        auc = mann_whitney_auc(self._scores, self._score_is_pos)
        self._auc_cache = (n_scored, auc)
        return auc

    def result(self) -> dict[str, Any]:
        """Metrics of the window; ``None`` where undefined.

        Returns
        -------
        dict
            ``{n, accuracy, precision, recall, f1, roc_auc, log_loss}``.

        """
        if self.n == 0:
            return {
                "n": 0,
                "accuracy": None,
                "precision": None,
                "recall": None,
                "f1": None,
                "roc_auc": None,
                "log_loss": None,
            }
        tp, fp, fn = self._tp, self._fp, self._fn
        return {
            "n": self.n,
            "accuracy": self._correct / self.n,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "roc_auc": self._roc_auc(),
            "log_loss": self._log_loss_sum / n_scored if (n_scored := len(self._scores) + self._binned_n) else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (includes every stored score)."""
        return {
            "positive_class": self.positive_class,
            "n": self.n,
            "correct": self._correct,
            "tp": self._tp,
            "fp": self._fp,
            "fn": self._fn,
            "scores": list(self._scores),
            "score_is_pos": list(self._score_is_pos),
            "log_loss_sum": self._log_loss_sum,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassificationWindow:
        """Rebuild a window from :meth:`to_dict` output."""
        w = cls(d["positive_class"])
        w.n = int(d["n"])
        w._correct = int(d["correct"])
        w._tp = int(d["tp"])
        w._fp = int(d["fp"])
        w._fn = int(d["fn"])
        w._scores = [float(s) for s in d["scores"]]
        w._score_is_pos = [bool(b) for b in d["score_is_pos"]]
        if len(w._scores) != len(w._score_is_pos):
            raise ValueError("scores and score_is_pos differ in length")
        w._log_loss_sum = float(d["log_loss_sum"])
        return w


def baseline_metrics(
    task: str,
    predictions: Iterable[Any],
    labels: Iterable[Any],
    scores: Iterable[float | None] | None = None,
    positive_class: Any = None,
) -> dict[str, Any]:
    """Metrics of a whole dataset, identical to what the streaming window would report.

    Parameters
    ----------
    task
        ``"regression"`` or ``"classification"``.
    predictions
        Model outputs, one per row.
    labels
        Ground truth, one per row.
    scores
        Classification only: probability of ``positive_class`` per row (``None`` entries
        allowed), or ``None`` for no scores.
    positive_class
        Classification only, required: the label value treated as positive.

    Returns
    -------
    dict
        :meth:`RegressionWindow.result` or :meth:`ClassificationWindow.result`.

    Examples
    --------
    >>> from tripwire.detectors.performance import baseline_metrics
    >>> baseline_metrics("regression", [1.0, 2.0], [1.0, 4.0])
    {'n': 2, 'mae': 1.0, 'rmse': 1.4142135623730951, 'mape': 0.25}
    >>> baseline_metrics("classification", [1, 0, 1], [1, 0, 0], positive_class=1)["precision"]
    0.5

    """
    predictions = list(predictions)
    labels = list(labels)
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    if task == "regression":
        if scores is not None:
            raise ValueError("scores are only meaningful for classification")
        reg = RegressionWindow()
        for p, y in zip(predictions, labels):
            reg.update(p, y)
        return reg.result()
    if task == "classification":
        if positive_class is None:
            raise ValueError("positive_class is required for classification")
        score_list: list[float | None] = [None] * len(labels) if scores is None else list(scores)
        if len(score_list) != len(labels):
            raise ValueError(f"{len(score_list)} scores but {len(labels)} labels")
        clf = ClassificationWindow(positive_class)
        for p, y, s in zip(predictions, labels, score_list):
            clf.update(p, y, s)
        return clf.result()
    raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
