"""Event contract v1: decode one record into a typed event, or a rejection with a precise reason.

Decoding never raises on bad input: every way a record can break the contract (not JSON, not an
object, unknown type or schema version, missing or mistyped field, non-finite number) comes back
as a :class:`Rejection`, so a worker or a replay can dead-letter it and go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

SCHEMA_VERSION = 1
EVENT_TYPES = ("prediction", "features", "label")

Scalar = float | int | str | bool


@dataclass(slots=True)
class Prediction:
    request_id: str
    model: str
    model_version: str | None
    ts: float
    features: dict[str, Any]
    prediction: Scalar
    score: float | None
    scores: dict[str, float] | None
    latency_ms: float | None
    attributes: dict[str, Any]


@dataclass(slots=True)
class Features:
    request_id: str
    model: str
    ts: float
    features: dict[str, Any]


@dataclass(slots=True)
class Label:
    request_id: str
    model: str
    ts: float
    label: Scalar


Event = Prediction | Features | Label


@dataclass(slots=True)
class Rejection:
    """A record that broke the contract; ``model`` is set when the record named one."""

    reason: str
    model: str | None = None


class ContractError(ValueError):
    pass


def parse_ts(value: Any) -> float:
    """ISO 8601 timestamp (``Z`` or an offset; naive means UTC) to epoch seconds."""
    if not isinstance(value, str):
        raise ContractError(f"field 'ts' must be an ISO 8601 string, got {_json_type(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ContractError(f"field 'ts' is not an ISO 8601 timestamp: {value[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def format_ts(epoch_seconds: float) -> str:
    """Epoch seconds to ISO 8601 UTC with millisecond precision, e.g. ``2026-11-28T05:00:00.120Z``."""
    millis = round(epoch_seconds * 1000)
    moment = datetime.fromtimestamp(millis // 1000, tz=timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"


def decode(raw: bytes | str) -> Event | Rejection:
    """Decode one record of the v1 contract.

    >>> decode(b'{"type":"label","schema":1,"request_id":"r1","model":"m","ts":"2026-01-01T00:00:00Z","label":1}')
    Label(request_id='r1', model='m', ts=1767225600.0, label=1)
    >>> decode(b'{"type":"label"').reason
    'not valid JSON: unexpected end of data at char 15'
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return Rejection(_json_error_reason(error))
    if not isinstance(obj, dict):
        return Rejection(f"event must be a JSON object, got {_json_type(obj)}")
    try:
        return from_object(obj)
    except ContractError as error:
        model = obj.get("model")
        return Rejection(str(error), model if isinstance(model, str) else None)


def from_object(obj: dict[str, Any]) -> Event:
    """Validate a decoded JSON object; raises :class:`ContractError` naming the field and the problem."""
    kind = obj.get("type")
    if kind not in EVENT_TYPES:
        raise ContractError(f"field 'type' must be one of {', '.join(EVENT_TYPES)}, got {kind!r}")
    schema = obj.get("schema")
    if schema != SCHEMA_VERSION or type(schema) is not int:
        raise ContractError(f"unknown schema version {schema!r} (this worker reads schema {SCHEMA_VERSION})")
    request_id = _require_str(obj, "request_id")
    model = _require_str(obj, "model")
    ts = parse_ts(obj.get("ts"))
    if kind == "prediction":
        # The hot path: the common, valid shapes are checked inline; the helpers word the rejections.
        version = obj.get("model_version")
        if type(version) is not str:
            version = _optional_version(version)
        features = obj.get("features")
        if type(features) is not dict:
            features = _features(features, required=False)
        prediction = obj.get("prediction")
        if type(prediction) not in _SCALARS:
            prediction = _require_scalar(obj, "prediction")
        score = obj.get("score")
        if score is not None:
            score = _probability(score, "score")
        scores = obj.get("scores")
        if scores is not None:
            scores = _scores(scores)
        latency = obj.get("latency_ms")
        if latency is not None:
            latency = _latency(latency)
        attributes = obj.get("attributes")
        if type(attributes) is not dict:
            attributes = _attributes(attributes)
        return Prediction(request_id, model, version, ts, features, prediction, score, scores, latency, attributes)
    if kind == "features":
        return Features(request_id, model, ts, _features(obj.get("features"), required=True))
    return Label(request_id, model, ts, _require_scalar(obj, "label"))


def _json_error_reason(error: orjson.JSONDecodeError) -> str:
    message = str(error.msg if hasattr(error, "msg") else error)
    if "infinity" in message or "NaN" in message:
        return f"non-finite number: {message} at char {error.pos}"
    return f"not valid JSON: {message} at char {error.pos}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _require_str(obj: dict[str, Any], field: str) -> str:
    value = obj.get(field)
    if type(value) is not str or not value:
        if field not in obj:
            raise ContractError(f"missing field '{field}'")
        raise ContractError(f"field '{field}' must be a non-empty string, got {_json_type(value)}")
    return value


_SCALARS = (float, int, str, bool)


def _require_scalar(obj: dict[str, Any], field: str) -> Scalar:
    if field not in obj:
        raise ContractError(f"missing field '{field}'")
    value = obj[field]
    if type(value) not in _SCALARS:
        raise ContractError(f"field '{field}' must be a number, string or boolean, got {_json_type(value)}")
    return value


def _optional_version(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) in (str, int):
        return str(value)
    raise ContractError(f"field 'model_version' must be a string, got {_json_type(value)}")


def _features(value: Any, *, required: bool) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if type(value) is not dict:
        if value is None:
            raise ContractError("missing field 'features'")
        raise ContractError(f"field 'features' must be an object, got {_json_type(value)}")
    return value


def _probability(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if (type(value) is not float and type(value) is not int) or not 0.0 <= value <= 1.0:
        raise ContractError(f"field '{field}' must be a probability in [0, 1] or null, got {value!r}")
    return float(value)


def _scores(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise ContractError(f"field 'scores' must be an object of class -> probability, got {_json_type(value)}")
    for cls, prob in value.items():
        _probability(prob, f"scores.{cls}")
    return value


def _latency(value: Any) -> float | None:
    if value is None:
        return None
    if (type(value) is not float and type(value) is not int) or value < 0:
        raise ContractError(f"field 'latency_ms' must be a non-negative number or null, got {value!r}")
    return value


def _attributes(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise ContractError(f"field 'attributes' must be an object, got {_json_type(value)}")
    return value
