"""Tests for tripwire.detectors.quality."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tripwire.detectors.quality import FeatureQuality

NUMERIC = {
    "kind": "numeric", "count": 392, "missing_rate": 0.0,
    "edges": [2000.0, 3000.0, 4000.0], "fractions": [0.25, 0.25, 0.25, 0.25],
    "bin_means": [1800.0, 2500.0, 3500.0, 4500.0],
    "mean": 2970.4, "std": 846.8, "min": 1613.0, "max": 5140.0,
}
CATEGORICAL = {
    "kind": "categorical", "count": 392, "missing_rate": 0.0,
    "categories": {"USA": 0.625, "Japan": 0.2, "Europe": 0.175}, "other": 0.0,
}


def json_roundtrip(q: FeatureQuality) -> FeatureQuality:
    return FeatureQuality.from_dict(json.loads(json.dumps(q.to_dict())))


# ---- numeric -----------------------------------------------------------------------------


def test_numeric_classification():
    q = FeatureQuality(NUMERIC)
    q.update_many([
        2000, 3100.5, 1613.0, 5140,              # valid, bounds inclusive
        None, float("nan"),                      # missing
        "3000", True, False, [1.0], {"a": 1},    # type errors (a numeric string is still a str)
        1612.9, 5140.0001, math.inf, -math.inf,  # out of range
    ])
    r = q.result()
    assert r["n"] == 15
    assert r["missing_rate"] == pytest.approx(2 / 15)
    assert r["type_error_rate"] == pytest.approx(5 / 15)
    assert r["out_of_range_rate"] == pytest.approx(4 / 15)
    assert r["unseen_rate"] == 0.0
    assert r["unseen_examples"] == []


def test_numeric_accepts_numpy_scalars():
    q = FeatureQuality(NUMERIC)
    q.update_many([np.float64(2000.0), np.int64(3000), np.float32(9999.0), np.float64("nan"), np.bool_(True)])
    assert (q.n, q.missing, q.type_errors, q.out_of_range) == (5, 1, 1, 1)


def test_numeric_without_bounds_never_out_of_range():
    q = FeatureQuality({"kind": "numeric", "min": None, "max": None})
    q.update_many([-1e300, 0, 1e300, math.inf])
    assert q.result()["out_of_range_rate"] == 0.0


def test_numeric_random_against_numpy():
    rng = np.random.default_rng(3)
    raw = rng.normal(3000.0, 1200.0, 5000)
    kind = rng.integers(0, 10, raw.size)   # 0: None, 1: NaN, 2: str, 3: bool, else the number
    values, is_missing, is_type_error = [], [], []
    for x, k in zip(raw, kind):
        if k == 0:
            values.append(None)
        elif k == 1:
            values.append(float("nan"))
        elif k == 2:
            values.append(str(x))
        elif k == 3:
            values.append(bool(x > 3000))
        else:
            values.append(float(x) if k % 2 else int(x))
        is_missing.append(k in (0, 1))
        is_type_error.append(k in (2, 3))
    numbers_ = np.array([float(v) if k > 3 else np.nan for v, k in zip(values, kind)])
    expected_oor = int(np.sum((numbers_ < NUMERIC["min"]) | (numbers_ > NUMERIC["max"])))
    assert expected_oor > 100   # the fixture really exercises the range check

    q = FeatureQuality(NUMERIC)
    q.update_many(values)
    r = q.result()
    assert r["n"] == 5000
    assert r["missing_rate"] == sum(is_missing) / 5000
    assert r["type_error_rate"] == sum(is_type_error) / 5000
    assert r["out_of_range_rate"] == expected_oor / 5000

    one_by_one = FeatureQuality(NUMERIC)
    for v in values:
        one_by_one.update(v)
    assert one_by_one.result() == r


# ---- categorical -------------------------------------------------------------------------


def test_categorical_classification():
    q = FeatureQuality(CATEGORICAL)
    q.update_many(["USA", "Japan", "Europe", None, float("nan"), ["USA"], {"x": 1}, "Mars", "usa", 3])
    r = q.result()
    assert r["n"] == 10
    assert r["missing_rate"] == pytest.approx(0.2)
    assert r["type_error_rate"] == pytest.approx(0.2)
    assert r["unseen_rate"] == pytest.approx(0.3)
    assert r["out_of_range_rate"] == 0.0
    assert r["unseen_examples"] == ["Mars", "usa", "3"]


def test_unseen_examples_distinct_first_five():
    q = FeatureQuality(CATEGORICAL)
    q.update_many(["a", "b", "a", "c", "USA", "d", "b", "e", "f", "g"])
    assert q.unseen == 9
    assert q.result()["unseen_examples"] == ["a", "b", "c", "d", "e"]


def test_other_mass_means_no_unseen():
    q = FeatureQuality({**CATEGORICAL, "other": 0.05})
    q.update_many(["USA", "Mars", "Venus"])
    r = q.result()
    assert r["unseen_rate"] == 0.0
    assert r["unseen_examples"] == []


def test_numbers_compared_as_strings():
    q = FeatureQuality({"kind": "categorical", "categories": {"1": 0.5, "2": 0.5}, "other": 0.0})
    q.update_many([1, "2", 2, 3, "3", 1.5])
    assert q.unseen == 3
    assert q.result()["unseen_examples"] == ["3", "1.5"]


# ---- shared behaviour --------------------------------------------------------------------


@pytest.mark.parametrize("profile", [NUMERIC, CATEGORICAL])
def test_empty_and_reset(profile):
    q = FeatureQuality(profile)
    empty = {"n": 0, "missing_rate": None, "type_error_rate": None, "out_of_range_rate": None,
             "unseen_rate": None, "unseen_examples": []}
    assert q.result() == empty
    q.update_many([None, "Mars", 99999, [1]])
    assert q.result()["n"] == 4
    q.reset()
    assert q.result() == empty


@pytest.mark.parametrize("profile", [NUMERIC, CATEGORICAL])
def test_state_roundtrip_and_continue(profile):
    rng = np.random.default_rng(5)
    pool = [None, float("nan"), "USA", "Mars", "Jupiter", 1500.0, 2500, True, [1], 6000.0, "Japan", "Pluto"]
    values = [pool[i] for i in rng.integers(0, len(pool), 2000)]

    whole = FeatureQuality(profile)
    whole.update_many(values)

    part = FeatureQuality(profile)
    part.update_many(values[:777])
    d = part.to_dict()
    assert json.loads(json.dumps(d)) == d
    restored = json_roundtrip(part)
    assert restored.result() == part.result()
    restored.update_many(values[777:])
    assert restored.result() == whole.result()
    assert whole.result()["n"] == 2000


def test_invalid_profile_kind():
    with pytest.raises(ValueError):
        FeatureQuality({"kind": "text"})
    with pytest.raises(ValueError):
        FeatureQuality({})


def test_check_numeric_columns_counts_as_update_many_column_by_column():
    from tripwire.detectors.quality import check_numeric_columns

    columns = [(0.5, 2.0, float("nan"), -1.0), (1, 2, 3, 4), (2**60, 1.0, 0.0, 2.0), (float("inf"), 0.5, 0.1, 0.2)]
    profiles = [{"kind": "numeric", "min": 0.0, "max": 1.0}, {"kind": "numeric", "min": 2, "max": 3},
                {"kind": "numeric", "min": 0.0, "max": 2**60 - 1}, {"kind": "numeric"}]
    batched = [FeatureQuality(p) for p in profiles]
    check_numeric_columns(batched, columns, np.array(columns, dtype=float))
    for check, column, profile in zip(batched, columns, profiles):
        one = FeatureQuality(profile)
        one.update_many(column)
        assert check.summary() == one.summary()
    assert [check.n for check in batched] == [4] * 4
