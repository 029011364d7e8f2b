"""The label join: labels before predictions, TTL expiry in event time, the bound, duplicate request_ids."""

from __future__ import annotations

import orjson
import pytest

from tests.test_event_time import T0, engine_for, feed, label, one_by_one, prediction
from tripwire.join import LabelJoin
from tripwire.replay import run_records
from tripwire.streams.metrics import WorkerMetrics


def test_a_label_that_comes_first_waits_for_its_prediction():
    join = LabelJoin(ttl_seconds=100, max_pending=10)
    assert join.add_label("r", T0 + 50, 1) is None
    outcome = join.add_prediction("r", T0, 0, 0.3, {"group": "A"})
    assert (outcome.prediction, outcome.label, outcome.score, outcome.label_lag) == (0, 1, 0.3, 50)
    assert join.pending == 0 and join.joined == 1


def test_what_waits_longer_than_the_ttl_expires_and_is_counted():
    join = LabelJoin(ttl_seconds=100, max_pending=10)
    for i in range(5):
        join.add_prediction(f"p{i}", T0 + i * 30, i, None, {})
    join.add_label("orphan", T0 + 10, 1)
    join.expire(T0 + 165)  # the horizon is T0 + 65: p0, p1, p2 (at 0, 30, 60) and the label (at 10) go
    assert (join.expired_predictions, join.expired_labels, join.pending) == (3, 1, 2)
    assert join.add_label("p1", T0 + 170, 1) is None  # too late for its prediction: it waits itself
    assert join.add_label("p3", T0 + 170, 1).prediction == 3


def test_the_oldest_pending_prediction_is_evicted_past_the_bound():
    join = LabelJoin(ttl_seconds=10**9, max_pending=3)
    for i in range(5):
        join.add_prediction(f"p{i}", T0 + i, i, None, {})
    assert join.evicted_predictions == 2 and join.pending == 3
    assert join.add_label("p0", T0 + 9, 0) is None  # evicted: its label finds nothing
    assert join.add_label("p2", T0 + 9, 2).prediction == 2
    for i in range(5):
        join.add_label(f"l{i}", T0 + 10 + i, 1)
    assert join.evicted_labels == 3 and join.evicted == 5  # p0's label and l0, l1 went


def test_the_bulk_path_evicts_like_one_at_a_time(demo_references):
    records = [prediction(f"r{i}", T0 + i * 0.01) for i in range(5000)]
    batched, single = engine_for(demo_references, label_join_max_pending=700), engine_for(demo_references,
                                                                                          label_join_max_pending=700)
    feed(batched, records)
    one_by_one(single, records)
    assert batched.bookkeeping() == single.bookkeeping()
    assert batched.bookkeeping()["join_evicted"] == 4300 and batched.bookkeeping()["join_pending"] == 700
    assert orjson.dumps(batched.state()) == orjson.dumps(single.state())


def test_a_reused_request_id_never_joins_the_wrong_label(demo_references):
    """Was: a second prediction with the id of a waiting one replaced it, so the label scored the wrong one."""
    engine = engine_for(demo_references)
    records = [prediction("r", T0, value=20.0), prediction("r", T0 + 1, value=99.0), label("r", T0 + 2, value=20.0),
               label("r", T0 + 3, value=50.0), prediction("r", T0 + 4, value=50.0),
               label("q", T0 + 5, value=1.0), label("q", T0 + 6, value=2.0)]
    _alerts, rejections = feed(engine, records)
    assert rejections == [
        (1, "duplicate request_id 'r': a prediction for it is already waiting for its label"),
        (3, "duplicate request_id 'r': it is already labelled"),
        (4, "duplicate request_id 'r': it was already predicted and labelled"),
        (6, "duplicate request_id 'q': a label for it is already waiting for its prediction"),
    ]
    monitor = engine.monitors["fuel-efficiency"]
    assert monitor.performance.result()["mae"] == 0.0 and engine.bookkeeping()["duplicates"] == 4
    assert one_by_one(engine_for(demo_references), records)[1] == rejections


def test_a_request_id_repeated_inside_one_batch_of_predictions_is_refused(demo_references):
    """The column-wise batch path sees the repeat too (the second of two predictions that only wait)."""
    records = [prediction(f"r{i}", T0 + i) for i in range(200)]
    records[150] = prediction("r20", T0 + 150, value=1.0)
    _alerts, rejections = feed(engine_for(demo_references), records)
    assert rejections == [(150, "duplicate request_id 'r20': a prediction for it is already waiting for its label")]


def test_a_joined_request_id_is_forgotten_after_the_ttl(demo_references):
    engine = engine_for(demo_references, label_ttl_seconds=60)
    records = [prediction("r", T0), label("r", T0 + 1)] + [prediction(f"x{i}", T0 + 100 + i * 0.01)
                                                            for i in range(2048)]
    records += [prediction("r", T0 + 200), label("r", T0 + 201, value=30.0)]
    _alerts, rejections = feed(engine, records)
    assert rejections == []  # a new request with an id last used beyond the TTL


def test_evictions_and_duplicates_reach_the_summary_the_windows_and_metrics(demo_references):
    metrics, windows = WorkerMetrics(), []

    def on_window(window):
        windows.append(window)
        metrics.observe_window(window)

    engine = engine_for(demo_references, on_window=on_window, label_join_max_pending=100, window_events=500)
    records = [prediction(f"r{i}", T0 + i * 0.1) for i in range(1000)] + [prediction("r999", T0 + 100)]
    summary = run_records(engine, records, lambda *_: None, lambda *_: None, batch_records=333)
    assert summary.bookkeeping["join_evicted"] == 900 and summary.bookkeeping["duplicates"] == 1
    assert "label join: pending 100  evicted 900  duplicate request_ids 1" in summary.render()
    data = [w["stats"] for w in windows if w["family"] == "data"]
    assert [(s["join_evicted"], s["request_ids_duplicate"], s["labels_pending"]) for s in data] == [(400, 0, 100),
                                                                                                    (500, 0, 100)]
    text = metrics.render().decode()
    assert 'tripwire_join_evicted_total{model="fuel-efficiency"} 900.0' in text


@pytest.mark.parametrize("legacy", [False, True])
def test_the_join_survives_a_checkpoint_and_one_from_before_the_bound(demo_references, legacy):
    engine = engine_for(demo_references)
    feed(engine, [prediction("a", T0), prediction("d", T0 + 1), prediction("b", T0 + 1), label("b", T0 + 2)])
    state = orjson.loads(orjson.dumps(engine.state()))
    if legacy:  # the form of a checkpoint written before the bound, the duplicate rule and the clock
        model = state["models"]["fuel-efficiency"]
        del model["clock"], model["join_counts_shown"], model["join"]["joined"], model["join"]["max_pending"]
        model["join"]["counts"] = model["join"]["counts"][:3]
        for side in ("predictions", "labels"):  # and its entries flat: [request id, *values]
            model["join"][side] = [[request_id, *values] for request_id, values in model["join"][side]]
    restored = engine_for(demo_references, label_join_max_pending=1)
    restored.restore(state)
    join = restored.monitors["fuel-efficiency"].join
    assert (join.pending, join.evicted) == (1, 1)  # the new, smaller bound applies: "a" went (the oldest)
    _alerts, rejections = feed(restored, [label("b", T0 + 4)])
    assert rejections == ([] if legacy else [(0, "duplicate request_id 'b': it is already labelled")])
