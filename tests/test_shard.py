"""A sharded model: per-partition window summaries merged once give the alerts of any partitioning."""

from __future__ import annotations

import random
import zlib

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from tripwire import demo
from tripwire.config import ConfigError, parse_config
from tripwire.detectors.histogram import binned_auc, latency_bin_width, latency_bins, latency_percentiles, score_bins
from tripwire.engine import Engine
from tripwire.events import format_ts
from tripwire.shard.merge import ShardMerger
from tripwire.shard.replay import PartitionedReplay, partition_of, record_key

WINDOW = 120.0


def sharded_config(**extra: object) -> dict:
    return {"defaults": {"window_seconds": WINDOW, "sharded": True, "min_samples": 50, **extra},
            "models": [{"name": "fuel-efficiency", "reference": "demo:fuel-efficiency"},
                       {"name": "credit", "reference": "demo:credit"}]}


@pytest.fixture(scope="module")
def two_models(demo_stream) -> list[bytes]:
    """The demo stream without the multi-class model (not shardable) and its malformed burst."""
    stream, _ = demo_stream
    return [r for r in stream if b'"model":"fuel-efficiency"' in r or b'"model":"credit"' in r]


def run(records: list[bytes], partitions: int, references: dict, config: dict | None = None,
        batch: int = 1000) -> tuple[list[dict], PartitionedReplay, list]:
    replay = PartitionedReplay(parse_config(config or sharded_config()), partitions, references)
    alerts, rejections = [], []
    for start in range(0, len(records), batch):
        raised, rejected = replay.process(records[start:start + batch])
        alerts += raised
        rejections += rejected
    return alerts, replay, rejections


def ids(alerts: list[dict]) -> list[str]:
    """The sharded models' alert ids (the stream-wide rejection rate is judged per partition's records)."""
    return sorted(a["alert_id"] for a in alerts if a["model"] != "*")


@pytest.fixture(scope="module")
def runs(two_models, demo_references) -> dict[int, tuple[list[dict], PartitionedReplay, list]]:
    return {k: run(two_models, k, demo_references) for k in (1, 2, 8)}


def test_the_merged_alerts_do_not_depend_on_the_partitioning(runs):
    one, two, eight = (runs[k][0] for k in (1, 2, 8))
    assert ids(one) == ids(two) == ids(eight)
    # ... and the demo's incidents are caught: drift, latency, fairness and concept drift, all merged.
    kinds = {(a["model"], a["kind"]) for a in eight if a["status"] == "firing"}
    assert {("fuel-efficiency", "data_drift"), ("fuel-efficiency", "infrastructure"), ("credit", "fairness"),
            ("credit", "performance")} <= kinds
    for k, (_alerts, replay, rejections) in runs.items():
        assert len(rejections) == len(runs[1][2]) and replay.merger.duplicates == 0
        assert all(e.events for e in replay.engines), k  # every partition got traffic
    # every window but the last ones (still open on their partitions) was judged
    assert runs[8][1].merger.windows_judged >= 2 * (50 * 60 / WINDOW - 2)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(partitions=st.integers(2, 12), salt=st.binary(min_size=1, max_size=4))
def test_any_partitioning_by_request_id_gives_the_same_alerts(two_models, demo_references, partitions, salt):
    """Not only murmur2: any partitioner that keeps a request's records together gives the same alerts."""
    prefix = two_models[:25000]
    reference = run(prefix, 1, demo_references)[0]
    replay = PartitionedReplay(parse_config(sharded_config()), partitions, demo_references,
                               partitioner=lambda key, n: zlib.crc32(salt + (key or b"")) % n)
    alerts = [a for start in range(0, len(prefix), 1000) for a in replay.process(prefix[start:start + 1000])[0]]
    assert ids(alerts) == ids(reference) != []


def test_merged_values_equal_the_single_partition_values(runs):
    """Counts merge exactly; float sums (errors, expected confusion) to rounding only."""
    by_id = {a["alert_id"]: a for a in runs[1][0]}
    for alert in (a for a in runs[8][0] if a["model"] != "*"):
        twin = by_id[alert["alert_id"]]
        assert alert["value"] == pytest.approx(twin["value"], rel=1e-9, abs=1e-12)
        assert alert["window"] == twin["window"]


def test_summaries_merge_in_any_interleaving_and_duplicates_are_dropped(two_models, demo_references):
    summaries: list[dict] = []
    replay = PartitionedReplay(parse_config(sharded_config()), 8, demo_references)
    alerts_in_order = []
    for start in range(0, len(two_models), 1000):
        alerts, _ = replay.process(two_models[start:start + 1000])
        alerts_in_order += [a for a in alerts if a["model"] != "*"]
    # collect the summaries the partitions emitted, by running the engines again with a tap
    tapped = PartitionedReplay(parse_config(sharded_config()), 8, demo_references)
    for p, engine in enumerate(tapped.engines):
        for monitor in engine.monitors.values():
            monitor.on_summary = lambda s, p=p: summaries.append({**s, "partition": p})
    for start in range(0, len(two_models), 1000):
        tapped.process(two_models[start:start + 1000])
    def per_model(alerts: list[dict]) -> list[bytes]:  # (each model's windows are judged in order; models interleave)
        return [orjson.dumps(a) for a in sorted(alerts, key=lambda a: a["model"])]

    expected = per_model(alerts_in_order)
    by_partition = [[x for x in summaries if x["partition"] == p] for p in range(8)]
    for seed in range(3):
        rng = random.Random(seed)
        queues, repeated = [], 0
        for own in by_partition:  # each partition's summaries in its order; a restart re-emits a stretch of them
            k = rng.randrange(len(own))
            j = rng.randrange(k, len(own))
            queues.append(own[:j + 1] + own[k:j + 1] + own[j + 1:])
            repeated += j + 1 - k
        interleaved = []  # the partitions' summaries interleaved at random, as they reach the summaries topic
        while any(queues):
            interleaved.append(rng.choice([q for q in queues if q]).pop(0))
        merger = ShardMerger(parse_config(sharded_config()), 8, demo_references)
        merged = per_model([a for s in interleaved for a in merger.add(orjson.loads(orjson.dumps(s)))])
        assert merged == expected
        assert merger.duplicates == repeated


def test_a_window_waits_for_every_partition_and_the_checkpoint_resumes(two_models, demo_references):
    config = parse_config(sharded_config())
    merger = ShardMerger(config, 3, demo_references)
    tapped = PartitionedReplay(config, 2, demo_references)  # only partitions 0 and 1 of 3 report
    summaries = []
    for p, engine in enumerate(tapped.engines):
        for monitor in engine.monitors.values():
            monitor.on_summary = lambda s, p=p: summaries.append({**s, "partition": p})
    tapped.process(two_models[:20000])
    assert summaries and all(merger.add(s) == [] for s in summaries)
    assert merger.waiting() > 0 and merger.windows_judged == 0
    # partition 2 reports a watermark past everything: now all complete windows are judged, in order
    late = {**summaries[-1], "partition": 2, "window": summaries[-1]["window"] + 100,
            "watermark": summaries[-1]["watermark"] + 101 * WINDOW}
    restored = ShardMerger(config, 3, demo_references)
    restored.restore(orjson.loads(orjson.dumps(merger.state())))
    assert restored.add(dict(late)) == merger.add(dict(late))
    model = late["model"]
    assert merger.windows_judged > 0 and list(merger.pending[model]) == [late["window"]]  # (the far one waits)
    other = next(name for name in merger.pending if name != model)  # partition 2 never reported it
    assert len(merger.pending[other]) == len({s["window"] for s in summaries if s["model"] == other})


def test_a_record_behind_its_closed_window_is_dead_lettered(demo_references):
    config = parse_config(sharded_config(allowed_lateness_seconds=30, max_future_seconds=600))
    engine = Engine(config, references=demo_references, on_summary=lambda s: None)
    start = demo.START

    def prediction(i: int, ts: float) -> bytes:
        return orjson.dumps({"type": "prediction", "schema": 1, "request_id": f"r{i}", "model": "credit",
                             "ts": format_ts(ts), "prediction": 1, "score": 0.7,
                             "features": {"income": 50000, "debt_ratio": 0.3}})

    records = [prediction(i, start + i) for i in range(300)]  # windows 0, 1 and 2 of 120 s
    records += [prediction(1000, start + 200), prediction(1001, start - 5000), prediction(1002, start - 4999)]
    result = engine.process_records(records)
    reasons = [r.reason for _, r in result.rejections]
    assert [i for i, _ in result.rejections] == [300, 301, 302]
    assert reasons[0].startswith("late: ") and "allowed_lateness_seconds = 30" in reasons[0]  # the clock's
    assert reasons[2].startswith("late: ") and "summarised already" in reasons[2]  # the clock moved back: the window's


def test_histogram_statistics_match_the_exact_ones():
    rng = np.random.default_rng(3)
    labels = rng.random(20000) < 0.3
    scores = np.clip(rng.normal(0.45 + 0.2 * labels, 0.2), 0, 1)
    exact = roc_auc_score(labels, scores)
    assert binned_auc(*score_bins(scores.tolist(), labels.tolist())) == pytest.approx(exact, abs=2e-3)
    latencies = rng.lognormal(np.log(25), 0.6, 50000)
    found = latency_percentiles(latency_bins(latencies), [50.0, 95.0, 99.0])
    for value, q in zip(found, (50, 95, 99)):
        reference = float(np.percentile(latencies, q))
        assert abs(value - reference) <= latency_bin_width(reference)


def test_records_go_where_kafkas_default_partitioner_puts_their_key():
    from aiokafka.partitioner import DefaultPartitioner

    sharded = frozenset({"credit"})
    record = orjson.dumps({"type": "prediction", "model": "credit", "request_id": "abc-17"})
    assert record_key(record, sharded) == b"abc-17"
    assert record_key(orjson.dumps({"model": "triage", "request_id": "x"}), sharded) == b"triage"
    assert partition_of(b"abc-17", 8) == DefaultPartitioner()(b"abc-17", list(range(8)), list(range(8)))


def test_a_sharded_model_needs_event_time_windows():
    with pytest.raises(ConfigError, match=r"sharded = true needs window_seconds > 0"):
        parse_config({"models": [{"name": "m", "reference": "r.json", "sharded": True}]})
    with pytest.raises(ConfigError, match=r"change_streams .*score"):
        parse_config({"models": [{"name": "m", "reference": "r.json", "sharded": True, "window_seconds": 60,
                                  "change_streams": ["error", "score"]}]})


def test_replay_of_a_sharded_model_needs_the_partition_count(tmp_path, demo_references, two_models, capsys):
    from tripwire.cli import main
    from tripwire.reference import save_reference

    save_reference(demo_references["credit"], tmp_path / "credit.json")
    config = tmp_path / "monitor.toml"
    config.write_text('[[models]]\nname = "credit"\nreference = "credit.json"\nsharded = true\nwindow_seconds = 120\n')
    events = tmp_path / "events.jsonl"
    credit = [r for r in two_models if b'"model":"credit"' in r][:6000]
    events.write_bytes(b"".join(r + b"\n" for r in credit))
    out = tmp_path / "alerts.jsonl"
    assert main(["replay", str(events), "--config", str(config), "--out", str(out), "--no-progress"]) == 2
    assert "give --partitions N" in capsys.readouterr().err and not out.exists()
    assert main(["replay", str(events), "--config", str(config), "--out", str(out), "--no-progress",
                 "--partitions", "4"]) == 0
    assert "over 4 partitions: windows merged" in capsys.readouterr().out
    expected, _replay, _rejections = run(credit, 4, demo_references, orjson.loads(orjson.dumps(
        {"models": [{"name": "credit", "reference": "demo:credit", "sharded": True, "window_seconds": 120}]})))
    written = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert written and [{**a, "reference": None} for a in written] == [{**a, "reference": None} for a in expected]


def test_a_partition_folds_the_same_summaries_in_batches_as_one_by_one(two_models, demo_references):
    """The batch path (runs of predictions and labels) leaves a sharded model's windows as record by record does,
    also when a label of the next window comes inside a run of predictions (it closes the window they are in)."""
    credit = Engine(parse_config(sharded_config()), demo_references)
    predictions = [orjson.loads(r) for r in two_models if b'"type":"prediction"' in r and b'"model":"credit"' in r
                   and not credit.process_records([r]).rejections][:300]  # well-formed ones only
    base = 1_800_000_000.0  # aligned to the 120 s windows
    for i, event in enumerate(predictions):
        event["ts"] = format_ts(base + 1 + i * 0.1)
    label = {"type": "label", "schema": 1, "request_id": predictions[5]["request_id"], "model": "credit",
             "ts": format_ts(base + WINDOW + 10), "label": predictions[5]["prediction"]}
    closing = {**predictions[-1], "request_id": "closing", "ts": format_ts(base + 5 * WINDOW)}
    stream = [orjson.dumps(e) for e in (*predictions[:200], label, *predictions[200:], closing)]

    def summaries(batch: int) -> list[dict]:
        out: list[dict] = []
        engine = Engine(parse_config(sharded_config()), demo_references, on_summary=out.append)
        for start in range(0, len(stream), batch):
            engine.process_records(stream[start:start + batch])
        return out

    by_record, by_batch = summaries(1), summaries(len(stream))
    assert [s["n"] for s in by_record] == [200, 101]  # the label opened the second window; the rest came late
    assert orjson.dumps(by_batch) == orjson.dumps(by_record)
