"""Event time: late, out-of-order, far-future and unwritable times; outcomes a model cannot score.

The cases of issue #11 that crashed or went silently wrong, each fed to the engine the way
``tripwire replay`` and the worker feed it (``Engine.process_records``), and checked one record at
a time (``Engine.step``) too.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from tripwire.cli import main
from tripwire.config import ConfigError, parse_config
from tripwire.engine import Engine
from tripwire.events import Rejection, decode, format_ts
from tripwire.streams.partition import PartitionRunner

T0 = datetime(2026, 11, 28, tzinfo=UTC).timestamp()
FEATURES = {"cylinders": 4, "displacement": 150.0, "horsepower": 95.0, "weight": 2800.0, "acceleration": 16.0,
            "model_year": 76, "origin": "USA"}


def engine_for(references: dict, model: str = "fuel-efficiency", on_window=None, **settings) -> Engine:
    config = {"models": [{"name": model, "reference": f"demo:{model}", **settings}],
              "monitor": {"rejection_window": 10**9}}
    return Engine(parse_config(config), references=references, on_window=on_window)


def prediction(request_id: str, ts: float | str, value=24.0, model: str = "fuel-efficiency", **extra) -> bytes:
    stamp = ts if isinstance(ts, str) else format_ts(ts)
    return orjson.dumps({"type": "prediction", "schema": 1, "request_id": request_id, "model": model, "ts": stamp,
                         "features": FEATURES, "prediction": value, "latency_ms": 10.0, **extra})


def label(request_id: str, ts: float, value=24.0, model: str = "fuel-efficiency") -> bytes:
    return orjson.dumps({"type": "label", "schema": 1, "request_id": request_id, "model": model,
                         "ts": format_ts(ts), "label": value})


def feed(engine: Engine, records: list[bytes]) -> tuple[list[dict], list[tuple[int, str]]]:
    result = engine.process_records(records)
    assert result.events + len(result.rejections) == len(records)
    return result.alerts, [(index, rejection.reason) for index, rejection in result.rejections]


def one_by_one(engine: Engine, records: list[bytes]) -> tuple[list[dict], list[tuple[int, str]]]:
    alerts, rejections = [], []
    for index, record in enumerate(records):
        raised, rejection = engine.step(decode(record))
        alerts += raised
        if rejection is not None:
            rejections.append((index, rejection.reason))
    return alerts, rejections


def test_a_late_record_closing_a_count_window_is_in_the_window(demo_references):
    """Was: ValueError: ts_first (...) is after ts_last (...) from the serving window."""
    windows = []
    engine = engine_for(demo_references, on_window=windows.append, window_events=10)
    records = [prediction(f"r{i}", T0 + i) for i in range(9)] + [prediction("late", T0 - 1800)]
    _alerts, rejections = feed(engine, records)
    assert rejections == []
    data = [w for w in windows if w["family"] == "data"]
    assert [(w["n"], w["start"], w["end"]) for w in data] == [(10, T0, T0 + 8)]


@pytest.mark.parametrize("late_by", [1, 59, 1800, 3500])
def test_a_late_record_with_time_windows_joins_the_open_window(demo_references, late_by):
    windows = []
    engine = engine_for(demo_references, on_window=windows.append, window_seconds=60, window_events=10**6)
    records = [prediction(f"r{i}", T0 + 60 + i) for i in range(30)]  # window [T0+60, T0+120)
    records += [prediction("late", T0 + 60 - late_by)] + [prediction(f"s{i}", T0 + 120 + i) for i in range(3)]
    _alerts, rejections = feed(engine, records)
    assert rejections == []
    first = [w for w in windows if w["family"] == "data"][0]
    assert (first["n"], first["start"], first["end"]) == (31, T0 + 60, T0 + 89)


def test_a_record_later_than_the_allowed_lateness_is_dead_lettered_with_how_late(demo_references):
    engine = engine_for(demo_references, allowed_lateness_seconds=600)
    records = [prediction("a", T0 + 5000), prediction("b", T0 + 4400), prediction("c", T0 + 4399),
               prediction("d", T0 + 5001)]
    _alerts, rejections = feed(engine, records)
    assert rejections == [(2, "late: ts 2026-11-28T01:13:19.000Z is 601 s behind the event time of model "
                              "'fuel-efficiency' (2026-11-28T01:23:20.000Z; allowed_lateness_seconds = 600)")]
    assert engine.bookkeeping()["late"] == 1


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.9999Z", "0001-01-01T00:00:00+01:00"])
def test_an_unwritable_time_on_the_record_that_closes_a_window_is_refused(demo_references, stamp):
    """Was: year 10000 is out of range, when the alert or window of that record was written."""
    engine = engine_for(demo_references, window_events=10)
    records = [prediction(f"r{i}", T0 + i) for i in range(9)] + [prediction("odd", stamp), prediction("r9", T0 + 9)]
    alerts, rejections = feed(engine, records)
    assert [index for index, _reason in rejections] == [9]
    assert "outside the years 1-9999 in UTC" in rejections[0][1]
    assert engine.monitors["fuel-efficiency"].window_index == 1


@pytest.mark.parametrize("stamp", ["1970-01-01T00:00:00Z", "9999-06-01T00:00:00Z", "2027-11-28T00:00:00Z"])
def test_one_stray_time_is_refused_and_the_stream_goes_on(demo_references, stamp):
    engine = engine_for(demo_references, window_seconds=60, window_events=10**6)
    records = [prediction(f"r{i}", T0 + i * 10) for i in range(20)]
    records.insert(10, prediction("stray", stamp))
    _alerts, rejections = feed(engine, records)
    assert [index for index, _reason in rejections] == [10]
    assert rejections[0][1].startswith("late: " if stamp < "2026" else "far future: ")
    assert engine.monitors["fuel-efficiency"].clock.now == T0 + 190


def test_a_far_future_record_at_the_expiry_tick_expires_nothing(demo_references):
    """Was: one far-future record at the label-expiry tick expired every pending prediction."""
    engine = engine_for(demo_references, window_events=10**6)
    join = engine.monitors["fuel-efficiency"].join
    records = [prediction(f"r{i}", T0 + i) for i in range(3000)]
    for i in range(2000):  # a far-future record at every expiry tick; none moves the clock (never two in a row)
        records += [prediction(f"future{i}", T0 + 365 * 86400), prediction(f"s{i}", T0 + 3000 + i)]
    _alerts, rejections = feed(engine, records)
    assert len(rejections) == 2000 and join.expired_predictions == 0 and join.pending == 5000


def test_two_far_records_in_a_row_move_the_clock(demo_references):
    """Traffic that resumes after a long gap loses one record, not all; so does a wrong first record."""
    engine = engine_for(demo_references, max_future_seconds=3600)
    records = [prediction("a", T0), prediction("b", T0 + 86400), prediction("c", T0 + 86401),
               prediction("d", T0 + 86402)]
    _alerts, rejections = feed(engine, records)
    assert [index for index, _reason in rejections] == [1]
    assert engine.monitors["fuel-efficiency"].clock.now == T0 + 86402

    wrong_first = engine_for(demo_references)
    records = [prediction("z", T0 + 30 * 86400)] + [prediction(f"r{i}", T0 + i) for i in range(5)]
    _alerts, rejections = feed(wrong_first, records)
    assert [index for index, reason in rejections] == [1] and rejections[0][1].startswith("late: ")
    assert wrong_first.bookkeeping()["clock_jumps"] == 1 and wrong_first.monitors["fuel-efficiency"].clock.now == T0 + 4


def test_time_refusals_are_the_same_in_batches_one_by_one_and_in_the_worker(demo_references):
    records = [prediction(f"r{i}", T0 + i * 7) for i in range(50)]
    records[7] = prediction("late", T0 - 7200)
    records[20] = prediction("future", T0 + 10**8)
    records[30] = records[29]  # a duplicate request_id
    records[40] = prediction("text", T0 + 280, value="24.0")
    batched = feed(engine_for(demo_references), records)
    single = one_by_one(engine_for(demo_references), records)
    runner = PartitionRunner(0, "tripwire.events", engine_for(demo_references))
    output = runner.process(list(range(len(records))), records)
    worker = [(orjson.loads(line)["offset"], orjson.loads(line)["reason"]) for _key, line in output.deadletters]
    assert batched == single and [(i, r) for i, r in batched[1]] == worker
    assert [index for index, _reason in worker] == [7, 20, 30, 40]


def test_a_string_outcome_of_a_regression_model_is_refused_not_scored(demo_references):
    """Was: MAE None for every later window, and a false concept-drift alert (the outcome scored as error 0)."""
    engine = engine_for(demo_references, performance_window=10)
    records = [prediction("s", T0, value="24.0"), prediction("b", T0 + 1, value=True), prediction("ok", T0 + 2),
               label("ok", T0 + 3, value="24"), label("ok", T0 + 4, value=25.0)]
    _alerts, rejections = feed(engine, records)
    assert [index for index, _reason in rejections] == [0, 1, 3]
    assert rejections[0][1].startswith("prediction '24.0' of regression model 'fuel-efficiency' is not a number")
    assert rejections[2][1].startswith("label '24' of regression model 'fuel-efficiency' is not a number")
    assert engine.monitors["fuel-efficiency"].performance.result()["mae"] == 1.0


def test_a_class_sent_as_a_string_and_as_a_number_is_one_class(demo_references):
    """Prediction "1" against label 1 is a hit (multi-class work: one canonical form per model)."""
    engine = engine_for(demo_references, model="credit", performance_window=10**6)
    records = []
    for i in range(40):
        records.append(prediction(f"c{i}", T0 + i, value="1" if i % 2 else 1, model="credit", score=0.8))
        records.append(label(f"c{i}", T0 + i + 0.5, value=1 if i % 2 else "1", model="credit"))
    _alerts, rejections = feed(engine, records)
    assert rejections == []
    assert engine.monitors["credit"].performance.result()["accuracy"] == 1.0


@pytest.mark.parametrize("key,value", [
    ("allowed_lateness_seconds", -1), ("allowed_lateness_seconds", float("nan")), ("allowed_lateness_seconds", "1h"),
    ("max_future_seconds", 0), ("max_future_seconds", float("inf")), ("label_join_max_pending", 0),
    ("label_join_max_pending", 1.5), ("window_seconds", float("nan")), ("label_ttl_seconds", float("inf")),
])
def test_nonsense_time_settings_stop_with_the_key_named(key, value):
    with pytest.raises(ConfigError, match=f"models\\[0\\].{key} must be"):
        parse_config({"models": [{"name": "m", "reference": "r.json", key: value}]})


def test_nonsense_time_setting_exits_2_before_any_work(tmp_path, capsys):
    config = tmp_path / "monitor.toml"
    config.write_text('[defaults]\nmax_future_seconds = -5\n\n[[models]]\nname = "m"\nreference = "r.json"\n')
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"")
    assert main(["replay", str(events), "--config", str(config), "--out", str(tmp_path / "alerts.jsonl")]) == 2
    assert "max_future_seconds must be a number > 0" in capsys.readouterr().err
    assert not (tmp_path / "alerts.jsonl").exists()


def test_a_time_window_of_year_1_is_written_from_year_1(demo_references):
    windows = []
    engine = engine_for(demo_references, on_window=windows.append, window_seconds=7, window_events=3, min_samples=1)
    records = [prediction(f"r{i}", f"0001-01-01T00:00:0{i}Z") for i in range(4)]
    alerts, rejections = feed(engine, records)
    assert rejections == [] and format_ts(windows[0]["start"]) == "0001-01-01T00:00:00.000Z"
    assert all(alert["window"]["start"].startswith("0001-01-01") for alert in alerts)



def test_replay_of_the_issue_stream_runs_to_its_summary(tmp_path, demo_stream, demo_references, capsys):
    """Issue #11: an hours-late record and one dated 9999-12-31T23:59:59-01:00, with ``window_seconds``
    set, stopped ``tripwire replay`` with a traceback; now both are dead letters with their reasons and
    every model alert is the clean stream's."""
    from tests.test_cli import write_demo_files

    clean = [r for r in demo_stream[0][:20000] if type(decode(r)) is not Rejection]
    late = prediction("hours-late", T0 - 5 * 3600, value=1, model="credit", score=0.5, attributes={"group": "A"})
    unwritable = prediction("year-10000", "9999-12-31T23:59:59-01:00", value=0, model="credit", score=0.5)
    dirty = clean[:8000] + [late] + clean[8000:15000] + [unwritable] + clean[15000:]
    alerts = {}
    for name, stream in (("clean", clean), ("dirty", dirty)):
        (tmp_path / name).mkdir()
        config, events = write_demo_files(tmp_path / name, stream, demo_references)
        config.write_text(config.read_text().replace("[defaults]\n", "[defaults]\nwindow_seconds = 30\n"))
        out = tmp_path / name / "alerts.jsonl"
        assert main(["replay", str(events), "--config", str(config), "--out", str(out)]) == 0
        alerts[name] = [{**a, "reference": None} for a in map(orjson.loads, out.read_bytes().splitlines())
                        if a["model"] != "*"]  # (the reference's path names the run's folder)
    assert alerts["clean"] and alerts["dirty"] == alerts["clean"]
    dead = [orjson.loads(line) for line in (tmp_path / "dirty" / "alerts.deadletter.jsonl").read_bytes().splitlines()]
    assert [entry["line"] for entry in dead] == [8001, 15002]
    assert dead[0]["reason"].startswith("late: ts 2026-11-27T19:00:00.000Z is ")
    assert dead[1]["reason"].startswith("field 'ts' is outside the years 1-9999 in UTC")
    assert "event time: late 1  far future 1" in capsys.readouterr().out
