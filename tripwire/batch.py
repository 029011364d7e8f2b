"""The batch path of :meth:`tripwire.engine.Engine.process_records`: raw records decoded at once, and
a run of one model's predictions and labels processed column-wise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence, cast

from tripwire.events import Event, Label, Prediction, Rejection, decode_batch
from tripwire.monitor import Alert, Refused, WindowSink

if TYPE_CHECKING:
    from tripwire.engine import Engine

MIN_RUN = 8  # the batch path takes a run of one model's predictions and labels from this long
# Records decoded and routed together. More amortise nothing further, and past a few thousand the
# decoded events leave the CPU cache before they are routed: a worker's fetch of 5,000 records is
# taken in pieces of this size (bench/replay_throughput.py: about 10 % slower at 4,096).
CACHE_RECORDS = 1000


@dataclass
class BatchResult:
    """What :meth:`Engine.process_records` made of a batch of raw records."""

    alerts: list[Alert] = field(default_factory=list)  # in the order one-by-one processing would emit them
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)  # (index into the records, rejection)
    events: int = 0  # records that were valid events
    last_ts: float | None = None  # event time of the last valid event
    alert_records: list[int] = field(default_factory=list)  # per alert, the index of the record that raised it


def process_records(engine: Engine, records: Sequence[bytes]) -> BatchResult:
    """``engine`` decodes and processes a batch of raw records (JSON lines, Kafka values; a tombstone as ``b""``).

    Alerts, rejections, state and sink calls are exactly those of :meth:`Engine.step` of
    ``decode(r)`` for each record in order; the batch is only faster (see
    :func:`tripwire.events.decode_batch`). Models share no state, so each model's events are routed
    on their own, in long runs even where models alternate (see :class:`_ModelPass`); then, in
    record order, the engine counts every record in its record window, tallies the alerts and makes
    the monitors' sink calls they deferred. A record on which the engine itself fails is rejected
    with the error, and the batch goes on.
    """
    feature_names = {model: monitor.feature_row_names() for model, monitor in engine.monitors.items()}
    if len(records) <= CACHE_RECORDS:
        return _process_piece(engine, records, feature_names)
    result = BatchResult()
    for first in range(0, len(records), CACHE_RECORDS):
        piece = _process_piece(engine, records[first:first + CACHE_RECORDS], feature_names)
        result.alerts += piece.alerts
        result.rejections += [(first + index, rejection) for index, rejection in piece.rejections]
        result.events += piece.events
        result.last_ts = result.last_ts if piece.last_ts is None else piece.last_ts
        result.alert_records += [first + index for index in piece.alert_records]
    return result


def _process_piece(engine: Engine, records: Sequence[bytes], feature_names: dict[str, tuple[str, ...] | None]) -> BatchResult:
    items = decode_batch(records, feature_names)
    routed = _ModelPass(engine, items)
    routed.run()
    for monitor in engine.monitors.values():  # the runs' outcomes, for whatever reads the windows next
        monitor.flush_outcomes()
    return _count_in_record_order(engine, items, routed)


class _ModelPass:
    """Routes a batch's events model by model (see :meth:`Engine.route`), keeping by record index what
    each raised: alerts, a refusal, an engine failure, and the window sink calls it made (deferred,
    so that they reach the sinks in record order)."""

    def __init__(self, engine: Engine, items: list[Event | Rejection]) -> None:
        self.engine = engine
        self.items = items  # decoded; admission replaces the events it rejects
        self.rejected: list[int] = []  # records that decoding or admission rejected
        self.raised: dict[int, list[Alert]] = {}
        self.refused: dict[int, Rejection] = {}  # counted as rejections (see Engine.reject)
        self.failed: dict[int, Rejection] = {}  # the engine failed: dead-lettered, not counted
        self.sink_calls: dict[int, list[tuple[WindowSink, dict[str, Any]]]] = {}
        self._pending: list[tuple[WindowSink, dict[str, Any]]] = []

    def run(self) -> None:
        groups: dict[str, list[int]] = {}
        rejected = self.rejected
        for index, item in enumerate(self.items):
            if type(item) is Rejection:
                rejected.append(index)
            else:
                groups.setdefault(item.model, []).append(index)
        monitors = list(self.engine.monitors.values())
        sinks = [(monitor.on_window, monitor.on_summary) for monitor in monitors]
        for monitor, (on_window, on_summary) in zip(monitors, sinks):
            monitor.on_window = self._deferred(on_window)
            monitor.on_summary = self._deferred(on_summary)
        try:
            for model, positions in groups.items():
                self._route(model, positions)
        finally:
            for monitor, (on_window, on_summary) in zip(monitors, sinks):
                monitor.on_window, monitor.on_summary = on_window, on_summary

    def _deferred(self, sink: WindowSink | None) -> WindowSink | None:
        if sink is None:
            return None
        return lambda payload: self._pending.append((sink, payload))

    def sink_calls_made(self, index: int) -> bool:
        """The sink calls made since the last call belong to the record at ``index``; whether there were any."""
        if not self._pending:
            return False
        self.sink_calls[index], self._pending = self._pending, []
        return True

    def _route(self, model: str, positions: list[int]) -> None:
        """One model's events (at ``positions`` in the batch, ascending) admitted, then routed in runs
        where they may, else one by one."""
        items = self.items
        admitted = admit_model(self.engine, model, cast("list[Event]", [items[index] for index in positions]))
        if any(type(event) is Rejection for event in admitted):  # (one result per event, in order)
            kept = []
            for index, event in zip(positions, admitted):
                if type(event) is Rejection:
                    items[index] = event
                    self.rejected.append(index)
                else:
                    kept.append(index)
            positions = kept
            admitted = [event for event in admitted if type(event) is not Rejection]
        events = cast("list[Event]", admitted)
        route = self.engine.route
        at, count = 0, len(events)
        while at < count:
            event = events[at]
            if type(event) is Prediction or type(event) is Label:
                taken = _run_in_bulk(self, event, events, positions, at)
                if taken:
                    at += taken
                    continue
            index = positions[at]
            try:
                raised = route(event)
                if raised:
                    self.raised[index] = raised
            except Refused as refused:
                self.refused[index] = refused.rejection
            except Exception as error:  # a bug must not stop a runner: dead-letter the record, go on
                self.failed[index] = _engine_error(error, event)
            self.sink_calls_made(index)
            at += 1


def admit_model(engine: Engine, model: str, events: list[Event]) -> list[Event | Rejection]:
    """:meth:`Engine.admit` of each of one model's events, in order; a monitored model's at once (see
    :meth:`tripwire.admission.Admission.admit_run`). Admission reads only the model's own state, so
    each model's events are admitted on their own."""
    monitor = engine.monitors.get(model)
    if monitor is None:
        return [engine.admit(event) for event in events]
    admitted: list[Event | Rejection] = []
    at = 0
    while at < len(events):
        at = monitor.admission.admit_run(events, at, admitted)
    return admitted


def _engine_error(error: Exception, event: Event) -> Rejection:
    return Rejection(f"engine error: {type(error).__name__}: {error}", event.model)


def _count_in_record_order(engine: Engine, items: list[Event | Rejection], routed: _ModelPass) -> BatchResult:
    """The engine's own part of each record, in record order: the record window (see
    :meth:`Engine.count_events` and :meth:`Engine.reject`), the deferred sink calls, then the alerts.

    Between records that raised, were rejected or made sink calls, the events are counted a span at a time.
    """
    result = BatchResult()
    alerts, alert_records, rejections = result.alerts, result.alert_records, result.rejections
    raised, refused, failed, sink_calls = routed.raised, routed.refused, routed.failed, routed.sink_calls
    tally = engine._tally
    eventful = sorted({*routed.rejected, *raised, *refused, *failed, *sink_calls})
    span_start = 0
    for index in [*eventful, len(items)]:
        if span_start < index:  # events that raised nothing
            stamps = [cast("Event", item).ts for item in items[span_start:index]]
            for offset, closing in engine.count_events(stamps):
                alerts += tally(closing)
                alert_records += [span_start + offset] * len(closing)
            result.last_ts = stamps[-1]
        span_start = index + 1
        if index == len(items):
            break
        for sink, payload in sink_calls.get(index, ()):
            sink(payload)
        item = items[index]
        if type(item) is Rejection or index in refused:
            rejection = item if type(item) is Rejection else refused[index]
            rejections.append((index, rejection))
            record_alerts = engine.reject(rejection)
        elif index in failed:
            rejections.append((index, failed[index]))
            continue
        else:
            result.last_ts = item.ts
            record_alerts = raised.get(index, []) + engine.count_event(item.ts)
            tally(record_alerts)
        alerts += record_alerts
        alert_records += [index] * len(record_alerts)
    result.events = len(items) - len(rejections)
    return result


def _run_in_bulk(routed: _ModelPass, head: Prediction | Label, events: list[Event],
                 positions: list[int], first: int) -> int:
    """Route the run of one model's predictions and labels from ``events[first]`` (``head``; at
    ``positions[first]`` in the batch); return how many events it took (0: none, the caller takes
    ``events[first]`` one by one).

    The predictions go to the data window column-wise, once for the whole run (see
    :meth:`ModelMonitor.bulk_room` and :meth:`~ModelMonitor.bulk_span`: no window close or join
    expiry inside it), and to the label join in one go (see :meth:`ModelMonitor.join_predictions`),
    before a label only when it could tell the difference; each label meets the join, the model
    version and the performance window exactly as one-by-one processing leaves them (see
    :meth:`ModelMonitor.on_run_label`), and whatever it raises is that path's. The run stops
    before an event that could behave otherwise: a prediction a label waits for or that repeats a
    request id, a label the join would refuse, another event type; and after a label that closed
    a window (its sink calls belong to it).
    """
    stop = len(events)
    if stop - first < MIN_RUN:
        return 0
    for position in range(first + MIN_RUN - 1, first, -1):  # (from the far end: a features event fails first)
        event = events[position]
        if type(event) is not Prediction and type(event) is not Label:
            return 0  # a short run: its bookkeeping would cost more than the one-by-one path
    monitor = routed.engine.monitors.get(head.model)
    if monitor is None:
        return 0
    join = monitor.join
    waiting, labels_waiting, joined_ids = join.request_ids()
    max_pending = join.max_pending
    prediction_room = monitor.bulk_room()
    low, high = monitor.bulk_span()
    # A sharded model's label may close the data window (see _open_sharded_window): the run's
    # predictions must be in it first, so the label waits for the one-by-one path.
    labels_too = not monitor.sharded
    predictions: list[Prediction] = []  # the run's predictions, for the data window at the end
    joined = 0  # how many of them are in the label join already
    pending_ids: set[str] = set()  # the request ids of the others
    version = monitor.model_version  # as one-by-one processing leaves it: the latest given
    position = first
    while position < stop:
        event = events[position]
        if type(event) is Prediction:
            request_id = event.request_id
            if (len(predictions) >= prediction_room or not low <= event.ts < high
                    or request_id in waiting or request_id in labels_waiting or request_id in joined_ids
                    or request_id in pending_ids):
                break  # (or it would not only wait in the join: the one-by-one path)
            predictions.append(event)
            pending_ids.add(request_id)
            if event.model_version:
                version = event.model_version
        elif type(event) is Label:
            request_id = event.request_id
            if not labels_too or request_id in labels_waiting or request_id in joined_ids:
                break
            # The predictions since the last label join later, in one go, unless this label
            # could tell: it may meet one of them, or read the join's size. Whatever they
            # would have evicted from the join is evicted now (see LabelJoin.evict_for).
            arriving = len(predictions) - joined
            if arriving and (request_id in pending_ids or monitor.next_label_reads_join()
                             or (len(waiting) + arriving > max_pending and not join.evict_for(arriving))):
                joined += monitor.join_predictions(predictions, joined, len(predictions))
                pending_ids.clear()
            monitor.model_version = version
            index = positions[position]
            position += 1
            try:
                raised = monitor.on_run_label(event)
            except Exception as error:  # a bug must not stop a runner: dead-letter the record, go on
                routed.failed[index] = _engine_error(error, event)
                routed.sink_calls_made(index)
                break
            if raised:
                routed.raised[index] = raised
            if routed.sink_calls_made(index):
                break
            continue
        else:
            break
        position += 1
    if joined < len(predictions):
        monitor.join_predictions(predictions, joined, len(predictions))  # each only waits: all are taken
    if predictions:
        monitor.append_predictions(predictions)
    return position - first
