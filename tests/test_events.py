"""The v1 event contract: every way a record can be wrong gives a precise reason, never an exception."""

import orjson
import pytest

from tripwire.events import Features, Label, Prediction, Rejection, decode, format_ts, parse_ts

GOOD = {"type": "prediction", "schema": 1, "request_id": "r-1", "model": "fuel-efficiency", "model_version": "7",
        "ts": "2026-11-28T05:00:00.120Z", "features": {"cylinders": 4, "weight": 2190.0, "origin": "Japan"},
        "prediction": 31.2, "score": None, "latency_ms": 12.4, "attributes": {"region": "EU"}}


def test_prediction_decodes_to_typed_event():
    event = decode(orjson.dumps(GOOD))
    assert isinstance(event, Prediction)
    assert event.ts == pytest.approx(1795842000.12)
    assert event.features["origin"] == "Japan" and event.latency_ms == 12.4 and event.model_version == "7"


def test_features_and_label_events():
    features = decode(b'{"type":"features","schema":1,"request_id":"r","model":"m","ts":"2026-01-01T00:00:00Z","features":{"a":1}}')
    label = decode(b'{"type":"label","schema":1,"request_id":"r","model":"m","ts":"2026-01-01T00:00:00+01:00","label":29.8}')
    assert isinstance(features, Features) and features.features == {"a": 1}
    assert isinstance(label, Label) and label.label == 29.8 and label.ts == 1767222000.0


@pytest.mark.parametrize("record, reason", [
    (b"not json", "not valid JSON"),
    (b'{"type":"prediction"', "not valid JSON"),
    (b"[1, 2]", "event must be a JSON object, got array"),
    (b'{"type":"prediction","prediction":1e999}', "non-finite number"),
    (orjson.dumps({**GOOD, "type": "click"}), "field 'type' must be one of prediction, features, label"),
    (orjson.dumps({**GOOD, "schema": 2}), "unknown schema version 2"),
    (orjson.dumps({**GOOD, "schema": "1"}), "unknown schema version '1'"),
    (orjson.dumps({k: v for k, v in GOOD.items() if k != "request_id"}), "missing field 'request_id'"),
    (orjson.dumps({**GOOD, "model": 3}), "field 'model' must be a non-empty string, got number"),
    (orjson.dumps({**GOOD, "ts": "yesterday"}), "field 'ts' is not an ISO 8601 timestamp"),
    (orjson.dumps({**GOOD, "ts": 1795842000}), "field 'ts' must be an ISO 8601 string, got number"),
    (orjson.dumps({**GOOD, "features": [1, 2]}), "field 'features' must be an object, got array"),
    (orjson.dumps({k: v for k, v in GOOD.items() if k != "prediction"}), "missing field 'prediction'"),
    (orjson.dumps({**GOOD, "prediction": None}), "field 'prediction' must be a number, string or boolean, got null"),
    (orjson.dumps({**GOOD, "score": 1.5}), "field 'score' must be a probability in [0, 1] or null"),
    (orjson.dumps({**GOOD, "latency_ms": -1}), "field 'latency_ms' must be a non-negative number or null"),
    (orjson.dumps({**GOOD, "scores": {"a": 2}}), "field 'scores.a' must be a probability"),
    (b'{"type":"label","schema":1,"request_id":"r","model":"m","ts":"2026-01-01T00:00:00Z"}', "missing field 'label'"),
    (b'{"type":"features","schema":1,"request_id":"r","model":"m","ts":"2026-01-01T00:00:00Z"}', "missing field 'features'"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_every_contract_break_is_a_rejection_with_its_reason(record, reason):
    result = decode(record)
    assert isinstance(result, Rejection)
    assert result.reason.startswith(reason), result.reason


def test_rejection_keeps_the_model_when_the_record_named_one():
    assert decode(orjson.dumps({**GOOD, "schema": 9})).model == "fuel-efficiency"


def test_timestamps_round_trip_at_millisecond_precision():
    for text in ("2026-11-28T05:00:00.120Z", "2026-01-01T00:00:00.000Z", "2030-06-30T23:59:59.999Z"):
        assert format_ts(parse_ts(text)) == text
