"""Admission: a model's events in its reference's form and on its event clock, or a rejection saying why not.

Runs between decoding and processing (see :meth:`tripwire.engine.Engine.admit`), so a batch admits
all its records before processing any of them.
"""

from __future__ import annotations

from typing import Any, Sequence, cast

from tripwire.classes import ClassSet
from tripwire.config import ConfigError, ModelConfig
from tripwire.event_time import EventClock
from tripwire.events import Event, Features, Label, Prediction, Rejection
from tripwire.reference import is_multiclass

SCORE_ORDERS_KEPT = 16  # key orders of `scores` objects whose class positions an admission remembers


def _is_number(value: Any) -> bool:
    return type(value) is float or type(value) is int


class Admission:
    """Checks one model's events and puts a classifier's in its reference's class form.

    ``clock``: the model's event clock, which admitted events move.
    """

    def __init__(self, config: ModelConfig, reference: dict[str, Any], clock: EventClock) -> None:
        self.model = config.name
        self.clock = clock
        # A classifier's predictions and labels are compared in one canonical form (see admit).
        self.multiclass = is_multiclass(reference)
        self.classes = ClassSet(reference["classes"]) if reference["task"] == "classification" else None
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

    def admit(self, event: Event) -> Event | Rejection:
        """The event, checked and in canonical form, or a rejection saying why not.

        A classifier's prediction and label are put in the reference's class form (see
        :meth:`_admit_classes`); a regression model's must be numbers. Then the event's time must
        suit the model's event clock (late or far-future records are refused, see
        :class:`tripwire.event_time.EventClock`); an event that passes moves the clock, even one the
        label join refuses afterwards as a duplicate (admission runs ahead of processing in a batch).
        """
        if type(event) is not Features:
            classes = self.classes
            if classes is not None:
                admitted = self._admit_classes(event, classes)  # the event itself, or a rejection
                if type(admitted) is Rejection:
                    return admitted
            elif not _is_number(event.prediction if type(event) is Prediction else event.label):
                return self._number_rejection(event)
        refusal = self.clock.refusal(event.ts, self.model)
        return event if refusal is None else Rejection(refusal, self.model)

    def admit_run(self, events: Sequence[Event | Rejection], first: int, admitted: list[Event | Rejection]) -> int:
        """:meth:`admit` of each of ``events[first:]`` in order, appended to ``admitted``, up to the first
        rejection or event of another model; returns its index (``len(events)`` at the end).

        The common event is admitted inline: a class value already seen in this spelling (see
        :attr:`ClassSet.spellings`) or a regression number, and a time the clock accepts without
        a jump; any other goes through :meth:`admit`.
        """
        model, clock, classes = self.model, self.clock, self.classes
        spellings = classes.spellings if classes is not None else None
        names = classes.classes if classes is not None else []
        lateness, future = clock.allowed_lateness, clock.max_future
        multiclass = self.multiclass
        now = clock.now
        position, count = first, len(events)
        append = admitted.append
        while position < count:
            event = events[position]
            kind: type | None = type(event)
            if kind is Rejection or event.model != model:
                break
            ts = event.ts  # type: ignore[union-attr]
            at = None
            value: Any = None
            if kind is Label:
                value = event.label  # type: ignore[union-attr]
            elif kind is Prediction and not multiclass and (event.scores is None or event.score is not None):  # type: ignore[union-attr]
                value = event.prediction  # type: ignore[union-attr]
            elif kind is not Features:
                kind = None  # a score vector to make, or refuse: the whole check
            if (kind is None or now is None or not now - lateness <= ts <= now + future
                    or (spellings is not None and kind is not Features
                        and ((seen := spellings.get(type(value))) is None or (at := seen.get(value)) is None))
                    or (spellings is None and kind is not Features and type(value) is not float
                        and type(value) is not int)):
                clock.now = now
                append(self.admit(cast(Event, event)))
                now = clock.now
                position += 1
                continue
            if clock._far_side:
                clock._far_side = 0
            if ts > now:
                now = ts
            if at is not None:
                if kind is Label:
                    event.label = names[at]  # type: ignore[union-attr]
                else:
                    event.prediction = names[at]  # type: ignore[union-attr]
            append(event)
            position += 1
        clock.now = now
        return position

    def _number_rejection(self, event: Prediction | Label) -> Rejection:
        role, value = ("prediction", event.prediction) if type(event) is Prediction else ("label", event.label)
        return Rejection(f"{role} {value!r} of regression model {self.model!r} is not a number (an outcome "
                         f"that cannot be scored is refused, never counted as right or wrong)", self.model)

    def _admit_classes(self, event: Prediction | Label, classes: ClassSet) -> Prediction | Label | Rejection:
        """The event with its classes in the reference's spelling, or a rejection saying why it has none.

        ``"1"``, ``1`` and ``1.0`` are one class, ``"true"`` and ``True`` too (see
        :mod:`tripwire.classes`), so a label sent as ``1`` for a prediction ``"1"`` is a hit, not
        a miss; a value that is no class of the reference is rejected rather than counted wrong.
        A multi-class prediction's ``scores`` (class -> probability, every class) become its
        ``score``: the probability vector in class order, which the windows and the label join
        carry. A binary prediction with ``scores`` but no ``score`` gets the positive class's.
        """
        if type(event) is Label:
            label = classes.canonical(event.label)
            if label is None:
                return self._class_rejection("label", event.label, classes)
            event.label = label
            return event
        prediction = classes.canonical(event.prediction)
        if prediction is None:
            return self._class_rejection("prediction", event.prediction, classes)
        event.prediction = prediction
        if self.multiclass:
            if event.scores is not None:
                vector = self._score_vector(event.scores, classes)
                if type(vector) is Rejection:
                    return vector
                event.score = vector
            elif event.score is not None:
                return Rejection(f"model {self.model!r} has {len(classes)} classes: a prediction gives 'scores' "
                                 f"(class -> probability), not one 'score'", event.model)
        elif event.score is None and event.scores is not None and self._positive_position is not None:
            vector = self._score_vector(event.scores, classes)
            if type(vector) is Rejection:
                return vector
            event.score = vector[self._positive_position]
        return event

    def _score_vector(self, scores: dict[str, float], classes: ClassSet) -> tuple[float, ...] | Rejection:
        if len(scores) == len(classes):
            # A producer sends its keys in the same order every time: their class positions are cached.
            order = self._score_orders.get(tuple(scores))
            if order is not None:
                ordered = [0.0] * len(order)
                for at, probability in zip(order, scores.values()):
                    ordered[at] = probability
                return tuple(ordered)
        vector: list[float | None] = [None] * len(classes)
        for key, probability in scores.items():
            position = classes.index(key)
            if position is None:
                return self._class_rejection("scores key", key, classes)
            vector[position] = probability
        if None not in vector and len(self._score_orders) < SCORE_ORDERS_KEPT:
            # every key has a position: the loop above returned at the first that has none
            self._score_orders[tuple(scores)] = [cast(int, classes.index(key)) for key in scores]
        if None in vector:
            missing = [c for c, p in zip(classes.classes, vector) if p is None]
            return Rejection(f"field 'scores' has no probability for the classes {missing} of model "
                             f"{self.model!r}", self.model)
        return cast("tuple[float, ...]", tuple(vector))  # no None left: checked just above

    def _class_rejection(self, role: str, value: Any, classes: ClassSet) -> Rejection:
        return Rejection(f"{role} {value!r} is not one of the classes {classes.describe()} of model "
                         f"{self.model!r} (its reference)", self.model)
