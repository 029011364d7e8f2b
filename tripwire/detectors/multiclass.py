"""Realised performance of a multi-class classifier over a window of labelled events."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from tripwire.detectors.performance import LOG_LOSS_EPS, _finite, _plain, _ratio, mann_whitney_auc

__all__ = ["MulticlassWindow", "multiclass_baseline"]

PER_CLASS_METRICS = ("precision", "recall", "f1")


class MulticlassWindow:
    """Accuracy, macro / weighted F1, per-class precision and recall, one-vs-rest ROC AUC and log loss.

    Parameters
    ----------
    classes
        The class set, in the order the probability vectors use. Predictions and labels must
        be members (the engine maps every spelling onto them first, see
        :class:`tripwire.classes.ClassSet`).

    Notes
    -----
    Definitions are scikit-learn's with ``labels=classes`` and ``zero_division=0``:
    ``accuracy`` is exact-match accuracy; per class ``c`` (one-vs-rest) ``precision:c``,
    ``recall:c`` and ``f1:c``; ``macro_precision``, ``macro_recall`` and ``macro_f1`` are
    their unweighted means over the class set, ``weighted_f1`` weighs ``f1:c`` by the
    number of labels of ``c`` in the window.

    ``scores`` is the vector of class probabilities. ``roc_auc`` is the one-vs-rest macro
    average of each class's exact Mann-Whitney AUC (``roc_auc_score(..., multi_class="ovr",
    average="macro")``); like scikit-learn it is ``None`` unless every class is present among
    the labels of the scored events and absent from some. ``log_loss`` is the mean of
    ``-log p(label)`` with ``p`` clipped to ``[eps, 1 - eps]``; both are over the events that
    came with scores. Every score vector is kept until :meth:`reset` (an exact AUC needs
    them), so memory is linear in the scored events of a window.

    Examples
    --------
    >>> from tripwire.detectors.multiclass import MulticlassWindow
    >>> w = MulticlassWindow(["a", "b", "c"])
    >>> events = [
    ...     ("a", "a", [0.7, 0.2, 0.1]),
    ...     ("b", "a", [0.3, 0.6, 0.1]),
    ...     ("b", "b", [0.2, 0.5, 0.3]),
    ...     ("c", "c", [0.1, 0.2, 0.7]),
    ...     ("c", "b", [0.1, 0.4, 0.5]),
    ...     ("a", "c", [0.5, 0.1, 0.4]),
    ... ]
    >>> for prediction, label, scores in events:
    ...     w.update(prediction, label, scores)
    >>> r = w.result()
    >>> r["n"], r["accuracy"], r["recall:a"], r["precision:c"]
    (6, 0.5, 0.5, 0.5)
    >>> round(r["macro_f1"], 6), round(r["weighted_f1"], 6)
    (0.5, 0.5)
    >>> round(r["roc_auc"], 6), round(r["log_loss"], 6)
    (0.833333, 0.740509)

    The state survives a JSON round trip:

    >>> import json
    >>> MulticlassWindow.from_dict(json.loads(json.dumps(w.to_dict()))).result() == r
    True

    References
    ----------
    [^1]: Sokolova, M., & Lapalme, G. (2009). A systematic analysis of performance measures
    for classification tasks. Information Processing & Management, 45(4), 427-437.
    [^2]: scikit-learn user guide, "Multiclass and multilabel classification" metrics:
    https://scikit-learn.org/stable/modules/model_evaluation.html#multiclass-and-multilabel-classification

    """

    def __init__(self, classes: Sequence[Any]) -> None:
        self.classes = [_plain(c) for c in classes]
        if len(self.classes) < 2:
            raise ValueError(f"a classifier needs at least two classes, got {self.classes!r}")
        self._position = {c: i for i, c in enumerate(self.classes)}
        if len(self._position) != len(self.classes):
            raise ValueError(f"the classes repeat: {self.classes!r}")
        self.reset()

    def reset(self) -> None:
        """Forget every event seen so far."""
        k = len(self.classes)
        self.n = 0
        # confusion[label][prediction]
        self._confusion = [[0] * k for _ in range(k)]
        self._scores: list[list[float]] = []
        self._score_labels: list[int] = []
        self._log_loss_sum = 0.0

    def _index(self, role: str, value: Any) -> int:
        position = self._position.get(value)
        if position is None or type(value) is not type(self.classes[position]):
            raise ValueError(f"{role} {value!r} is not one of the classes {self.classes!r}")
        return position

    def update(self, prediction: Any, label: Any, scores: Sequence[float] | None = None) -> None:
        """Add one labelled prediction.

        Parameters
        ----------
        prediction
            The predicted class.
        label
            The true class.
        scores
            The probability of each class, in the order of ``classes``, or ``None``.

        """
        predicted = self._index("prediction", prediction)
        actual = self._index("label", label)
        if scores is not None:
            if len(scores) != len(self.classes):
                raise ValueError(f"scores has {len(scores)} probabilities for {len(self.classes)} classes")
            probabilities = [_finite("score", p) for p in scores]
            if not all(0.0 <= p <= 1.0 for p in probabilities):
                raise ValueError(f"scores must be probabilities in [0, 1], got {list(scores)!r}")
            self._scores.append(probabilities)
            self._score_labels.append(actual)
            self._log_loss_sum -= math.log(min(max(probabilities[actual], LOG_LOSS_EPS), 1.0 - LOG_LOSS_EPS))
        self.n += 1
        self._confusion[actual][predicted] += 1

    def confusion(self) -> list[list[int]]:
        """The confusion matrix, ``[label][prediction]`` in the order of ``classes``."""
        return [row[:] for row in self._confusion]

    def _roc_auc(self) -> float | None:
        aucs = []
        for position in range(len(self.classes)):
            auc = mann_whitney_auc([row[position] for row in self._scores],
                                   [label == position for label in self._score_labels])
            if auc is None:
                return None
            aucs.append(auc)
        return sum(aucs) / len(aucs)

    def result(self) -> dict[str, Any]:
        """Metrics of the window; ``None`` where undefined (every one on an empty window).

        Returns
        -------
        dict
            ``{n, accuracy, macro_precision, macro_recall, macro_f1, weighted_f1, roc_auc,
            log_loss}`` and ``precision:<class>``, ``recall:<class>``, ``f1:<class>`` per class.

        """
        names = ["accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "roc_auc", "log_loss",
                 *(f"{metric}:{c}" for c in self.classes for metric in PER_CLASS_METRICS)]
        if self.n == 0:
            return {"n": 0, **dict.fromkeys(names)}
        k = len(self.classes)
        confusion = self._confusion
        correct = sum(confusion[i][i] for i in range(k))
        support = [sum(row) for row in confusion]
        predicted = [sum(confusion[i][j] for i in range(k)) for j in range(k)]
        precision = [_ratio(confusion[j][j], predicted[j]) for j in range(k)]
        recall = [_ratio(confusion[j][j], support[j]) for j in range(k)]
        f1 = [_ratio(2 * confusion[j][j], predicted[j] + support[j]) for j in range(k)]
        result: dict[str, Any] = {
            "n": self.n,
            "accuracy": correct / self.n,
            "macro_precision": sum(precision) / k,
            "macro_recall": sum(recall) / k,
            "macro_f1": sum(f1) / k,
            "weighted_f1": _ratio(sum(f * s for f, s in zip(f1, support)), sum(support)),
            "roc_auc": self._roc_auc(),
            "log_loss": self._log_loss_sum / len(self._scores) if self._scores else None,
        }
        for j, c in enumerate(self.classes):
            result[f"precision:{c}"] = precision[j]
            result[f"recall:{c}"] = recall[j]
            result[f"f1:{c}"] = f1[j]
        return result

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (includes every stored score vector)."""
        return {
            "classes": self.classes,
            "n": self.n,
            "confusion": self.confusion(),
            "scores": [row[:] for row in self._scores],
            "score_labels": list(self._score_labels),
            "log_loss_sum": self._log_loss_sum,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MulticlassWindow:
        """Rebuild a window from :meth:`to_dict` output."""
        w = cls(d["classes"])
        k = len(w.classes)
        confusion = [[int(x) for x in row] for row in d["confusion"]]
        if len(confusion) != k or any(len(row) != k for row in confusion):
            raise ValueError(f"the confusion matrix is not {k} x {k}")
        w.n = int(d["n"])
        w._confusion = confusion
        w._scores = [[float(p) for p in row] for row in d["scores"]]
        w._score_labels = [int(label) for label in d["score_labels"]]
        if len(w._scores) != len(w._score_labels):
            raise ValueError("scores and score_labels differ in length")
        w._log_loss_sum = float(d["log_loss_sum"])
        return w


def multiclass_baseline(classes: Sequence[Any], predictions: Iterable[Any], labels: Iterable[Any],
                        scores: Iterable[Sequence[float] | None] | None = None) -> dict[str, Any]:
    """Metrics of a whole dataset, identical to what the streaming window reports.

    >>> multiclass_baseline([0, 1, 2], [0, 1, 2, 2], [0, 1, 1, 2])["accuracy"]
    0.75
    """
    predictions, labels = list(predictions), list(labels)
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    rows: list[Sequence[float] | None] = [None] * len(labels) if scores is None else list(scores)
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} score rows but {len(labels)} labels")
    window = MulticlassWindow(classes)
    for prediction, label, row in zip(predictions, labels, rows):
        window.update(prediction, label, row)
    return window.result()
