"""The batch path of :meth:`tripwire.engine.Engine.process_records`: raw records decoded at once, and
a run of one model's predictions and labels processed column-wise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence, cast

from tripwire.events import Event, Label, Prediction, Rejection, decode_batch
from tripwire.monitor import Alert, Refused

if TYPE_CHECKING:
    from tripwire.engine import Engine

MIN_RUN = 8  # the batch path takes a run of one model's predictions and labels from this long


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

    Alerts, rejections and state are exactly those of :meth:`Engine.step` of ``decode(r)`` for each
    record in order; the batch is only faster (see :func:`tripwire.events.decode_batch`). A
    record on which the engine itself fails is rejected with the error, and the batch goes on.
    """
    result = BatchResult()
    alerts, alert_records = result.alerts, result.alert_records
    items = _admit_all(engine, decode_batch(records))
    index, count = 0, len(items)
    while index < count:
        item = items[index]
        if type(item) is Prediction or type(item) is Label:
            taken = _run_in_bulk(engine, item, items, index, result)
            if taken:
                index += taken
                continue
        if type(item) is Rejection:
            result.rejections.append((index, item))
            raised = engine.reject(item)
        else:
            try:
                raised = engine.process(item)
                result.events += 1
                result.last_ts = item.ts
            except Refused as refused:
                result.rejections.append((index, refused.rejection))
                raised = engine.reject(refused.rejection)
            except Exception as error:  # a bug must not stop a runner: dead-letter the record, go on
                result.rejections.append((index, Rejection(f"engine error: {type(error).__name__}: {error}",
                                                           item.model)))
                raised = []
        if raised:
            alerts += raised
            alert_records += [index] * len(raised)
        index += 1
    for monitor in engine.monitors.values():  # the runs' outcomes, for whatever reads the windows next
        monitor.flush_outcomes()
    return result


def _admit_all(engine: Engine, events: list[Event | Rejection]) -> list[Event | Rejection]:
    """:meth:`Engine.admit` of each event in order; a monitored model's run of events at once (see
    :meth:`tripwire.admission.Admission.admit_run`)."""
    admitted: list[Event | Rejection] = []
    monitors = engine.monitors
    index, count = 0, len(events)
    while index < count:
        event = events[index]
        monitor = monitors.get(event.model) if type(event) is not Rejection else None
        if monitor is None:
            admitted.append(engine.admit(event))
            index += 1
        else:
            index = monitor.admission.admit_run(events, index, admitted)
    return admitted


def _run_in_bulk(engine: Engine, head: Prediction | Label, items: list[Event | Rejection], first: int,
                 result: BatchResult) -> int:
    """Process the run of one model's predictions and labels from ``items[first]`` (``head``); return how
    many items it took (0: none, the caller takes ``items[first]`` one by one).

    The predictions go to the data window column-wise, once for the whole run (see
    :meth:`ModelMonitor.bulk_room` and :meth:`~ModelMonitor.bulk_span`: no window close or join
    expiry inside it), and to the label join in one go (see :meth:`ModelMonitor.join_predictions`),
    before a label only when it could tell the difference; each label meets the join, the model
    version and the performance window exactly as one-by-one processing leaves them (see
    :meth:`ModelMonitor.on_run_label`), and whatever it raises is that path's. The run stops
    before a record that could behave otherwise: a prediction a label waits for or that repeats a
    request id, a label the join would refuse, another model, another event type, the record that
    closes the rejection window.
    """
    model = head.model
    stop = min(len(items), first + engine.config.rejection_window - engine._records - 1)
    if stop - first < MIN_RUN:
        return 0
    for position in range(first + MIN_RUN - 1, first, -1):  # (from the far end: models that alternate fail first)
        item = items[position]
        if (type(item) is not Prediction and type(item) is not Label) or item.model != model:
            return 0  # a short run: its bookkeeping would cost more than the one-by-one path
    monitor = engine.monitors.get(model)
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
    latest = engine._last_ts
    failed: int | None = None  # a label on which the engine failed: dead-lettered, not counted
    while position < stop:
        item = items[position]
        if type(item) is Prediction:
            request_id = item.request_id
            if (item.model != model or len(predictions) >= prediction_room or not low <= item.ts < high
                    or request_id in waiting or request_id in labels_waiting or request_id in joined_ids
                    or request_id in pending_ids):
                break  # (or it would not only wait in the join: the one-by-one path)
            predictions.append(item)
            pending_ids.add(request_id)
            if item.model_version:
                version = item.model_version
        elif type(item) is Label:
            request_id = item.request_id
            if item.model != model or not labels_too or request_id in labels_waiting or request_id in joined_ids:
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
            try:
                raised = monitor.on_run_label(item)
            except Exception as error:  # a bug must not stop a runner: dead-letter the record, go on
                result.rejections.append((position, Rejection(f"engine error: {type(error).__name__}: {error}",
                                                              item.model)))
                failed = position
                position += 1
                break
            if raised:
                result.alerts += engine._tally(raised)
                result.alert_records += [position] * len(raised)
            if item.ts > latest:
                latest = item.ts
        else:
            break
        position += 1
    if joined < len(predictions):
        monitor.join_predictions(predictions, joined, len(predictions))  # each only waits: all are taken
    if predictions:
        monitor.append_predictions(predictions)
        latest = max(latest, monitor._end)  # the data window's end is its latest prediction time
    counted = (position if failed is None else failed) - first
    if counted:
        engine.events += counted
        engine._last_ts = latest
        if engine._records == 0:
            engine._window_start = head.ts
        engine._records += counted
        result.events += counted
        result.last_ts = cast("Prediction | Label", items[first + counted - 1]).ts  # (counted: run items)
    return position - first
