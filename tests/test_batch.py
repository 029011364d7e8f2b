"""The batch path (``decode_batch``, ``Engine.process_records``, batched replay) against one record at a time.

Every comparison is of bytes: the alerts as ``encode_alert`` writes them, the rejections with
their reasons, the engine's checkpoint, the dead-letter file.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tripwire import demo
from tripwire.alerts import encode_alert
from tripwire.batch import CACHE_RECORDS
from tripwire.config import parse_config
from tripwire.engine import Engine
from tripwire.events import FeatureRow, Prediction, decode, decode_batch, format_ts, parse_ts
from tripwire.replay import deadletter_line, deadletter_path, replay_file, run_records

STAMP = "2026-11-28T00:10:00.250Z"
PREDICTION = {"type": "prediction", "schema": 1, "request_id": "odd", "model": "credit", "model_version": "3",
              "ts": STAMP, "features": {"income": 41000.0, "age": 37, "purpose": "car"}, "prediction": 1,
              "score": 0.71, "latency_ms": 12, "attributes": {"group": "A"}}

# Records the typed fast path must hand to decode(): bad ones keep decode()'s reason, odd but valid
# ones decode()'s value.
ODD_RECORDS = [
    b"", b"null", b"[]", b"not json", b'{"type":"prediction"', b"\xff\xfe", b"\xef\xbb\xbf{}", b"{} {}",
    orjson.dumps({**PREDICTION, "extra": 1e300}),  # unknown field: valid for decode()
    orjson.dumps({**PREDICTION, "extra": "x"})[:-1] + b',"more":1e999}',  # non-finite in an unknown field
    orjson.dumps({**PREDICTION, "extra": "x"}).replace(b'"x"', b'"\xff"'),  # bad UTF-8 in an unknown field
    orjson.dumps({**PREDICTION, "features": {"income": [1, 2], "age": {"a": None}}}),  # nested feature values
    orjson.dumps({**PREDICTION, "features": None, "attributes": None, "model_version": 7}),
    orjson.dumps({**PREDICTION, "prediction": 1234}).replace(b"1234", b"123456789012345678901234567890"),
    orjson.dumps({**PREDICTION, "latency_ms": 18446744073709551615}),  # a u64 orjson keeps as an int
    orjson.dumps({**PREDICTION, "score": 1}), orjson.dumps({**PREDICTION, "score": True}),
    orjson.dumps({**PREDICTION, "score": -0.0}), orjson.dumps({**PREDICTION, "latency_ms": -0.0}),
    orjson.dumps({**PREDICTION, "scores": {"0": 0, "1": 1.0}}), orjson.dumps({**PREDICTION, "scores": {"1": 2}}),
    orjson.dumps({**PREDICTION, "schema": True}), orjson.dumps({**PREDICTION, "schema": 1.0}),
    orjson.dumps({**PREDICTION, "request_id": ""}), orjson.dumps({**PREDICTION, "type": "click"}),
    orjson.dumps(PREDICTION)[:-1] + b',"type":"label"}',  # the tag twice
    orjson.dumps(PREDICTION)[:-1] + b',"score":0.2}',  # a key twice: the last one counts
    orjson.dumps(PREDICTION)[:-1] + b',"score":7}',
    orjson.dumps({**PREDICTION, "ts": "2026-11-28T00:10:00Z"}), orjson.dumps({**PREDICTION, "ts": "2026-11-28"}),
    orjson.dumps({**PREDICTION, "ts": "2026-11-28T00:10:00.250+01:00"}),
    orjson.dumps({**PREDICTION, "ts": "2026-11-28T00:10:00.250"}),
    orjson.dumps({**PREDICTION, "ts": "2026-11-28 00:10:00.250Z"}),
    orjson.dumps({**PREDICTION, "ts": "2026-02-29T00:10:00.250Z"}), orjson.dumps({**PREDICTION, "ts": "2028-02-29T00:10:00.250Z"}),
    orjson.dumps({**PREDICTION, "ts": "2026-11-28T24:10:00.250Z"}), orjson.dumps({**PREDICTION, "ts": "2026-11-28T00:10:60.250Z"}),
    orjson.dumps({**PREDICTION, "ts": "1969-12-31T23:59:59.999Z"}), orjson.dumps({**PREDICTION, "ts": "2600-01-01T00:00:00.000Z"}),
    orjson.dumps({**PREDICTION, "ts": "2026-11-28T00:10:00.25\u0661Z"}), orjson.dumps({**PREDICTION, "ts": 1795824600}),
    orjson.dumps({"type": "label", "schema": 1, "request_id": "odd", "model": "credit", "ts": STAMP, "label": None}),
    orjson.dumps({"type": "features", "schema": 1, "request_id": "odd", "model": "credit", "ts": STAMP}),
    orjson.dumps({"type": "features", "schema": 1, "request_id": "odd", "model": "credit", "ts": STAMP,
                  "features": {"income": None}}),
    b" " + orjson.dumps(PREDICTION) + b"\t", orjson.dumps(PREDICTION).decode(),  # whitespace; a str record
]


def test_decode_batch_equals_decode_record_by_record(demo_stream):
    records = ODD_RECORDS + demo_stream[0][:5000]
    batched = decode_batch(records)
    single = [decode(record) for record in records]
    assert [repr(item) for item in batched] == [repr(item) for item in single]


def test_fast_timestamps_equal_parse_ts():
    rng = random.Random(5)
    start = datetime(1970, 1, 1, tzinfo=UTC)
    stamps = [format_ts((start + timedelta(days=rng.uniform(0, 83_000), milliseconds=rng.randrange(1000))).timestamp())
              for _ in range(20_000)]
    stamps += ["2024-02-29T23:59:59.999Z", "2000-02-29T00:00:00.000Z", "2199-12-31T23:59:59.999Z", "1970-01-01T00:00:00.000Z"]
    records = [orjson.dumps({"type": "label", "schema": 1, "request_id": "r", "model": "m", "ts": s, "label": 1})
               for s in stamps]
    assert [event.ts for event in decode_batch(records)] == [parse_ts(s) for s in stamps]


def one_at_a_time(engine: Engine, records: list[bytes]) -> tuple[list[bytes], list[tuple[int, str, str | None]]]:
    alerts, rejections = [], []
    for index, record in enumerate(records):
        raised, rejection = engine.step(decode(record))
        if rejection is not None:
            rejections.append((index, rejection.reason, rejection.model))
        alerts += [encode_alert(alert) for alert in raised]
    return alerts, rejections


def in_batches(engine: Engine, records: list[bytes], bounds: list[int]) -> tuple[list[bytes], list[tuple[int, str, str | None]]]:
    alerts, rejections = [], []
    for first, stop in zip(bounds, bounds[1:]):
        result = engine.process_records(records[first:stop])
        assert len(result.alerts) == len(result.alert_records)
        alerts += [encode_alert(alert) for alert in result.alerts]
        rejections += [(first + index, rejection.reason, rejection.model) for index, rejection in result.rejections]
    return alerts, rejections


def fed(config: dict, references: dict, records: list[bytes], batch_size: int) -> tuple[tuple, Engine]:
    """An engine of ``config`` fed ``records`` one at a time (``batch_size`` 1) or in batches: its
    alerts and rejections, window records and final state, and the engine."""
    windows: list[bytes] = []
    engine = Engine(parse_config(config), references=references,
                    on_window=lambda window: windows.append(orjson.dumps(window)))
    if batch_size == 1:
        outcome = one_at_a_time(engine, records)
    else:
        outcome = in_batches(engine, records, [*range(0, len(records), batch_size), len(records)])
    return (outcome, windows, orjson.dumps(engine.state())), engine


def demo_engine(references: dict, on_window=None) -> Engine:
    return Engine(parse_config(demo.demo_config()), references=references, on_window=on_window)


def dirty(records: list[bytes]) -> list[bytes]:
    """The stream with the odd records sprinkled in (a burst of them too, so the rejection rate alerts)."""
    out = []
    for index, record in enumerate(records):
        out.append(record)
        if index % 997 == 5:
            out.append(ODD_RECORDS[(index // 997) % len(ODD_RECORDS)])
        if index == 20_000:
            out += ODD_RECORDS * 8
    return out


@pytest.fixture(scope="module")
def reference_run(demo_stream, demo_references):
    """One-at-a-time processing of the dirty demo stream: alerts, rejections, final state, window closes."""
    records = dirty(demo_stream[0])
    closes: list[int] = []
    engine = demo_engine(demo_references, on_window=lambda window: closes.append(engine.events + engine.rejected))
    alerts, rejections = one_at_a_time(engine, records)
    return records, alerts, rejections, orjson.dumps(engine.state()), closes


@pytest.mark.parametrize("size", [1, 7, 1000, 4096])
def test_batches_give_the_same_alerts_rejections_and_state(reference_run, demo_references, size):
    records, alerts, rejections, state, _closes = reference_run
    assert len(alerts) > 20 and len(rejections) > 300
    engine = demo_engine(demo_references)
    bounds = [*range(0, len(records), size), len(records)]
    assert in_batches(engine, records, bounds) == (alerts, rejections)
    assert orjson.dumps(engine.state()) == state


def test_a_batch_bigger_than_the_cache_piece_keeps_each_records_index(demo_stream, demo_references):
    """A worker's fetch of thousands is taken CACHE_RECORDS at a time: each alert and rejection still
    names the record of the whole batch it belongs to."""
    records = dirty(demo_stream[0])[:3 * CACHE_RECORDS + 20_000]  # (the burst of odd records, at 20,000)
    single = demo_engine(demo_references)
    expected_alerts, expected_rejections, last_ts = [], [], None
    for index, record in enumerate(records):
        event = decode(record)
        raised, rejection = single.step(event)
        expected_alerts += [(index, encode_alert(alert)) for alert in raised]
        if rejection is None:
            last_ts = event.ts
        else:
            expected_rejections.append((index, rejection.reason))
    result = demo_engine(demo_references).process_records(records)
    assert len(expected_alerts) >= 2 and len(expected_rejections) > 20
    assert [(index, encode_alert(alert)) for index, alert in zip(result.alert_records, result.alerts)] == expected_alerts
    assert [(index, rejection.reason) for index, rejection in result.rejections] == expected_rejections
    assert (result.events, result.last_ts) == (single.events, last_ts)


def test_sinks_hear_windows_and_alerts_in_record_order(demo_stream, demo_references):
    """The batch routes each model's events on its own; its window sinks and alert sink are still
    called in exactly one-at-a-time order, the models' windows interleaved as their records are."""
    records = dirty(demo_stream[0])

    def heard(run) -> list[bytes]:
        calls: list[bytes] = []
        engine = demo_engine(demo_references, on_window=lambda window: calls.append(b"W" + orjson.dumps(window)))
        engine.on_alert = lambda alert: calls.append(b"A" + encode_alert(alert))
        run(engine)
        return calls

    expected = heard(lambda engine: one_at_a_time(engine, records))
    models = {orjson.loads(call[1:])["model"] for call in expected if call.startswith(b"W")}
    assert len(models) == 3 and sum(call.startswith(b"A") for call in expected) > 20
    assert heard(lambda engine: in_batches(engine, records, [*range(0, len(records), 4096), len(records)])) == expected


@pytest.mark.parametrize("shift", [-1, 0, 1])
def test_batch_boundaries_on_window_closes(reference_run, demo_references, shift):
    """Batches that end at the record closing a window, just before it or just after it."""
    records, alerts, rejections, state, closes = reference_run
    assert len(closes) > 50
    bounds = sorted({0, len(records), *(min(max(c + shift, 0), len(records)) for c in closes)})
    engine = demo_engine(demo_references)
    assert in_batches(engine, records, bounds) == (alerts, rejections)
    assert orjson.dumps(engine.state()) == state


def test_checkpoint_between_batches_continues_identically(reference_run, demo_references):
    records, alerts, rejections, state, closes = reference_run
    bounds = sorted({0, len(records), *range(0, len(records), 2500), closes[len(closes) // 2]})
    middle = len(bounds) // 2
    engine = demo_engine(demo_references)
    head = in_batches(engine, records, bounds[: middle + 1])
    checkpoint = orjson.loads(orjson.dumps(engine.state()))
    restored = demo_engine(demo_references)
    restored.restore(checkpoint)
    tail = in_batches(restored, records, bounds[middle:])
    assert (head[0] + tail[0], head[1] + tail[1]) == (alerts, rejections)
    assert orjson.dumps(restored.state()) == state


def test_replay_file_writes_the_same_alerts_and_dead_letters(reference_run, demo_references, tmp_path):
    """A file replay is the batch run of its non-blank lines; its dead letters name the file's lines."""
    raw = [r if isinstance(r, bytes) else r.encode() for r in reference_run[0]]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(r + b"\n" for r in raw))
    kept = [(line, r.strip()) for line, r in enumerate(raw, 1) if r.strip()]  # blank lines are skipped, not rejected
    alerts, dead = [], []
    run_records(demo_engine(demo_references), [r for _line, r in kept],
                lambda alert, _index: alerts.append(encode_alert(alert) + b"\n"),
                lambda rejection, index, record: dead.append(
                    deadletter_line(rejection, record, {"file": str(events), "line": kept[index - 1][0]}) + b"\n"))
    out = tmp_path / "alerts.jsonl"
    summary = replay_file(demo_engine(demo_references), events, out, progress=False)
    assert summary.blank == len(raw) - len(kept) > 0
    assert summary.records == len(kept) and summary.rejected == len(dead) > 300
    assert out.read_bytes() == b"".join(alerts) and len(alerts) > 20
    assert deadletter_path(out).read_bytes() == b"".join(dead)


@pytest.mark.parametrize("huge", [[], [2**60, -(2**53) - 1]])
def test_numeric_window_folding_counts_like_the_loop(huge):
    """Quality counts of a window of plain numbers (numpy) equal those of a mixed window (the loop)."""
    from tripwire.detectors.quality import FeatureQuality

    rng = np.random.default_rng(3)
    values = [float(v) for v in np.round(rng.normal(0, 2, 5000), 3)] + [int(v) for v in rng.integers(-9, 9, 500)]
    values += [float("nan"), float("inf"), -float("inf"), 3, -3, 3.0000001, *huge]
    profile = {"kind": "numeric", "min": -3.0, "max": 3.0}
    fast, loop = FeatureQuality(profile), FeatureQuality(profile)
    fast.update_many(values)
    loop.update_many(values + ["not a number"])  # one str sends the whole window through the loop
    expected = loop.to_dict()
    expected["n"] -= 1
    expected["type_errors"] -= 1
    assert fast.to_dict() == expected
    assert expected["missing"] == 1 and expected["out_of_range"] > 100


def test_labels_that_come_before_their_predictions(demo_stream, demo_references):
    """A label waiting in the join when its prediction arrives inside a run of predictions."""
    stream = demo_stream[0][:40_000]
    events = [decode(record) for record in stream]
    predicted = {e.request_id for e in events if type(e).__name__ == "Prediction"}
    labels = [i for i, e in enumerate(events) if type(e).__name__ == "Label" and e.request_id in predicted]
    early = {events[i].request_id: stream[i] for i in labels[::7]}  # these labels go just before their prediction
    records = []
    for record, event in zip(stream, events):
        request_id = getattr(event, "request_id", None)
        if type(event).__name__ == "Prediction" and request_id in early:
            records.append(early[request_id])
        if not (type(event).__name__ == "Label" and request_id in early):
            records.append(record)
    expected = one_at_a_time(demo_engine(demo_references), records)
    assert len(early) > 500 and len(expected[0]) > 5
    for size in (333, 1000):
        engine = demo_engine(demo_references)
        assert in_batches(engine, records, [*range(0, len(records), size), len(records)]) == expected


def test_runs_of_predictions_and_labels_close_to_each_other(demo_stream, demo_references):
    """Labels a few records after their predictions (they join inside a run of the batch path), a
    label join that evicts between them and performance windows closing inside a run."""
    stream = demo_stream[0][:30_000]
    events = [decode(record) for record in stream]
    rng = random.Random(5)
    moved: dict[str, bytes] = {}  # request_id -> its label, moved to a few records after the prediction
    for record, event in zip(stream, events):
        if type(event).__name__ == "Label" and rng.random() < 0.6:
            moved[event.request_id] = record
    records: list[bytes] = []
    due: list[tuple[int, bytes]] = []
    for record, event in zip(stream, events):
        if type(event).__name__ == "Label" and event.request_id in moved:
            continue
        records.append(record)
        if type(event).__name__ == "Prediction" and event.request_id in moved:
            due.append((len(records) + rng.randrange(0, 6), moved[event.request_id]))
        while due and due[0][0] <= len(records):
            records.append(due.pop(0)[1])
    records += [label for _at, label in due]
    records[100:100] = [records[120], records[130]]  # two duplicates, refused by the join
    config = demo.demo_config()
    config["defaults"] = {"performance_window": 60, "min_samples": 50, "label_join_max_pending": 400}

    def engine() -> Engine:
        return Engine(parse_config(config), references=demo_references)

    reference = engine()
    expected = one_at_a_time(reference, records)
    assert len(expected[0]) > 20 and reference.bookkeeping()["join_evicted"] > 100
    for size in (1000, 4096):
        batched = engine()
        assert in_batches(batched, records, [*range(0, len(records), size), len(records)]) == expected
        assert orjson.dumps(batched.state()) == orjson.dumps(reference.state())


@pytest.mark.parametrize("window_seconds", [0, 60])
def test_one_model_stream_in_long_runs(demo_stream, demo_references, window_seconds):
    """One model's records only (runs of hundreds of predictions and labels), windows of
    ``window_events`` or of 60 s of event time, the dirty records among them."""
    records = [r for r in dirty(demo_stream[0])
               if b'"model":"credit"' in (raw := r if isinstance(r, bytes) else r.encode()) or b'"model"' not in raw]
    config = demo.demo_config()
    config["defaults"] = {**config.get("defaults", {}), "window_seconds": window_seconds}

    def engine() -> Engine:
        return Engine(parse_config(config), references=demo_references)

    reference = engine()
    expected = one_at_a_time(reference, records)
    assert len(expected[0]) > 10 and len(expected[1]) > 100
    batched = engine()
    assert in_batches(batched, records, [*range(0, len(records), 1000), len(records)]) == expected
    assert orjson.dumps(batched.state()) == orjson.dumps(reference.state())


CLASS_SPELLINGS = st.sampled_from([0, 1, 1.0, True, False, "1", "0", "yes"])


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(CLASS_SPELLINGS, CLASS_SPELLINGS,
                          st.none() | st.floats(0.0, 1.0) | st.sampled_from([0.0, 1.0, 5e-324, 1 - 2**-53]),
                          st.none() | st.sampled_from(["A", "B", 1, "1", 2.5, "None", 0.0, -0.0])), max_size=60),
       st.sampled_from([1, "yes", True, 0]), st.booleans())
def test_window_updates_column_wise_equal_one_by_one(outcomes, positive, named_groups):
    """The batch path's deferred outcomes (update_many) leave the performance and fairness windows
    exactly as update() of each in order: counts, scores and log loss in order, groups first seen."""
    from tripwire.detectors.fairness import FairnessWindow
    from tripwire.detectors.performance import ClassificationWindow

    if named_groups:  # every group a string (FairnessWindow.update_many counts those in C)
        outcomes = [(prediction, label, score, str(group)) for prediction, label, score, group in outcomes]

    single, column = ClassificationWindow(positive), ClassificationWindow(positive)
    fair_single, fair_column = FairnessWindow(positive), FairnessWindow(positive)
    single.update(1, 0, 0.25)  # windows holding some state already
    column.update(1, 0, 0.25)
    for prediction, label, score, group in outcomes:
        single.update(prediction, label, score)
        if group is not None:
            fair_single.update(str(group), prediction, label)
    predictions, labels, scores, groups = (list(c) for c in zip(*outcomes)) if outcomes else ([], [], [], [])
    column.update_many(predictions, labels, scores)
    fair_column.update_many(groups, predictions, labels)
    assert orjson.dumps(column.to_dict()) == orjson.dumps(single.to_dict())
    assert list(fair_column.to_dict()["groups"].items()) == list(fair_single.to_dict()["groups"].items())
    for bad in (1.5, -0.5, math.nan, 1):  # (an int is no probability here: update_many takes admitted floats)
        with pytest.raises(ValueError):
            column.update_many([1, 0], [1, 1], [0.5, bad])
    assert orjson.dumps(column.to_dict()) == orjson.dumps(single.to_dict())  # refused before any change


def test_label_join_at_its_bound_in_long_runs(demo_stream, demo_references):
    """Long runs of one model whose labels reach for the oldest predictions of a label join at its
    bound (some evicted just before), close performance windows and judge unmatched labels inside
    the run: alerts, window records and state exactly as one by one."""
    rng = random.Random(11)
    objects = []
    for record in demo_stream[0]:
        raw = record if isinstance(record, bytes) else record.encode()
        if b'"model":"credit"' in raw:
            try:
                objects.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                continue
    objects = [o for o in objects if isinstance(o, dict) and isinstance(o.get("request_id"), str)]
    labels = {o["request_id"]: o for o in objects if o.get("type") == "label"}
    records: list[bytes] = []
    due: list[tuple[int, int, dict]] = []  # (after which prediction, tie-break, label)
    for index, prediction in enumerate(o for o in objects if o.get("type") == "prediction"):
        records.append(orjson.dumps(prediction))
        label = labels.get(prediction["request_id"])
        if label is not None:
            due.append((index + rng.choice([0, 1, 3, 7, 148, 150, 151, 153, 190]), 2 * index, label))
            due.sort()
        if rng.random() < 0.12:  # a label no prediction ever meets
            due.append((index, 2 * index + 1, {**(label or next(iter(labels.values()))), "request_id": f"lost-{index}"}))
        while due and due[0][0] <= index:
            records.append(orjson.dumps({**due.pop(0)[2], "ts": prediction["ts"]}))
    config = demo.demo_config()
    config["defaults"] = {"performance_window": 37, "min_samples": 20, "label_join_max_pending": 150,
                          "label_ttl_seconds": 30}

    def run(batch_size: int) -> tuple:
        outcome, engine = fed(config, demo_references, records, batch_size)
        return (*outcome, engine.bookkeeping())

    expected = run(1)
    assert len(expected[0][0]) > 5 and len(expected[1]) > 300
    assert expected[3]["join_evicted"] > 1000 and b"unmatched_label_rate" in b"".join(expected[0][0])
    for size in (1000, 4096):
        assert run(size)[:3] == expected[:3]


ADMITTED_VALUES = [0, 1, 1.0, True, "1", " 0 ", "true", 2, "billing", "account", 7.5, None, [1]]


@pytest.mark.parametrize("seed", range(4))
def test_runs_admitted_at_once_equal_one_by_one(demo_references, seed):
    """Admission of each model's events at once (class spellings, regression numbers, the event clock
    with its late, far and jumping records) gives each event and rejection that Engine.admit one by
    one gives, the models' events interleaved."""
    from tripwire.batch import admit_model
    from tripwire.events import Features, Label, Prediction, Rejection

    rng = random.Random(seed)
    kinds = ["prediction", "label", "label", "features", "rejection"]
    models = ["credit"] * 4 + ["fuel-efficiency"] * 2 + ["triage", "other"]  # mostly runs of one model
    steps = [1.0] * 20 + [0.0, -30.0, 5000.0]  # mostly a steady clock
    # now and then a record off the clock: late, far ahead, outside the years 1-9999
    strays = [0.0] * 12 + [-4000.0, -90_000.0, 90_000.0, 9e12, -9e12]
    plan = [(rng.choice(kinds), rng.choice(models), rng.choice(ADMITTED_VALUES), rng.choice(steps),
             rng.choice(strays), rng.choice([None, 0.25, 7])) for _ in range(3000)]

    def events() -> list:
        made: list = []
        clock = 1_795_824_000.0
        for index, (kind, model, value, step, stray, score) in enumerate(plan):
            clock += step
            ts = clock + stray
            if kind == "prediction":
                made.append(Prediction(f"r{index}", model, None, ts, {}, value, score, None, None, {}))
            elif kind == "label":
                made.append(Label(f"r{index}", model, ts, value))
            elif kind == "features":
                made.append(Features(f"r{index}", model, ts, {}))
            else:
                made.append(Rejection("broken", model))
        return made

    single, batched = demo_engine(demo_references), demo_engine(demo_references)
    expected = [single.admit(event) for event in events()]
    made = events()
    admitted = list(made)  # (rejections stay as they are)
    by_model: dict[str, list[int]] = {}
    for index, event in enumerate(made):
        if type(event) is not Rejection:
            by_model.setdefault(event.model, []).append(index)
    for model, positions in by_model.items():
        for index, event in zip(positions, admit_model(batched, model, [made[i] for i in positions])):
            admitted[index] = event
    assert repr(admitted) == repr(expected)
    assert [m.clock.to_dict() for m in batched.monitors.values()] == [m.clock.to_dict() for m in single.monitors.values()]


@pytest.mark.parametrize("window_seconds", [0, 20])
def test_one_model_of_feature_rows_in_long_stretches(demo_stream, demo_references, window_seconds):
    """One model's predictions (features decoded as FeatureRows) in long stretches with no label
    between them: stretches that cross a time window's end, hold a late record or repeat a request
    id, and labels now and then; alerts, window records and state exactly as one by one."""
    rng = random.Random(3)
    objects = [orjson.loads(r) for r in demo_stream[0][:20_000] if b'"model":"credit"' in r]
    predictions = [o for o in objects if o["type"] == "prediction"]
    labels = {o["request_id"]: o for o in objects if o["type"] == "label"}
    records: list[bytes] = []
    for index, prediction in enumerate(predictions):
        roll = rng.random()
        if roll < 0.01 and index > 50:  # late: before the open window's start
            prediction = {**prediction, "ts": predictions[index - 50]["ts"]}
        elif roll < 0.02 and index > 50:  # a request id again
            prediction = {**prediction, "request_id": predictions[index - rng.randrange(1, 50)]["request_id"]}
        records.append(orjson.dumps(prediction))
        if rng.random() < 0.02 and prediction["request_id"] in labels:
            records.append(orjson.dumps(labels[prediction["request_id"]]))
    config = demo.demo_config()
    config["models"] = [model for model in config["models"] if model["name"] == "credit"]  # (its FeatureRows)
    config["defaults"] = {**config.get("defaults", {}), "window_seconds": window_seconds,
                          "window_events": 300}

    def run(batch_size: int) -> tuple:
        return fed(config, demo_references, records, batch_size)[0]

    names = {"credit": Engine(parse_config(config), references=demo_references).monitors["credit"].feature_row_names()}
    assert sum(isinstance(getattr(item, "features", None), FeatureRow) for item in decode_batch(records, names)) > 1000
    expected = run(1)
    assert len(expected[1]) > 10 and len(expected[0][1]) > 20  # windows closed; repeated ids refused
    assert run(4096) == expected and run(333) == expected
    # A checkpoint in the middle of a window (its rows FeatureRows), restored in a new engine.
    windows: list[bytes] = []
    first = Engine(parse_config(config), references=demo_references,
                   on_window=lambda window: windows.append(orjson.dumps(window)))
    middle = len(records) // 2 + 37
    head = in_batches(first, records, [*range(0, middle, 1000), middle])
    assert any(isinstance(row, FeatureRow) for row in first.monitors["credit"]._rows)
    single = Engine(parse_config(config), references=demo_references)
    one_at_a_time(single, records[:middle])
    assert orjson.dumps(first.state()) == orjson.dumps(single.state())  # (the rows as decode()'s dicts)
    restored = Engine(parse_config(config), references=demo_references,
                      on_window=lambda window: windows.append(orjson.dumps(window)))
    restored.restore(orjson.loads(orjson.dumps(first.state())))
    tail = in_batches(restored, records, [*range(middle, len(records), 1000), len(records)])
    assert ((head[0] + tail[0], head[1] + tail[1]), windows, orjson.dumps(restored.state())) == expected


def normalized(item: object) -> str:
    """An item's repr with a FeatureRow as the dict it stands for."""
    if type(item) is Prediction and isinstance(item.features, FeatureRow):
        return repr(msgspec.structs.replace(item, features=item.features.as_dict()))
    return repr(item)


CREDIT_NAMES = ("income", "age", "purpose")
FEATURE_OBJECTS = [  # the features of PREDICTION, then records that fit CREDIT_NAMES or do not
    b'{"purpose":"car","income":41000.0,"age":37}', b'{"income":1,"income":2,"age":3,"purpose":"x"}',
    b'{"\\u0069ncome":1,"age":3,"purpose":"\\u00e9"}', b'{"income":1,"age":3}', b'{}', b'null', b'[]',
    b'{"income":1,"age":3,"purpose":"x","extra":null}', b'{"income":1,"age":3,"purpose":"x","record":2}',
    b'{"income":1,"age":3,"purpose":"x","record":[2]}', b'{"income":[1],"age":3,"purpose":"x"}',
    b'{"income":123456789012345678901234567890,"age":3,"purpose":"x"}', b'{"income":1e999,"age":3,"purpose":"x"}',
    b'{"income":-0.0,"age":true,"purpose":null}', b'{ "income" : 1 , "age" : 3 , "purpose" : "x" }',
]


def test_decode_batch_by_feature_names_equals_decode(demo_stream, demo_references):
    """decode_batch given one set of feature names: a prediction whose features are exactly the
    names is a FeatureRow equal to decode()'s dict, key order and all, and its columns are the
    values by name; every other item is decode()'s, alone or in a batch."""
    base = orjson.dumps(PREDICTION)
    odd = [base.replace(orjson.dumps(PREDICTION["features"]), objects) for objects in FEATURE_OBJECTS]
    names = {"credit": CREDIT_NAMES, "fuel-efficiency": None}
    fitting = []
    for record in [*odd, *ODD_RECORDS, *(record.decode() for record in odd[:3])]:
        (item,), expected = decode_batch([record], names), decode(record)
        assert normalized(item) == repr(expected)
        fitting.append(isinstance(getattr(item, "features", None), FeatureRow))
        if fitting[-1]:
            assert type(item) is Prediction and type(expected) is Prediction and isinstance(item.features, FeatureRow)
            assert list(item.features.as_dict().items()) == list(expected.features.items())  # (in order)
            assert item.features == expected.features and expected.features == item.features
            assert msgspec.structs.astuple(item.features)[:len(CREDIT_NAMES)] == tuple(
                expected.features[name] for name in CREDIT_NAMES)
    assert fitting[:len(odd)] == [True, True, True, False, False, False, False, False, True, False, False, False,
                                  False, True, True]
    assert sum(fitting) > 10
    # A batch: FeatureRows up to the first group of records with one that does not fit, dicts after it.
    engine = demo_engine(demo_references)
    credit = [r for r in demo_stream[0][:20_000] if b'"model":"credit"' in r]
    names = {"credit": engine.monitors["credit"].feature_row_names()}
    records = credit + odd + ODD_RECORDS + credit[:500]
    batched = decode_batch(records, names)
    assert [normalized(item) for item in batched] == [repr(decode(record)) for record in records]
    rows = [isinstance(getattr(item, "features", None), FeatureRow) for item in batched]
    assert sum(rows[:len(credit)]) > 2000 and not any(rows[len(credit) + 64:])
