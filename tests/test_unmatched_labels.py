"""Labels that never meet a prediction: a stream-wide data-quality alert, judged by the engine in event time."""

from __future__ import annotations

import orjson
import pytest

from tripwire import demo
from tripwire.config import parse_config
from tripwire.engine import Engine
from tripwire.events import Label, decode, parse_ts
from tripwire.replay import replay_file, run_records

TTL = 900.0  # longer than the demo's label lag (at most 10 minutes): every label of a clean stream meets its prediction


def engine(references) -> Engine:
    config = demo.demo_config()
    config["defaults"]["label_ttl_seconds"] = TTL
    return Engine(parse_config(config), references=references)


def replay(tmp_path, name: str, records: list[bytes], references) -> list[dict]:
    engine_ = engine(references)
    events = tmp_path / f"{name}.jsonl"
    events.write_bytes(b"\n".join(records) + b"\n")
    replay_file(engine_, events, tmp_path / f"{name}.alerts.jsonl", progress=False)
    return [orjson.loads(line) for line in (tmp_path / f"{name}.alerts.jsonl").read_bytes().splitlines()]


def relabel_credit(record: bytes) -> bytes:
    """A credit label whose request id no prediction carries (a label job with its own ids)."""
    if b'"type":"label"' in record and b'"model":"credit"' in record:
        event = orjson.loads(record)
        event["request_id"] = f"lost-{event['request_id']}"
        return orjson.dumps(event)
    return record


@pytest.fixture(scope="module")
def runs(demo_stream, demo_references, tmp_path_factory):
    folder = tmp_path_factory.mktemp("unmatched")
    stream = demo_stream[0]
    lost = [relabel_credit(r) for r in stream]
    return {"clean": replay(folder, "clean", stream, demo_references),
            "lost": replay(folder, "lost", lost, demo_references), "lost_records": lost}


def label_alerts(alerts: list[dict]) -> list[dict]:
    return [a for a in alerts if a["detector"] == "unmatched_label_rate"]


def test_labels_that_never_meet_a_prediction_raise_one_alert_with_the_evidence(runs):
    [alert] = label_alerts(runs["lost"])  # fires once; the labels stay lost, so it never resolves
    assert (alert["status"], alert["kind"], alert["model"], alert["signal"]) == (
        "firing", "data_quality", "*", "labels:credit")
    assert alert["severity"] == "critical" and alert["value"] == 1.0 and alert["threshold"] == 0.5
    # The evidence against an independent count from the file: by the window's end every lost
    # label older than the TTL has expired, and none of them met a prediction.
    end = parse_ts(alert["window"]["end"])
    labels = [e for e in map(decode, runs["lost_records"]) if type(e) is Label and e.request_id.startswith("lost-")]
    expired = sum(1 for label in labels if label.ts < end - TTL)
    assert alert["evidence"] == {"model": "credit", "labels_unmatched": expired, "labels_joined": 0,
                                 "label_ttl_seconds": TTL}
    assert alert["window"]["n"] == expired >= 100
    assert parse_ts(alert["window"]["start"]) == labels[0].ts


def test_a_clean_stream_raises_no_unmatched_label_alert_and_the_rest_is_unchanged(runs):
    assert label_alerts(runs["clean"]) == []
    # Only the credit model's labels were touched: the other models' alerts are the same bytes.
    others = [[a for a in runs[name] if a["model"] in ("fuel-efficiency", "triage")] for name in ("clean", "lost")]
    assert others[0] == others[1] and others[0]


def test_a_checkpoint_inside_an_unmatched_label_window_continues_identically(runs, demo_references):
    records = runs["lost_records"]
    [alert] = label_alerts(runs["lost"])
    # Cut where the alert's window is open: the restored engine must carry its counts over.
    lost = [i for i, r in enumerate(records) if b'"request_id":"lost-' in r]
    cut = lost[len(lost) // 10]  # about 2,000 lost labels in: after the first checks, before the alert
    assert orjson.loads(records[cut])["ts"] < alert["window"]["end"]
    alerts = []
    first = engine(demo_references)
    run_records(first, records[:cut], lambda a, _i: alerts.append(a), lambda *_: None)
    second = engine(demo_references)
    second.restore(orjson.loads(orjson.dumps(first.state())))
    run_records(second, records[cut:], lambda a, _i: alerts.append(a), lambda *_: None)
    assert alerts == runs["lost"]
