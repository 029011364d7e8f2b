"""Join late labels to their predictions by ``request_id`` within a time-to-live, in event time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(slots=True)
class Outcome:
    """A prediction with its label: what performance, fairness and concept-drift detectors consume."""

    request_id: str
    prediction: Any
    label: Any
    score: float | None
    attributes: dict[str, Any]
    predicted_at: float
    labelled_at: float

    @property
    def label_lag(self) -> float:
        return self.labelled_at - self.predicted_at


class LabelJoin:
    """Predictions wait ``ttl`` seconds of event time for a label; labels that come first wait too.

    Both sides are dicts in arrival order, so expiry pops from the front and stops at the first
    entry still alive: amortised O(1) per event on an event-time ordered stream.
    """

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._predictions: dict[str, tuple[float, Any, float | None, dict[str, Any]]] = {}
        self._labels: dict[str, tuple[float, Any]] = {}
        self.joined = 0
        self.expired_predictions = 0
        self.expired_labels = 0

    def add_prediction(self, request_id: str, ts: float, prediction: Any, score: float | None,
                       attributes: dict[str, Any]) -> Outcome | None:
        waiting = self._labels.pop(request_id, None)
        if waiting is not None:
            self.joined += 1
            return Outcome(request_id, prediction, waiting[1], score, attributes, ts, waiting[0])
        self._predictions[request_id] = (ts, prediction, score, attributes)
        return None

    def add_label(self, request_id: str, ts: float, label: Any) -> Outcome | None:
        waiting = self._predictions.pop(request_id, None)
        if waiting is not None:
            self.joined += 1
            predicted_at, prediction, score, attributes = waiting
            return Outcome(request_id, prediction, label, score, attributes, predicted_at, ts)
        self._labels[request_id] = (ts, label)
        return None

    def not_waiting(self, events: Sequence[Any], first: int, stop: int) -> int:
        """How many of ``events[first:stop]`` in a row have no label waiting for their ``request_id``."""
        labels = self._labels
        if labels:
            for position in range(first, stop):
                if events[position].request_id in labels:
                    return position - first
        return stop - first

    def add_predictions(self, events: Sequence[Any]) -> None:
        """:meth:`add_prediction` for predictions no label waits for (see :meth:`not_waiting`): they all wait."""
        self._predictions.update(
            (e.request_id, (e.ts, e.prediction, e.score, e.attributes)) for e in events)

    def expire(self, now: float) -> None:
        horizon = now - self.ttl
        self.expired_predictions += _drop_older(self._predictions, horizon)
        self.expired_labels += _drop_older(self._labels, horizon)

    @property
    def pending(self) -> int:
        return len(self._predictions) + len(self._labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ttl": self.ttl,
            "predictions": [[k, *v] for k, v in self._predictions.items()],
            "labels": [[k, *v] for k, v in self._labels.items()],
            "counts": [self.joined, self.expired_predictions, self.expired_labels],
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "LabelJoin":
        join = cls(state["ttl"])
        join._predictions = {k: (ts, p, s, a) for k, ts, p, s, a in state["predictions"]}
        join._labels = {k: (ts, label) for k, ts, label in state["labels"]}
        join.joined, join.expired_predictions, join.expired_labels = state["counts"]
        return join


def _drop_older(waiting: dict[str, tuple], horizon: float) -> int:
    dropped = 0
    while waiting:
        oldest = next(iter(waiting))
        if waiting[oldest][0] >= horizon:
            break
        del waiting[oldest]
        dropped += 1
    return dropped
