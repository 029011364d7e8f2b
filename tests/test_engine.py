"""The engine end to end on the demo stream: incidents caught, nothing early, deterministic, checkpointable."""

import orjson

from tripwire import demo
from tripwire.alerts import encode_alert
from tripwire.config import parse_config
from tripwire.engine import Engine
from tripwire.events import Rejection, decode
from tripwire.replay import run_records


def run(stream, references, engine=None):
    engine = engine or Engine(parse_config(demo.demo_config()), references=references)
    alerts = []
    run_records(engine, stream, lambda alert, index: alerts.append((index, alert)), lambda *_: None)
    return alerts, engine


def test_demo_catches_every_incident_and_nothing_before(demo_stream, demo_references):
    stream, first_index = demo_stream
    alerts, engine = run(stream, demo_references)
    caught, early = demo.score_incidents(alerts, first_index)
    assert early == 0
    assert [row.incident.name for row in caught if row.alert is None] == []
    assert engine.rejected == 300


def test_alerts_follow_the_lifecycle(demo_stream, demo_references):
    alerts, _ = run(demo_stream[0], demo_references)
    open_incidents = {}
    for _index, alert in alerts:
        key = (alert["model"], alert["signal"], alert["detector"])
        if alert["status"] == "firing":
            if key in open_incidents:  # only an escalation may fire again, within the same incident
                assert alert["severity"] == "critical" and alert["incident_id"] == open_incidents[key], key
            open_incidents[key] = alert["incident_id"]
        else:
            assert open_incidents.pop(key) == alert["incident_id"]
    ids = [a["alert_id"] for _i, a in alerts]
    assert len(ids) == len(set(ids))


def test_same_events_give_byte_identical_alerts(demo_stream, demo_references):
    first, _ = run(demo_stream[0], demo_references)
    second, _ = run(demo_stream[0], demo_references)
    assert b"".join(encode_alert(a) for _i, a in first) == b"".join(encode_alert(a) for _i, a in second)


def test_checkpoint_restore_mid_stream_continues_identically(demo_stream, demo_references):
    stream = demo_stream[0]
    whole, _ = run(stream, demo_references)
    half = len(stream) // 2 + 123
    head, engine = run(stream[:half], demo_references)
    state = orjson.loads(orjson.dumps(engine.state()))
    restored = Engine(parse_config(demo.demo_config()), references=demo_references)
    restored.restore(state)
    tail, _ = run(stream[half:], demo_references, engine=restored)
    assert [a for _i, a in head] + [a for _i, a in tail] == [a for _i, a in whole]


def test_malformed_records_are_rejected_with_reasons_and_change_nothing_else(demo_stream, demo_references):
    clean = [r for r in demo_stream[0] if not isinstance(decode(r), Rejection)]
    dirty = []
    for i, record in enumerate(clean):
        dirty.append(record)
        if i % 5000 == 17:
            dirty += [b"{broken", b'{"type":"label","schema":1}', b"\x00\xff"]
    rejected = []
    engine = Engine(parse_config({**demo.demo_config(), "monitor": {"rejection_window": 10**9}}),
                    references=demo_references)
    alerts = []
    run_records(engine, dirty, lambda a, i: alerts.append(a), lambda rej, i, rec: rejected.append((i, rej.reason)))
    reference_alerts, _ = run(clean, demo_references,
                              Engine(parse_config({**demo.demo_config(), "monitor": {"rejection_window": 10**9}}),
                                     references=demo_references))
    assert len(rejected) == 3 * len(range(17, len(clean), 5000))
    assert all(reason for _i, reason in rejected)
    assert alerts == [a for _i, a in reference_alerts]


def test_odd_but_valid_values_never_stop_the_engine(demo_references):
    engine = Engine(parse_config(demo.demo_config()), references=demo_references)
    base = {"schema": 1, "model": "fuel-efficiency", "ts": "2026-11-28T00:00:00Z"}
    records = [  # (a string or boolean outcome of this regression model is refused: tests/test_event_time.py)
        [{**base, "type": "prediction", "request_id": f"a{i}", "prediction": 21, "features": {"weight": "heavy"}},
         {**base, "type": "label", "request_id": f"a{i}", "label": 20.5},
         {**base, "type": "prediction", "request_id": f"b{i}", "prediction": 20.0, "features": {"origin": 3, "extra": [1]}},
         {**base, "type": "label", "request_id": f"b{i}", "label": 0},
         {**base, "type": "features", "request_id": f"c{i}", "features": {"cylinders": None}}]
        for i in range(400)
    ]
    alerts, engine = run([orjson.dumps(r) for group in records for r in group], demo_references, engine)
    assert engine.events == 2000 and engine.rejected == 0
    assert {a["detector"] for _i, a in alerts} >= {"type_error_rate"}
