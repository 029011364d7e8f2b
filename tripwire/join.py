"""Join late labels to their predictions by ``request_id`` within a time-to-live, in event time.

The join holds at most ``max_pending`` predictions waiting for a label (and as many labels
waiting for a prediction): past that the oldest is evicted and counted, so memory stays bounded
however many predictions are never labelled. A ``request_id`` is one request: a second prediction
while one waits, a second label while one waits, or either for a request already joined (kept
for the TTL) is refused as a duplicate, so a reused id never joins the wrong label.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from itertools import islice, repeat
from operator import attrgetter, itemgetter
from typing import Any, Callable, Iterator, Sequence

from tripwire.events import Score

SHORT_RUN = 8  # runs of predictions up to this long are checked one by one in add_waiting: fewer calls
# What a prediction waits in the join with: (ts, prediction, score, attributes), as one tuple made in C.
_JOIN_FIELDS = attrgetter("ts", "prediction", "score", "attributes")
_REQUEST_ID = attrgetter("request_id")


@dataclass(slots=True)
class Outcome:
    """A prediction with its label: what performance, fairness and concept-drift detectors consume."""

    request_id: str
    prediction: Any
    label: Any
    score: Score | None
    attributes: dict[str, Any]
    predicted_at: float
    labelled_at: float

    @property
    def label_lag(self) -> float:
        return self.labelled_at - self.predicted_at


class LabelJoin:
    """Predictions wait ``ttl`` seconds of event time for a label; labels that come first wait too.

    Both sides are dicts in arrival order, so expiry pops from the front and stops at the first
    entry still alive: amortised O(1) per event on an event-time ordered stream; eviction pops the
    front too.

    >>> join = LabelJoin(ttl_seconds=60, max_pending=2)
    >>> [join.add_prediction(r, 0.0, 1, None, {}) for r in ("a", "b", "c")]  # "a" is evicted
    [None, None, None]
    >>> join.evicted_predictions, join.add_label("a", 5.0, 1), join.add_label("c", 5.0, 0).label
    (1, None, 0)
    >>> join.prediction_refusal("c")
    "duplicate request_id 'c': it was already predicted and labelled"
    """

    def __init__(self, ttl_seconds: float, max_pending: int) -> None:
        self.ttl = ttl_seconds
        self.max_pending = max_pending
        # Ordered dicts, not dicts: the oldest entry leaves from the front once per event when the
        # bound is reached, and a plain dict finds its front by scanning the slots deleted before it.
        self._predictions: OrderedDict[str, tuple[float, Any, Score | None, dict[str, Any]]] = OrderedDict()
        self._labels: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._joined: OrderedDict[str, float] = OrderedDict()  # request_id -> labelled at: refused again for the TTL
        self.joined = 0
        self.expired_predictions = 0
        self.expired_labels = 0
        self.evicted_predictions = 0
        self.evicted_labels = 0
        self.duplicates = 0

    def prediction_refusal(self, request_id: str) -> str | None:
        """Why a prediction for ``request_id`` may not enter the join (counted), or None: it may."""
        if request_id in self._predictions:
            why = "a prediction for it is already waiting for its label"
        elif request_id in self._joined:
            why = "it was already predicted and labelled"
        else:
            return None
        self.duplicates += 1
        return f"duplicate request_id {request_id!r}: {why}"

    def label_refusal(self, request_id: str) -> str | None:
        """Why a label for ``request_id`` may not enter the join (counted), or None: it may."""
        if request_id in self._labels:
            why = "a label for it is already waiting for its prediction"
        elif request_id in self._joined:
            why = "it is already labelled"
        else:
            return None
        self.duplicates += 1
        return f"duplicate request_id {request_id!r}: {why}"

    def add_prediction(self, request_id: str, ts: float, prediction: Any, score: Score | None,
                       attributes: dict[str, Any]) -> Outcome | None:
        """Join a prediction that :meth:`prediction_refusal` let in."""
        waiting = self._labels.pop(request_id, None)
        if waiting is not None:
            self._mark_joined(request_id, waiting[0])
            return Outcome(request_id, prediction, waiting[1], score, attributes, ts, waiting[0])
        self._predictions[request_id] = (ts, prediction, score, attributes)
        if len(self._predictions) > self.max_pending:
            self.evicted_predictions += _drop_oldest(self._predictions, self.max_pending)
        return None

    def add_label(self, request_id: str, ts: float, label: Any) -> Outcome | None:
        """Join a label that :meth:`label_refusal` let in."""
        waiting = self.take_prediction(request_id, ts, label)
        if waiting is None:
            return None
        predicted_at, prediction, score, attributes = waiting
        return Outcome(request_id, prediction, label, score, attributes, predicted_at, ts)

    def take_prediction(self, request_id: str, ts: float,
                        label: Any) -> tuple[float, Any, Score | None, dict[str, Any]] | None:
        """:meth:`add_label` without the :class:`Outcome`: the prediction's ``(predicted_at, prediction,
        score, attributes)``, or None when the label waits for it."""
        waiting = self._predictions.pop(request_id, None)
        if waiting is not None:
            self._mark_joined(request_id, ts)
            return waiting
        self._labels[request_id] = (ts, label)
        if len(self._labels) > self.max_pending:
            self.evicted_labels += _drop_oldest(self._labels, self.max_pending)
        return None

    def _mark_joined(self, request_id: str, labelled_at: float) -> None:
        self.joined += 1
        self._joined[request_id] = labelled_at
        if len(self._joined) > self.max_pending:  # (one at a time: the oldest goes)
            self._joined.popitem(last=False)  # forgotten, not lost: nothing waits there

    def add_waiting(self, events: Sequence[Any], first: int, stop: int) -> int:
        """:meth:`add_prediction` for ``events[first:stop]`` in order, as far as each would only wait: no
        label waits for its ``request_id`` and it repeats no pending, joined or earlier one. Returns
        how many were added; the one after them (if any) is left to :meth:`prediction_refusal` and
        :meth:`add_prediction`."""
        predictions, labels, joined = self._predictions, self._labels, self._joined
        added = 0
        if stop - first > SHORT_RUN:  # a long run is checked whole in C first (the common case: all wait)
            ids = list(map(_REQUEST_ID, islice(events, first, stop)))
            if (len(set(ids)) == len(ids) and labels.keys().isdisjoint(ids) and predictions.keys().isdisjoint(ids)
                    and joined.keys().isdisjoint(ids)):
                predictions.update(zip(ids, map(_JOIN_FIELDS, islice(events, first, stop))))
                added = len(ids)
        if not added:
            for position in range(first, stop):
                event = events[position]
                request_id = event.request_id
                if request_id in predictions or request_id in labels or request_id in joined:
                    break
                predictions[request_id] = (event.ts, event.prediction, event.score, event.attributes)
                added += 1
        # Evicting after the adds drops what evicting after each would: the oldest, from the front.
        if len(predictions) > self.max_pending:
            self.evicted_predictions += _drop_oldest(predictions, self.max_pending)
        return added

    def request_ids(self) -> tuple[Any, Any, Any]:
        """Views of the ``request_id`` s of the waiting predictions, the waiting labels and the joined
        requests (live: they follow the join)."""
        return self._predictions.keys(), self._labels.keys(), self._joined.keys()

    def evict_for(self, arriving: int) -> bool:
        """Evict now what adding ``arriving`` predictions (each would only wait) would evict, if that is
        only predictions waiting already: the oldest. False when some arriving ones would go too
        (nothing is evicted then: add them first, :meth:`add_waiting` evicts)."""
        waiting = self._predictions
        excess = len(waiting) + arriving - self.max_pending
        if excess > len(waiting):
            return False
        if excess > 0:
            self.evicted_predictions += _drop_oldest(waiting, len(waiting) - excess)
        return True

    def expire(self, now: float) -> None:
        horizon = now - self.ttl
        self.expired_predictions += _drop_older(self._predictions, horizon)
        self.expired_labels += _drop_older(self._labels, horizon)
        _drop_older(self._joined, horizon, _itself)

    @property
    def pending(self) -> int:
        return len(self._predictions) + len(self._labels)

    @property
    def evicted(self) -> int:
        return self.evicted_predictions + self.evicted_labels

    def to_dict(self) -> dict[str, Any]:
        # Each entry as its (request id, values) pair, copied in C: a checkpoint holds tens of
        # thousands of them and the partition waits while it is taken (a list per entry was most of it).
        return {
            "ttl": self.ttl,
            "max_pending": self.max_pending,
            "predictions": list(self._predictions.items()),
            "labels": list(self._labels.items()),
            "joined": list(self._joined.items()),
            "counts": [self.joined, self.expired_predictions, self.expired_labels, self.evicted_predictions,
                       self.evicted_labels, self.duplicates],
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any], max_pending: int) -> LabelJoin:
        """The join of :meth:`to_dict`, bounded by ``max_pending`` (the configuration's, which may have changed).

        A checkpoint from before the bound and the duplicate rule (no ``joined``, three counts) is read
        too, and one whose entries are flat (``[request id, *values]``).
        """
        join = cls(state["ttl"], max_pending)
        join._predictions = OrderedDict(_entries(state["predictions"]))
        join._labels = OrderedDict(_entries(state["labels"]))
        join._joined = OrderedDict((k, ts) for k, ts in state.get("joined", ()))
        counts = list(state["counts"]) + [0] * (6 - len(state["counts"]))
        (join.joined, join.expired_predictions, join.expired_labels, join.evicted_predictions,
         join.evicted_labels, join.duplicates) = counts
        join.evicted_predictions += _drop_oldest(join._predictions, max_pending)
        join.evicted_labels += _drop_oldest(join._labels, max_pending)
        _drop_oldest(join._joined, max_pending)
        return join


def _entries(rows: list[list[Any]]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """The (request id, values) of each checkpointed entry: ``[id, [values]]``, or ``[id, *values]``
    as checkpoints wrote them before (the first value is an event time, never a list)."""
    for row in rows:
        if len(row) == 2 and isinstance(row[1], (list, tuple)):
            yield row[0], tuple(row[1])
        else:
            yield row[0], tuple(row[1:])


def _drop_older(waiting: OrderedDict[str, Any], horizon: float, time_of: Callable[[Any], float] = itemgetter(0)) -> int:
    """Drop the entries from the front (arrival order) up to the first at ``horizon`` or later; how many went."""
    dropped = 0
    while waiting:
        oldest = next(iter(waiting))
        if time_of(waiting[oldest]) >= horizon:
            break
        del waiting[oldest]
        dropped += 1
    return dropped


def _itself(labelled_at: float) -> float:
    return labelled_at  # (a joined request's entry is its time: no tuple made per label)


def _drop_oldest(waiting: OrderedDict[str, Any], keep: int) -> int:
    """Drop the oldest entries (the front: arrival order) until ``keep`` are left; how many went."""
    excess = len(waiting) - keep
    if excess <= 0:
        return 0
    deque(map(waiting.popitem, repeat(False, excess)), 0)  # (popitem(last=False) excess times, looped in C)
    return excess
