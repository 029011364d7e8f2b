"""Tests for tripwire.detectors.change."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from river import drift

from tripwire.detectors.change import ChangeDetector

CHANGE_AT = 1000
RIVER_CLASSES = {"adwin": drift.ADWIN, "page_hinkley": drift.PageHinkley}


def bernoulli_errors() -> list[float]:
    """0/1 error indicators whose error rate jumps from 10 % to 40 % at CHANGE_AT."""
    rng = np.random.default_rng(7)
    before = rng.random(CHANGE_AT) < 0.10
    after = rng.random(CHANGE_AT) < 0.40
    return [float(x) for x in np.concatenate([before, after])]


def gaussian_shift() -> list[float]:
    """N(0, 1) then N(1.5, 1), switching at CHANGE_AT."""
    rng = np.random.default_rng(11)
    return [float(x) for x in np.concatenate([rng.normal(0.0, 1.0, CHANGE_AT), rng.normal(1.5, 1.0, CHANGE_AT)])]


STREAMS = {"bernoulli": bernoulli_errors, "gaussian": gaussian_shift}

# Page-Hinkley's default threshold of 50 is tuned for large shifts; a lower one exercises
# parameter pass-through and gives it alarms on the 0/1 stream too.
CASES = [
    ("adwin", {}),
    ("adwin", {"delta": 0.05, "clock": 1}),
    ("page_hinkley", {}),
    ("page_hinkley", {"threshold": 10.0, "min_instances": 50}),
]


def river_alarms(method: str, params: dict, stream: list[float]) -> list[int]:
    detector = RIVER_CLASSES[method](**params)
    alarms = []
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:
            alarms.append(i)
    return alarms


def wrapper_alarms(detector: ChangeDetector, stream: list[float], start: int = 0) -> list[int]:
    return [i for i, x in enumerate(stream, start) if detector.update(x)]


def plain_leaves(value) -> list:
    """Every scalar in a nested dict/list (a pickle would show up as one long string)."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in plain_leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in plain_leaves(v)]
    return [value]


def json_roundtrip(detector: ChangeDetector) -> ChangeDetector:
    return ChangeDetector.from_dict(json.loads(json.dumps(detector.to_dict())))


@pytest.mark.parametrize("stream_name", sorted(STREAMS))
@pytest.mark.parametrize("method,params", CASES)
def test_alarms_match_river(method, params, stream_name):
    stream = STREAMS[stream_name]()
    expected = river_alarms(method, params, stream)
    detector = ChangeDetector(method, **params)
    got = wrapper_alarms(detector, stream)
    assert got == expected
    assert detector.n == len(stream)
    assert detector.detections == len(expected)
    assert detector.last_detection == (expected[-1] if expected else None)


@pytest.mark.parametrize("method,params", CASES)
def test_detects_the_change(method, params):
    # Guards against the comparison above passing vacuously with no alarms at all.
    alarms = wrapper_alarms(ChangeDetector(method, **params), gaussian_shift())
    after = [i for i in alarms if i >= CHANGE_AT]
    assert after, alarms
    assert after[0] < CHANGE_AT + 300


def test_bernoulli_rise_detected_by_adwin():
    alarms = wrapper_alarms(ChangeDetector("adwin"), bernoulli_errors())
    assert any(CHANGE_AT <= i < CHANGE_AT + 300 for i in alarms), alarms


@pytest.mark.parametrize("stream_name", sorted(STREAMS))
@pytest.mark.parametrize("method,params", CASES)
def test_save_restore_midpoint_continues_identically(method, params, stream_name):
    stream = STREAMS[stream_name]()
    expected = river_alarms(method, params, stream)
    mid = len(stream) // 2

    detector = ChangeDetector(method, **params)
    first = wrapper_alarms(detector, stream[:mid])
    restored = json_roundtrip(detector)
    assert restored.n == mid
    assert restored.detections == len(first)
    second = wrapper_alarms(restored, stream[mid:], start=mid)
    assert first + second == expected
    assert restored.detections == len(expected)

    # The original keeps going independently of the copy.
    assert first + wrapper_alarms(detector, stream[mid:], start=mid) == expected


@pytest.mark.parametrize("method,params", CASES)
def test_repeated_checkpoints(method, params):
    stream = gaussian_shift() + bernoulli_errors()
    expected = river_alarms(method, params, stream)
    detector = ChangeDetector(method, **params)
    got = []
    for start in range(0, len(stream), 137):
        got += wrapper_alarms(detector, stream[start : start + 137], start=start)
        detector = json_roundtrip(detector)
    assert got == expected


@pytest.mark.parametrize("method", ["adwin", "page_hinkley"])
def test_checkpoint_right_after_an_alarm(method):
    # River resets its detector on the update after an alarm; that pending reset must survive.
    params = {"threshold": 10.0} if method == "page_hinkley" else {}
    stream = gaussian_shift()
    expected = river_alarms(method, params, stream)
    assert expected
    cut = expected[0] + 1
    detector = ChangeDetector(method, **params)
    first = wrapper_alarms(detector, stream[:cut])
    assert first[-1] == cut - 1
    assert detector.drift_detected
    restored = json_roundtrip(detector)
    assert restored.drift_detected
    assert first + wrapper_alarms(restored, stream[cut:], start=cut) == expected


def test_params_default_to_river_defaults():
    assert ChangeDetector("adwin").params == drift.ADWIN()._get_params()
    assert ChangeDetector("page_hinkley").params == drift.PageHinkley()._get_params()
    p = ChangeDetector("page_hinkley", threshold=7.0, mode="up").params
    assert p["threshold"] == 7.0 and p["mode"] == "up"
    assert p["delta"] == drift.PageHinkley().delta


def test_to_dict_is_plain_json():
    detector = ChangeDetector("adwin", delta=0.01)
    wrapper_alarms(detector, gaussian_shift())
    d = detector.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["method"] == "adwin"
    assert d["params"]["delta"] == 0.01
    assert d["n"] == 2 * CHANGE_AT
    assert isinstance(d["state"], dict)
    assert plain_leaves(d["state"]) and all(type(x) in (int, float, bool, str) for x in plain_leaves(d))
    restored = ChangeDetector.from_dict(d)
    assert restored.params == detector.params
    assert restored.method == "adwin"


def test_invalid_arguments():
    with pytest.raises(ValueError):
        ChangeDetector("cusum")
    with pytest.raises(TypeError):
        ChangeDetector("adwin", threshold=3.0)
    detector = ChangeDetector("page_hinkley")
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError):
            detector.update(bad)
    assert detector.n == 0


def test_from_dict_rejects_mismatched_method():
    d = ChangeDetector("adwin").to_dict()
    d["method"] = "page_hinkley"
    with pytest.raises(ValueError):
        ChangeDetector.from_dict(d)
    d["method"] = "nope"
    with pytest.raises(ValueError):
        ChangeDetector.from_dict(d)


def test_deterministic():
    stream = bernoulli_errors()
    a = wrapper_alarms(ChangeDetector("adwin", delta=0.05), stream)
    b = wrapper_alarms(ChangeDetector("adwin", delta=0.05), stream)
    assert a == b


@pytest.mark.parametrize("stream_name", sorted(STREAMS))
@pytest.mark.parametrize("method,params", CASES)
def test_restored_river_detector_is_the_uninterrupted_one(method, params, stream_name):
    # Not just the same alarms: the river detector rebuilt from plain data holds the very state of
    # one that never stopped, at every checkpoint of the stream.
    stream = STREAMS[stream_name]()
    uninterrupted = RIVER_CLASSES[method](**params)
    detector = ChangeDetector(method, **params)
    for start in range(0, len(stream), 250):
        for x in stream[start : start + 250]:
            uninterrupted.update(x)
            detector.update(x)
        detector = json_roundtrip(detector)
        river_now = detector._detector
        assert river_now.drift_detected == uninterrupted.drift_detected
        if method == "adwin":
            assert river_now._helper.__getstate__() == uninterrupted._helper.__getstate__()
            assert (river_now.width, river_now.total, river_now.variance) == (
                uninterrupted.width, uninterrupted.total, uninterrupted.variance)
        else:
            assert (river_now._x_mean.get(), river_now._x_mean.n) == (uninterrupted._x_mean.get(), uninterrupted._x_mean.n)
            for name in ("_sum_increase", "_sum_decrease", "_min_increase", "_max_decrease"):
                assert getattr(river_now, name) == getattr(uninterrupted, name)


def crafted_pickle(target) -> str:
    """A base64 pickle that creates ``target`` when unpickled (what an attacker would write)."""
    import base64
    import pickle

    class Payload:
        def __reduce__(self):
            return (open, (str(target), "w"))

    return base64.b64encode(pickle.dumps(Payload())).decode()


def test_crafted_pickle_state_is_refused_without_running_it(tmp_path):
    import base64
    import pickle

    control = tmp_path / "control"
    pickle.loads(base64.b64decode(crafted_pickle(control))).close()
    assert control.exists()  # the payload is live: unpickling it does write a file

    target = tmp_path / "pwned"
    d = ChangeDetector("adwin").to_dict()
    d["state"] = crafted_pickle(target)  # the old checkpoint layout: a pickle under "state"
    with pytest.raises(ValueError, match="no pickles"):
        ChangeDetector.from_dict(d)
    assert not target.exists()


@pytest.mark.parametrize("method", ["adwin", "page_hinkley"])
def test_garbage_states_are_refused_with_a_reason(method):
    detector = ChangeDetector(method)
    wrapper_alarms(detector, gaussian_shift())
    good = detector.to_dict()

    def mutated(path, value):
        d = json.loads(json.dumps(good))
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return d

    bad = [
        (None, "mapping"),
        ([1, 2, 3], "mapping"),
        (mutated(["river_version"], "0.0.1"), "river"),
        (mutated(["method"], "cusum"), "unknown change method"),
        (mutated(["state"], {"x": 1, "drift_detected": False}), "keys"),
        (mutated(["state", "drift_detected"], "yes"), "drift_detected"),
        (mutated(["params", "delta"], "os.system"), "delta"),
        (mutated(["n"], -1), "non-negative"),
    ]
    if method == "adwin":
        bad += [
            (mutated(["params", "max_buckets"], 10**9), "max_buckets"),  # would allocate gigabytes
            (mutated(["params", "clock"], 0), "clock"),  # a modulo by zero in the Rust code
            (mutated(["state", "width"], good["state"]["width"] + 1), "width"),
            (mutated(["state", "buckets"], []), "buckets"),
            (mutated(["state", "buckets", 0, "totals"], [1.0] * 50), "totals"),
            (mutated(["state", "total"], "nan"), "total"),
        ]
    else:
        bad += [(mutated(["params", "mode"], "sideways"), "mode"),
                (mutated(["state", "mean"], [1]), "mean")]
    for d, reason in bad:
        with pytest.raises(ValueError, match=reason):
            ChangeDetector.from_dict(d)
    ChangeDetector.from_dict(good)  # and the untouched state still loads


def test_river_drift_is_imported_without_its_datasets_and_scikit_learn():
    # A fresh interpreter: building a detector must not pull river.drift.datasets (scikit-learn),
    # and the real datasets stay importable afterwards.
    code = ("import sys; from tripwire.detectors.change import ChangeDetector; d = ChangeDetector('adwin'); "
            "[d.update(float(i % 5)) for i in range(300)]; "
            "print('sklearn' in sys.modules, 'river.drift.datasets' in sys.modules); "
            "from river.drift import datasets; print(datasets.AirlinePassengers.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "AirlinePassengers"]
