"""Event contract v1: decode one record into a typed event, or a rejection with a precise reason.

Decoding never raises on bad input: every way a record can break the contract (not JSON, not an
object, unknown type or schema version, missing or mistyped field, non-finite number) comes back
as a :class:`Rejection`, so a worker or a replay can dead-letter it and go on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal, Mapping, Sequence, Union, final

import msgspec
import numpy as np
import orjson

SCHEMA_VERSION = 1
EVENT_TYPES = ("prediction", "features", "label")

Scalar = float | int | str | bool
# A prediction's score: the positive class's probability, or a multi-class one's probability vector in
# its reference's class order (see tripwire.admission.Admission).
Score = float | tuple[float, ...]


# Events hold JSON scalars and dicts of them, never a cycle, so the garbage collector need not track
# them (msgspec's gc=False): a batch of thousands of live events then costs it nothing.
@final
class Prediction(msgspec.Struct, gc=False):
    request_id: str
    model: str
    model_version: str | None
    ts: float
    features: dict[str, Any] | FeatureRow  # a FeatureRow only from decode_batch given the model's feature names
    prediction: Scalar
    score: Score | None
    scores: dict[str, float] | None
    latency_ms: float | None
    attributes: dict[str, Any]


class FeatureRow(msgspec.Struct, gc=False, kw_only=True):
    """A prediction's features as :func:`decode_batch` reads them for a model whose reference names
    every one of them: a struct of a field per name (see :func:`_prediction_decoder`), in the
    reference's order, so the data window makes its columns without a dict per row.
    :meth:`as_dict` is the dict :func:`decode` gives (read from the prediction's ``record``) and
    equality is that dict's."""

    names: ClassVar[tuple[str, ...]] = ()
    # The record, set after decoding. (A field: a feature of this name, not one of the names, is read
    # into it and checked like a feature; the record, set over it, keeps it.)
    record: _WireValue = None  # (bytes or str, once set)

    def as_dict(self) -> dict[str, Any]:
        return orjson.loads(self.record)["features"]  # type: ignore[arg-type]  # (the record by then)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FeatureRow):
            return self.as_dict() == other.as_dict()
        return self.as_dict() == other if type(other) is dict else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # (like the dict it stands for)

    def __repr__(self) -> str:
        return f"FeatureRow({self.as_dict()!r})"


@final
class Features(msgspec.Struct, gc=False):
    request_id: str
    model: str
    ts: float
    features: dict[str, Any]


@final
class Label(msgspec.Struct, gc=False):
    request_id: str
    model: str
    ts: float
    label: Scalar


Event = Prediction | Features | Label


@final
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
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_ts(epoch_seconds: float) -> str:
    """Epoch seconds to ISO 8601 UTC with millisecond precision, e.g. ``2026-11-28T05:00:00.120Z``."""
    millis = round(epoch_seconds * 1000)
    moment = datetime.fromtimestamp(millis // 1000, tz=UTC)
    return f"{moment.year:04d}{moment:-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"  # (%Y drops a year's leading zeros)


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
        prediction: Scalar = obj.get("prediction")  # type: ignore[assignment]  # checked on the next line
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


def decode_batch(records: Sequence[bytes | str],
                 feature_names: Mapping[str, tuple[str, ...] | None] | None = None) -> list[Event | Rejection]:
    """Decode many records at once: the same result as ``[decode(r) for r in records]``, faster.

    ``feature_names``: model -> the names of its features, or None. Where they are one set of
    names, a prediction whose features are exactly these (in any order, each a scalar) gets them
    as a :class:`FeatureRow` (equal to the dict; see :meth:`ModelMonitor.feature_row_names`),
    until a group of records has one that does not fit; any other gets its dict.

    The common shape of each event type is decoded by a typed msgspec decoder (type checks and
    bounds in C) and the usual timestamp form ``YYYY-MM-DDTHH:MM:SS.mmmZ`` is converted with numpy
    for the whole batch. Whatever that fast path does not take exactly as :func:`decode` would
    (an unknown field, a nested feature value, a huge integer, any other timestamp form, any
    error) goes through :func:`decode` itself, so rejections keep their precise reasons.

    >>> good = b'{"type":"label","schema":1,"request_id":"r1","model":"m","ts":"2026-01-01T00:00:00.000Z","label":1}'
    >>> decode_batch([good, b'{"type":"label"'])
    [Label(request_id='r1', model='m', ts=1767225600.0, label=1), Rejection(reason='not valid JSON: unexpected end of data at char 15', model=None)]
    """
    decode_wire = _WIRE_DECODER.decode
    schema = _prediction_decoder(_one_set(feature_names))
    decode_rows = schema.decode if schema is not None else None
    wire: list[Any] = []
    for first in range(0, len(records), _CHUNK):
        chunk = records[first:first + _CHUNK]
        if decode_rows is not None:
            try:
                wire += list(map(decode_rows, chunk))
                continue
            except Exception:  # some record does not fit (or is bad): dicts from here on
                decode_rows = None
        try:
            wire += list(map(decode_wire, chunk))  # no Python loop while every record takes the fast path
            continue
        except Exception:
            pass
        for record in chunk:
            try:
                wire.append(decode_wire(record))
            except Exception:  # msgspec's errors, RecursionError: decode() words the rejection or takes the record
                wire.append(None)
    stamps = _fast_timestamps([_NOT_A_STAMP if w is None else w.ts for w in wire])
    out: list[Event | Rejection] = []
    append = out.append
    for record, w, ts in zip(records, wire, stamps):
        if ts != ts:  # NaN: no fast timestamp, so no fast event
            append(decode(record))
        elif type(w) is _WirePrediction:
            append(Prediction(w.request_id, w.model, w.model_version, ts, w.features, w.prediction, w.score, w.scores,
                              w.latency_ms, w.attributes))
        elif type(w) is _WireLabel:
            append(Label(w.request_id, w.model, ts, w.label))
        elif type(w) is _WireFeatures:
            append(Features(w.request_id, w.model, ts, w.features))
        else:  # a prediction read by the names (see _prediction_decoder)
            features = w.features
            if features is None:  # (no features, or null: decode() gives {})
                features = {}
            else:
                features.record = record
            append(Prediction(w.request_id, w.model, w.model_version, ts, features, w.prediction, w.score, w.scores,
                              w.latency_ms, w.attributes))
    return out


# -- the fast path of decode_batch ------------------------------------------------------------
# Each type below admits only values that decode() accepts with the same result: orjson turns
# integers beyond 64 bits into floats and has a nesting limit, so integers are bounded to int64 and
# feature values are scalars; unknown fields are forbidden because msgspec skips them without the
# checks orjson makes (non-finite numbers, UTF-8).
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_WireScalar = Union[bool, _Int, float, str]
_WireValue = Union[None, bool, _Int, float, str]  # a feature or attribute value
_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
_Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
_IntProbability = Annotated[int, msgspec.Meta(ge=0, le=1)]
_Latency = Union[Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)], Annotated[float, msgspec.Meta(ge=0.0)], None]


class _WirePrediction(msgspec.Struct, tag_field="type", tag="prediction", forbid_unknown_fields=True, gc=False):
    schema: Literal[1]
    request_id: _NonEmpty
    model: _NonEmpty
    ts: str
    prediction: _WireScalar
    model_version: str | None = None
    features: dict[str, _WireValue] = {}
    score: _Probability | None = None
    scores: dict[str, _IntProbability | _Probability] | None = None
    latency_ms: _Latency = None
    attributes: dict[str, _WireValue] = {}


class _WireLabel(msgspec.Struct, tag_field="type", tag="label", forbid_unknown_fields=True, gc=False):
    schema: Literal[1]
    request_id: _NonEmpty
    model: _NonEmpty
    ts: str
    label: _WireScalar


class _WireFeatures(msgspec.Struct, tag_field="type", tag="features", forbid_unknown_fields=True, gc=False):
    schema: Literal[1]
    request_id: _NonEmpty
    model: _NonEmpty
    ts: str
    features: dict[str, _WireValue]


_WIRE_DECODER = msgspec.json.Decoder(Union[_WirePrediction, _WireLabel, _WireFeatures])


def _one_set(feature_names: Mapping[str, tuple[str, ...] | None] | None) -> tuple[str, ...] | None:
    """The one set of names the models give (a typed decoder reads one), if so."""
    sets = {names for names in feature_names.values() if names} if feature_names else set()
    return next(iter(sets)) if len(sets) == 1 else None


@lru_cache(maxsize=16)
def _prediction_decoder(names: tuple[str, ...] | None) -> msgspec.json.Decoder[Any] | None:
    """The typed decoder of the records whose predictions have features of exactly ``names``, each a
    scalar: as :class:`FeatureRow` s of them in that order (fields renamed: a name need not be a
    Python identifier). None without names, or for names that clash with the row's own field."""
    if not names:
        return None
    try:
        row = msgspec.defstruct("Row", [(f"f{i}", _WireValue) for i in range(len(names))], bases=(FeatureRow,),
                                rename={f"f{i}": name for i, name in enumerate(names)}, forbid_unknown_fields=True,
                                gc=False)
    except ValueError:  # a feature named "record"
        return None
    row.names = names  # type: ignore[attr-defined]  # (a FeatureRow: see its ClassVar)
    prediction = msgspec.defstruct("Prediction", [("features", row | None, None)], bases=(_WirePrediction,),
                                   tag="prediction", forbid_unknown_fields=True, gc=False)
    return msgspec.json.Decoder(Union[prediction, _WireLabel, _WireFeatures])


_CHUNK = 64  # records decoded in one map() call; a chunk with a bad record is redone one by one

_STAMP = len("2026-11-28T05:00:00.120Z")
_NOT_A_STAMP = "?" * _STAMP  # stands in for a record the typed decoder did not take; fails the checks below
_SEPARATORS = np.frombuffer(b"--T::.Z", dtype=np.uint8)
_SEPARATOR_AT = [4, 7, 10, 13, 16, 19, 23]
_DIGIT_AT = [i for i in range(_STAMP - 1) if i not in _SEPARATOR_AT]
_FIELD_SPANS = [(0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19), (20, 23)]  # Y M D h m s ms
# Digits times place values, summed per field: one matrix product (float64: every value is exact).
_PLACE_VALUES = np.zeros((_STAMP, len(_FIELD_SPANS)))
for _field, (_first, _stop) in enumerate(_FIELD_SPANS):
    _PLACE_VALUES[_first:_stop, _field] = 10.0 ** np.arange(_stop - _first - 1, -1, -1)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _fast_timestamps(stamps: list[str]) -> list[float]:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS.mmmZ`` stamps (years 1970-2199), NaN for any other string.

    Equal to :func:`parse_ts`: ``datetime.timestamp`` divides whole microseconds by 10**6 with
    correct rounding, and so does float64 division here while the microseconds stay below 2**53.
    """
    n = len(stamps)
    if n == 0:
        return []
    raw = "".join(stamps).encode("utf-8", "replace")
    if len(raw) != _STAMP * n or set(map(len, stamps)) != {_STAMP}:
        # Another length or a non-ASCII character somewhere: set those aside so the rows align.
        raw = "".join(s if len(s) == _STAMP and s.isascii() else _NOT_A_STAMP for s in stamps).encode()
    chars = np.frombuffer(raw, dtype=np.uint8).reshape(n, _STAMP)
    digits = chars - np.uint8(48)
    ok = (chars[:, _SEPARATOR_AT] == _SEPARATORS).all(axis=1) & (digits[:, _DIGIT_AT] <= 9).all(axis=1)
    fields = (digits.astype(np.float64) @ _PLACE_VALUES).astype(np.int64)
    year, month, day, hour, minute, second, millis = fields.T
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    days_in_month = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + (leap & (month == 2))
    ok &= (year >= 1970) & (year <= 2199) & month_ok & (day >= 1) & (day <= days_in_month)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    # Days since the epoch from the civil date (H. Hinnant's days_from_civil).
    y = year - (month <= 2)
    era = y // 400
    year_of_era = y - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year - 719468
    micros = (((days * 86400 + hour * 3600 + minute * 60 + second) * 1000) + millis) * 1000
    return np.where(ok, micros / 1e6, np.nan).tolist()


_NON_FINITE_LITERALS = ("nan", "infinity", "-infinity", "+infinity", "inf", "-inf", "+inf")


def _json_error_reason(error: orjson.JSONDecodeError) -> str:
    message = str(error.msg if hasattr(error, "msg") else error)
    if "infinity" in message or "NaN" in message:
        return f"non-finite number: {message} at char {error.pos}"
    # NaN / Infinity literals (Python's json writes them) are no JSON: say so rather than "unexpected character".
    doc = getattr(error, "doc", "") or ""
    at = error.pos - 1 if error.pos and doc[error.pos - 1:error.pos] in ("-", "+") else error.pos
    word = re.match(r"[-+]?[A-Za-z]+", doc[at:at + 10])
    if word and word.group().lower() in _NON_FINITE_LITERALS:
        return f"non-finite number: {word.group()} at char {at} (JSON has no NaN or Infinity)"
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
