"""Group fairness of a classifier's decisions over a window of events."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

__all__ = ["FairnessWindow"]

_COUNTERS = ("n", "selected", "tp", "fp", "fn", "tn")


def _plain(value: Any) -> Any:
    # numpy scalars are not JSON-serialisable; .item() gives the Python equivalent.
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _spread(values: list[float]) -> float | None:
    return max(values) - min(values) if values else None


class FairnessWindow:
    """Demographic parity, equalized odds and disparate impact across groups.

    Parameters
    ----------
    positive_class
        The favourable decision. A prediction (or label) is positive when it ``==``
        ``positive_class``.

    Notes
    -----
    Selection rates use every event, labelled or not, because the decision is known as
    soon as it is made; true and false positive rates use only the labelled events.

    Per group: ``selection_rate = P(prediction = +)``, ``tpr = P(prediction = + | label
    = +)``, ``fpr = P(prediction = + | label = -)``. A group with no labelled positives
    has ``tpr = None`` and is left out of the TPR spread; likewise for FPR. Across
    groups, with the between-groups convention of fairlearn:

    * ``demographic_parity_difference = max(selection_rate) - min(selection_rate)``;
    * ``equalized_odds_difference = max(TPR spread, FPR spread)``;
    * ``disparate_impact_ratio = min(selection_rate) / max(selection_rate)``, fairlearn's
      ``demographic_parity_ratio`` (the "four-fifths rule" compares it to 0.8); ``None``
      when no group was ever selected.

    With a single group the differences are 0.0 and the ratio 1.0, as in fairlearn.
    Every metric is ``None`` when it has no group to be computed from. Group names are
    converted with ``str()`` so that the state survives JSON, whose keys are strings.

    Examples
    --------
    >>> from tripwire.detectors.fairness import FairnessWindow
    >>> w = FairnessWindow(positive_class=1)
    >>> events = [
    ...     ("a", 1, 1), ("a", 1, 0), ("a", 0, 0), ("a", 1, None),
    ...     ("b", 1, 1), ("b", 0, 1), ("b", 0, 0), ("b", 0, None),
    ... ]
    >>> for group, prediction, label in events:
    ...     w.update(group, prediction, label)
    >>> r = w.result()
    >>> r["groups"]["a"]
    {'n': 4, 'selection_rate': 0.75, 'tpr': 1.0, 'fpr': 0.5, 'n_labelled': 3}
    >>> r["groups"]["b"]
    {'n': 4, 'selection_rate': 0.25, 'tpr': 0.5, 'fpr': 0.0, 'n_labelled': 3}
    >>> r["demographic_parity_difference"], r["equalized_odds_difference"]
    (0.5, 0.5)
    >>> round(r["disparate_impact_ratio"], 6), r["min_group_n"]
    (0.333333, 4)

    References
    ----------
    [^1]: Hardt, M., Price, E., & Srebro, N. (2016). Equality of opportunity in
    supervised learning. Advances in Neural Information Processing Systems 29.
    [^2]: Feldman, M., Friedler, S. A., Moeller, J., Scheidegger, C., &
    Venkatasubramanian, S. (2015). Certifying and removing disparate impact. KDD '15,
    259-268.
    [^3]: fairlearn user guide, "Common fairness metrics":
    https://fairlearn.org/main/user_guide/assessment/common_fairness_metrics.html

    """

    def __init__(self, positive_class: Any) -> None:
        self.positive_class = _plain(positive_class)
        self.reset()

    def reset(self) -> None:
        """Forget every event seen so far."""
        self._groups: dict[str, dict[str, int]] = {}

    def update(self, group: str, prediction: Any, label: Any = None) -> None:
        """Add one decision.

        Parameters
        ----------
        group
            The value of the sensitive attribute for this event.
        prediction
            The decision taken.
        label
            The true outcome, or ``None`` when it is not known yet.

        """
        key = str(group)
        c = self._groups.get(key)
        if c is None:
            c = self._groups[key] = dict.fromkeys(_COUNTERS, 0)
        pred_pos = prediction == self.positive_class
        c["n"] += 1
        c["selected"] += bool(pred_pos)
        if label is None:
            return
        if label == self.positive_class:
            c["tp" if pred_pos else "fn"] += 1
        else:
            c["fp" if pred_pos else "tn"] += 1

    def update_many(self, groups: Sequence[Any], predictions: Sequence[Any], labels: Sequence[Any]) -> None:
        """:meth:`update` of each ``(group, prediction, label)`` in order where the group is not None,
        counted column-wise (groups first seen in the same order); predictions and labels are hashable."""
        if set(map(type, groups)) <= {str}:  # (the common case, each group its own key: counted in C)
            keyed = Counter(zip(groups, predictions, labels))
        else:
            keyed = Counter((str(g), p, y) for g, p, y in zip(groups, predictions, labels) if g is not None)
        positive = self.positive_class
        for (key, prediction, label), count in keyed.items():
            c = self._groups.get(key)
            if c is None:
                c = self._groups[key] = dict.fromkeys(_COUNTERS, 0)
            pred_pos = prediction == positive
            c["n"] += count
            c["selected"] += count * bool(pred_pos)
            if label is None:
                continue
            if label == positive:
                c["tp" if pred_pos else "fn"] += count
            else:
                c["fp" if pred_pos else "tn"] += count

    def result(self) -> dict[str, Any]:
        """Per-group rates and the between-group disparities.

        Returns
        -------
        dict
            ``{"groups": {g: {n, selection_rate, tpr, fpr, n_labelled}},
            "demographic_parity_difference", "equalized_odds_difference",
            "disparate_impact_ratio", "min_group_n"}``.

        """
        groups: dict[str, dict[str, Any]] = {}
        rates: list[float] = []
        tprs: list[float] = []
        fprs: list[float] = []
        for g, c in self._groups.items():
            n_pos = c["tp"] + c["fn"]
            n_neg = c["fp"] + c["tn"]
            rate = c["selected"] / c["n"]
            tpr = c["tp"] / n_pos if n_pos else None
            fpr = c["fp"] / n_neg if n_neg else None
            rates.append(rate)
            if tpr is not None:
                tprs.append(tpr)
            if fpr is not None:
                fprs.append(fpr)
            groups[g] = {
                "n": c["n"],
                "selection_rate": rate,
                "tpr": tpr,
                "fpr": fpr,
                "n_labelled": n_pos + n_neg,
            }
        odds = [s for s in (_spread(tprs), _spread(fprs)) if s is not None]
        top = max(rates) if rates else 0.0
        return {
            "groups": groups,
            "demographic_parity_difference": _spread(rates),
            "equalized_odds_difference": max(odds) if odds else None,
            "disparate_impact_ratio": min(rates) / top if top > 0 else None,
            "min_group_n": min(c["n"] for c in self._groups.values()) if self._groups else None,
        }

    def summary(self) -> dict[str, Any]:
        """The window's per-group counts as mergeable plain data."""
        return {g: dict(c) for g, c in self._groups.items()}

    def merge(self, summary: dict[str, Any]) -> None:
        """Add another window's :meth:`summary`: per-group counts add (groups in first-seen order)."""
        for group, counts in summary.items():
            into = self._groups.setdefault(str(group), dict.fromkeys(_COUNTERS, 0))
            for key in _COUNTERS:
                into[key] += int(counts[key])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {
            "positive_class": self.positive_class,
            "groups": {g: dict(c) for g, c in self._groups.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FairnessWindow:
        """Rebuild a window from :meth:`to_dict` output."""
        w = cls(d["positive_class"])
        w._groups = {
            str(g): {k: int(c[k]) for k in _COUNTERS} for g, c in d["groups"].items()
        }
        return w
