"""Tests for tripwire.detectors.serving."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tripwire.detectors.serving import ServingWindow

T0 = 1_700_000_000.0


def json_roundtrip(w: ServingWindow) -> ServingWindow:
    return ServingWindow.from_dict(json.loads(json.dumps(w.to_dict())))


def test_percentiles_by_hand():
    # Linear interpolation (numpy's default): rank h = (N - 1) * q on the sorted sample.
    w = ServingWindow()
    for i, lat in enumerate([40.0, 10.0, 30.0, 20.0]):
        w.update(lat, T0 + i)
    r = w.result()
    # sorted [10, 20, 30, 40]; p50: h = 1.5; p95: h = 2.85; p99: h = 2.97
    assert r["latency_p50"] == pytest.approx(25.0)
    assert r["latency_p95"] == pytest.approx(30.0 + 0.85 * 10.0)
    assert r["latency_p99"] == pytest.approx(30.0 + 0.97 * 10.0)
    assert r["n"] == 4
    assert r["throughput_per_s"] == pytest.approx(4 / 3)


def test_percentiles_match_numpy_on_random_latencies():
    rng = np.random.default_rng(21)
    latencies = rng.lognormal(mean=3.0, sigma=0.8, size=3000)
    ts = T0 + np.sort(rng.uniform(0.0, 60.0, size=latencies.size))
    drop = rng.random(latencies.size) < 0.1   # requests whose latency was not reported
    w = ServingWindow()
    for lat, t, d in zip(latencies, ts, drop):
        w.update(None if d else float(lat), float(t))
    kept = latencies[~drop]
    r = w.result()
    assert r["n"] == 3000
    assert r["latency_p50"] == pytest.approx(float(np.percentile(kept, 50)), rel=1e-12)
    assert r["latency_p95"] == pytest.approx(float(np.percentile(kept, 95)), rel=1e-12)
    assert r["latency_p99"] == pytest.approx(float(np.percentile(kept, 99)), rel=1e-12)
    assert r["latency_p50"] < r["latency_p95"] < r["latency_p99"]
    assert r["throughput_per_s"] == pytest.approx(3000 / (ts[-1] - ts[0]))


def test_update_many_equals_single_updates():
    rng = np.random.default_rng(8)
    lat = [float(x) for x in rng.gamma(2.0, 15.0, 500)]
    lat[::7] = [None] * len(lat[::7])
    ts = [T0 + 0.01 * i for i in range(500)]

    single = ServingWindow()
    for x, t in zip(lat, ts):
        single.update(x, t)
    batched = ServingWindow()
    batched.update_many(lat[:200], ts[0], ts[199])
    batched.update_many(lat[200:], ts[200], ts[499])
    assert batched.result() == single.result()
    assert batched.result()["n"] == 500


def test_missing_and_non_finite_latency_count_for_throughput_only():
    w = ServingWindow()
    w.update_many([None, math.nan, math.inf, 5.0], T0, T0 + 2.0)
    r = w.result()
    assert r["n"] == 4
    assert r["latency_p50"] == r["latency_p95"] == r["latency_p99"] == 5.0
    assert r["throughput_per_s"] == 2.0


def test_no_latencies_gives_none_percentiles():
    w = ServingWindow()
    w.update(None, T0)
    w.update(None, T0 + 4.0)
    r = w.result()
    assert r == {"n": 2, "latency_p50": None, "latency_p95": None, "latency_p99": None,
                 "throughput_per_s": 0.5}


def test_zero_span_gives_none_throughput():
    w = ServingWindow()
    w.update_many([1.0, 2.0, 3.0], T0, T0)
    w.update(4.0, T0)
    r = w.result()
    assert r["throughput_per_s"] is None
    assert r["latency_p50"] == 2.5


def test_out_of_order_event_times_use_min_and_max():
    w = ServingWindow()
    for t in (T0 + 5.0, T0 + 1.0, T0 + 9.0, T0 + 3.0):
        w.update(10.0, t)
    assert w.result()["throughput_per_s"] == pytest.approx(4 / 8.0)


def test_empty_and_reset():
    w = ServingWindow()
    empty = {"n": 0, "latency_p50": None, "latency_p95": None, "latency_p99": None,
             "throughput_per_s": None}
    assert w.result() == empty
    w.update_many([], T0, T0 + 1.0)   # an empty batch carries no requests and no span
    assert w.result() == empty
    w.update_many([1.0, 2.0], T0, T0 + 1.0)
    assert w.result()["n"] == 2
    w.reset()
    assert w.result() == empty


def test_invalid_times():
    w = ServingWindow()
    with pytest.raises(ValueError):
        w.update_many([1.0], T0 + 1.0, T0)
    with pytest.raises(ValueError):
        w.update(1.0, math.nan)
    with pytest.raises(ValueError):
        w.update_many([1.0], T0, math.inf)
    assert w.result()["n"] == 0


def test_state_roundtrip_and_continue():
    rng = np.random.default_rng(13)
    lat = [float(x) for x in rng.exponential(20.0, 1000)]
    ts = [T0 + 0.05 * i for i in range(1000)]
    whole = ServingWindow()
    for x, t in zip(lat, ts):
        whole.update(x, t)

    part = ServingWindow()
    for x, t in zip(lat[:400], ts[:400]):
        part.update(x, t)
    d = part.to_dict()
    assert json.loads(json.dumps(d)) == d
    restored = json_roundtrip(part)
    assert restored.result() == part.result()
    for x, t in zip(lat[400:], ts[400:]):
        restored.update(x, t)
    assert restored.result() == whole.result()

    assert json_roundtrip(ServingWindow()).result()["n"] == 0


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

from tripwire.detectors.serving import linear_percentiles  # noqa: E402

_latency = st.floats(0.0, 5000.0) | st.sampled_from([0.0, -0.0, 1.0, 1e-300, 7.5, float("inf"), float("nan"), -3.0])


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # (numpy interpolating between infinities)
@settings(max_examples=400, deadline=None, derandomize=True)
@given(arrays(np.float64, st.integers(1, 300), elements=_latency),
       st.lists(st.floats(0.0, 100.0) | st.sampled_from([0.0, 50.0, 95.0, 99.0, 100.0]), min_size=1, max_size=4))
def test_linear_percentiles_are_numpys_floats_bit_for_bit(values, percents):
    expected = np.percentile(values, percents).tolist()
    got = linear_percentiles(values, tuple(percents))
    assert [v.hex() for v in got] == [v.hex() for v in expected]
