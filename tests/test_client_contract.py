"""The client accepts exactly what the engine's ``decode`` accepts, whichever of its two checks ran.

Plain arguments skip the engine's decode (:mod:`tripwire.client.plain`); everything else is
encoded and decoded. Hypothesis draws arguments of every kind a caller might pass (NaN, infinities,
integers beyond 64 bits, numpy scalars, empty and unencodable strings, nested or non-dict
features, out-of-range timestamps...) and checks each call against a reference built here: the
record encoded with orjson as the contract describes, judged by :func:`tripwire.events.decode`.
Only validation is under test, so the records go to an in-memory transport; delivery through a
real broker is tests/test_client.py's. The transport takes the path :class:`tripwire.client.Client`
takes: each call hands its arguments off, and the record is built and judged later (here when
``stats()`` drains the hand-off; in ``Client``, on its sender thread).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tripwire.client.recorder import Recorder
from tripwire.events import ContractError, Event, decode, format_ts


class InMemory(Recorder):
    """A transport that keeps what it is handed; calls are handed off as in ``Client`` unless told otherwise."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"hand_off_limit": 1000, **kwargs})
        self.sent: list[tuple[bytes, bytes, int]] = []

    def _send(self, key: bytes, value: bytes, timestamp_ms: int) -> None:
        self.sent.append((key, value, timestamp_ms))

    def _queued(self) -> int:
        return 0


def reference(obj: dict[str, Any]) -> bytes | Exception:
    """The record as the contract describes it, or why it cannot be encoded."""
    ts = obj["ts"]
    try:
        if isinstance(ts, datetime):
            ts = ts.isoformat()
        elif isinstance(ts, (int, float)) and not isinstance(ts, bool):
            ts = format_ts(ts)
        return orjson.dumps({**obj, "ts": ts}, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    except (TypeError, ValueError, OverflowError, OSError) as error:
        return error


def check(recorder: InMemory, obj: dict[str, Any], returned: str) -> None:
    """The recorder's verdict on one call equals the engine's on the reference record."""
    expected = reference(obj)
    verdict = decode(expected) if isinstance(expected, bytes) else None
    stats = recorder.stats()  # builds and judges the handed-off call
    if isinstance(verdict, Event):
        assert stats.invalid == 0, f"refused what the engine accepts: {expected!r}"
        [(key, value, timestamp_ms)] = recorder.sent
        assert orjson.loads(value) == orjson.loads(expected)  # the same record (keys in any order)
        assert key == (returned if recorder._key_by_request else obj["model"]).encode()
        assert timestamp_ms == round(verdict.ts * 1000)
    else:
        assert recorder.sent == [], f"sent what the engine refuses ({verdict or expected!r}): {recorder.sent[0][1]!r}"
        assert stats.invalid == 1


# -- what a caller may pass ---------------------------------------------------------------------
texts = st.one_of(st.text(max_size=8), st.just(""), st.just("\ud800"), st.just("modèle"))
big_ints = st.integers(min_value=-(2**70), max_value=2**70)
edge_ints = st.sampled_from([-(2**63) - 1, -(2**63), 2**63 - 1, 2**63, 2**64 - 1, 2**64, -1, 0, 1, 2])
floats = st.floats(allow_nan=True, allow_infinity=True)
numpy_scalars = st.one_of(floats.map(np.float64), st.floats(width=32).map(np.float32),
                          st.integers(-(2**63), 2**63 - 1).map(np.int64), st.booleans().map(np.bool_))
scalars = st.one_of(floats, big_ints, edge_ints, st.booleans(), texts, numpy_scalars, st.none())
values = st.one_of(scalars, st.lists(st.integers(), max_size=2), st.just(object()),
                   st.just(datetime(2026, 1, 1, tzinfo=UTC)))
keys = st.one_of(texts, st.integers(-5, 5), st.just(None))
objects = st.one_of(st.none(), st.dictionaries(keys, values, max_size=4), st.lists(st.integers(), max_size=2),
                    st.just(1.5))
probabilities = st.one_of(st.none(), st.floats(-0.5, 1.5), floats, st.integers(-1, 2), st.booleans(),
                          st.floats(0, 1).map(np.float64), st.floats(0, 1, width=32).map(np.float32))
timestamps = st.one_of(st.floats(-1e12, 3e11), floats, st.integers(-(10**12), 3 * 10**11), st.booleans(),
                       st.just(253402300799.0), st.just(253402300800.0),
                       st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 1, 1)),
                       st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00+02:00", "yesterday", ""]))
request_ids = st.one_of(st.none(), texts, st.integers())
key_by = st.sampled_from(["model", "request_id"])
EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# Plain values of each argument, and anything at all: a call draws plain values and replaces one
# or two of them, so that each check of the plain path meets every odd value on its own.
plain_values = {
    "model": st.one_of(st.sampled_from(["m", "fuel-efficiency"]), st.text(min_size=1, max_size=8)),
    "request_id": st.one_of(st.none(), st.text(min_size=1, max_size=8)),
    "prediction": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**63), 2**63 - 1),
                            st.booleans(), st.text(max_size=4), st.floats(-1e9, 1e9).map(np.float64)),
    "features": st.one_of(st.none(), st.dictionaries(st.text(max_size=4), values, max_size=3)),
    "score": st.one_of(st.none(), st.floats(0, 1), st.integers(0, 1), st.floats(0, 1).map(np.float64)),
    "scores": st.one_of(st.none(), st.dictionaries(st.text(max_size=4), st.floats(0, 1), max_size=3)),
    "latency_ms": st.one_of(st.none(), st.floats(0, 1e6), st.integers(0, 2**63 - 1), st.floats(0, 1e3).map(np.float64)),
    "attributes": st.one_of(st.none(), st.dictionaries(st.text(max_size=4), values, max_size=2)),
    "model_version": st.one_of(st.none(), st.text(max_size=4)),
    "ts": st.one_of(st.floats(0, 253402300799.0), st.integers(0, 253402300799)),
}
ODD = [float("nan"), float("inf"), -float("inf"), np.float64("nan"), np.float64("inf"), np.float64(0.5),
       np.float32(0.5), np.float32("nan"), np.int64(3), np.bool_(True), True, False, -1, 0, 1, 2, -0.0, 0.5, 1.5,
       2**63 - 1, 2**63, 2**64, "", "x", "\ud800", None, [1], {}, {1: 0.5}, {"a": float("nan")}, {"a": 2.0}, -1e12,
       253402300800.0]
odd = st.sampled_from(ODD)
any_values = {name: st.one_of(odd, anything) for name, anything in {
    "model": st.one_of(texts, scalars), "request_id": st.one_of(request_ids, scalars), "prediction": values,
    "features": objects, "score": st.one_of(probabilities, scalars), "latency_ms": st.one_of(scalars, edge_ints),
    "scores": st.one_of(st.none(), st.dictionaries(keys, probabilities, max_size=3), st.just([0.5]), scalars),
    "attributes": objects, "model_version": st.one_of(scalars, big_ints),
    "ts": st.one_of(timestamps, scalars.filter(lambda ts: ts is not None)),  # now: test_now_is_stamped_…
}.items()}


@st.composite
def arguments(draw: Any, names: tuple[str, ...]) -> dict[str, Any]:
    chosen = {name: draw(plain_values[name]) for name in names}
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2)):
        chosen[name] = draw(any_values[name])
    if chosen["ts"] is None:  # now: test_now_is_stamped_…
        chosen["ts"] = 0.0
    return chosen


PREDICTION = ("model", "request_id", "prediction", "features", "score", "scores", "latency_ms", "attributes",
              "model_version", "ts")


@EXAMPLES
@given(args=arguments(PREDICTION), key=key_by)
def test_a_prediction_is_accepted_exactly_when_the_engine_accepts_it(args, key):
    recorder = InMemory(key_by=key)
    model, prediction = args.pop("model"), args.pop("prediction")
    returned = recorder.log_prediction(model, prediction, **args)
    obj = {"type": "prediction", "schema": 1, "request_id": returned, "model": model, "ts": args.pop("ts"),
           "prediction": prediction}
    obj.update({name: value for name, value in args.items() if name != "request_id" and value is not None})
    check(recorder, obj, returned)


@EXAMPLES
@given(args=arguments(("model", "features", "request_id", "ts")), key=key_by)
def test_features_are_accepted_exactly_when_the_engine_accepts_them(args, key):
    recorder = InMemory(key_by=key)
    returned = recorder.log_features(args["model"], args["features"], request_id=args["request_id"], ts=args["ts"])
    check(recorder, {"type": "features", "schema": 1, "request_id": returned, "model": args["model"],
                     "ts": args["ts"], "features": args["features"]}, returned)


@EXAMPLES
@given(args=arguments(("model", "request_id", "prediction", "ts")), key=key_by)
def test_a_label_is_accepted_exactly_when_the_engine_accepts_it(args, key):
    recorder = InMemory(key_by=key)
    model, request_id, label = args["model"], args["request_id"], args["prediction"]
    recorder.log_label(model, request_id, label, ts=args["ts"])
    check(recorder, {"type": "label", "schema": 1, "request_id": request_id, "model": model, "ts": args["ts"],
                     "label": label}, request_id)


PLAIN = {"model": "m", "request_id": "r1", "prediction": 0.25, "features": {"x": 1.0}, "score": 0.5,
         "scores": {"a": 0.5}, "latency_ms": 3.0, "attributes": {"g": "a"}, "model_version": "7", "ts": 1764306000.5}


@pytest.mark.parametrize("name", PREDICTION)
def test_every_odd_value_of_every_argument_is_judged_as_the_engine_judges_it(name):
    """Hypothesis favours simple draws; each argument also meets each odd value here, the rest plain."""
    for value in ODD:
        args = {**PLAIN, name: 0.0 if name == "ts" and value is None else value}
        recorder = InMemory()
        model, prediction = args.pop("model"), args.pop("prediction")
        returned = recorder.log_prediction(model, prediction, **args)
        obj = {"type": "prediction", "schema": 1, "request_id": returned, "model": model, "ts": args.pop("ts"),
               "prediction": prediction}
        obj.update({key: v for key, v in args.items() if key != "request_id" and v is not None})
        check(recorder, obj, returned)
        if name in ("model", "request_id", "prediction", "features", "ts"):
            recorder = InMemory()
            label = {**PLAIN, name: 0.0 if name == "ts" and value is None else value}
            recorder.log_label(label["model"], label["request_id"], label["prediction"], ts=label["ts"])
            check(recorder, {"type": "label", "schema": 1, "request_id": label["request_id"], "model": label["model"],
                             "ts": label["ts"], "label": label["prediction"]}, label["request_id"])
            recorder = InMemory()
            returned = recorder.log_features(label["model"], label["features"], request_id=label["request_id"],
                                             ts=label["ts"])
            check(recorder, {"type": "features", "schema": 1, "request_id": returned, "model": label["model"],
                             "ts": label["ts"], "features": label["features"]}, returned)


@pytest.mark.parametrize("hand_off_limit", [1000, None])
def test_now_is_stamped_when_no_ts_is_given_on_either_check(hand_off_limit):
    recorder = InMemory(hand_off_limit=hand_off_limit)
    recorder.log_prediction("m", 1.0, features={"x": 1.0})  # plain
    recorder.log_prediction("m", np.float32(1.0), features={"x": 1.0})  # judged by decode
    assert recorder.stats().accepted == 2 and len(recorder.sent) == 2
    for key, value, timestamp_ms in recorder.sent:
        event = decode(value)
        assert isinstance(event, Event) and key == b"m" and timestamp_ms == round(event.ts * 1000)
        assert abs(event.ts - datetime.now(UTC).timestamp()) < 60


@pytest.mark.parametrize("call", [lambda r: r.log_prediction("m", float("nan")),
                                  lambda r: r.log_prediction("m", 1.0, latency_ms=-1.0),
                                  lambda r: r.log_label("m", "", 1.0)])
def test_strict_mode_raises_the_engine_reason(call):
    with pytest.raises(ContractError, match="field '(prediction|latency_ms|request_id)'"):
        call(InMemory(strict=True))


def test_a_handed_off_call_sends_what_it_was_given_though_the_caller_reuses_its_dicts():
    recorder = InMemory()
    features, scores, attributes = {"x": 1.0}, {"a": 0.25}, {"region": "eu"}
    first = recorder.log_prediction("m", "a", features=features, scores=scores, attributes=attributes, ts=1e9)
    features["x"], scores["a"], attributes["region"] = 2.0, 0.5, "us"  # changed before the record is built
    features["y"], scores["b"] = 3.0, 0.5
    second = recorder.log_prediction("m", "b", features=features, scores=scores, attributes=attributes, ts=1e9)
    assert recorder.stats().accepted == 2
    sent = [decode(value) for _, value, _ in recorder.sent]
    assert [(e.request_id, e.features, e.scores, e.attributes) for e in sent] == [
        (first, {"x": 1.0}, {"a": 0.25}, {"region": "eu"}),
        (second, {"x": 2.0, "y": 3.0}, {"a": 0.5, "b": 0.5}, {"region": "us"})]


def test_calls_keep_their_order_across_the_hand_off_and_past_its_limit_drops_are_counted():
    recorder = InMemory(hand_off_limit=3)
    ids = [recorder.log_prediction("m", float(i), ts=1e9) for i in range(5)]  # the last 2 find it full
    recorder.strict = True  # strict calls run at once, after what was handed off before them
    ids.append(recorder.log_label("m", ids[0], 1.0, ts=1e9))
    stats = recorder.stats()
    assert (stats.accepted, stats.dropped_buffer_full, stats.invalid) == (6, 2, 0)
    assert [decode(value).request_id for _, value, _ in recorder.sent] == ids[:3] + [ids[0]]


def test_an_argument_that_fails_oddly_is_counted_and_the_calls_after_it_are_sent():
    class Broken(datetime):
        def isoformat(self, *args: Any, **kwargs: Any) -> str:
            raise RuntimeError("not today")

    recorder = InMemory()
    recorder.log_prediction("m", 1.0, ts=Broken(2026, 1, 1, tzinfo=UTC))  # returns: the record is built later
    after = recorder.log_prediction("m", 2.0, ts=1e9)
    stats = recorder.stats()
    assert (stats.invalid, stats.accepted) == (1, 1)
    assert [decode(value).request_id for _, value, _ in recorder.sent] == [after]
