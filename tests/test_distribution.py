import json
import math

import numpy as np
import pytest
from scipy import stats

from tripwire.detectors.distribution import (
    OTHER_LABEL,
    CategoricalDrift,
    NumericDrift,
    chi_square,
    drift_detector_for,
    js_distance,
    ks_binned,
    psi,
    wasserstein_binned,
)


def numeric_profile(sample: np.ndarray, k: int = 10) -> dict:
    """Profile in the reference format, built the way the reference builder would."""
    edges = np.unique(np.quantile(sample, np.linspace(0, 1, k + 1)[1:-1]))
    idx = np.searchsorted(edges, sample, side="right")
    counts = np.bincount(idx, minlength=edges.size + 1)
    sums = np.bincount(idx, weights=sample, minlength=edges.size + 1)
    return {
        "kind": "numeric", "count": int(sample.size), "missing_rate": 0.0,
        "edges": edges.tolist(),
        "fractions": (counts / sample.size).tolist(),
        "bin_means": (sums / np.maximum(counts, 1)).tolist(),
        "mean": float(sample.mean()), "std": float(sample.std()),
        "min": float(sample.min()), "max": float(sample.max()),
    }


CAT_PROFILE = {
    "kind": "categorical", "count": 392, "missing_rate": 0.0,
    "categories": {"USA": 0.625, "Japan": 0.2, "Europe": 0.175}, "other": 0.0,
}


def random_histograms(seed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    r = rng.dirichlet(np.ones(k))
    c = rng.dirichlet(np.ones(k))
    c[rng.integers(k)] = 0.0  # an empty bin exercises the eps clip / 0*log 0 paths
    return r, c / c.sum()


# ---------------------------------------------------------------- pure functions


@pytest.mark.parametrize("seed", range(5))
def test_psi_matches_hand_computation(seed):
    r, c = random_histograms(seed, 8)
    eps = 1e-4
    rc, cc = np.clip(r, eps, None), np.clip(c, eps, None)
    expected = np.sum((cc - rc) * np.log(cc / rc))
    assert psi(r, c, eps=eps) == pytest.approx(expected, rel=1e-12)
    assert psi(r, r) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("seed", range(5))
def test_js_distance_matches_hand_computation_and_scipy(seed):
    r, c = random_histograms(seed, 8)
    m = (r + c) / 2
    kl = lambda p, q: np.sum(p[p > 0] * np.log2(p[p > 0] / q[p > 0]))  # noqa: E731
    expected = math.sqrt(0.5 * kl(r, m) + 0.5 * kl(c, m))
    assert js_distance(r, c) == pytest.approx(expected, rel=1e-12)
    from scipy.spatial.distance import jensenshannon

    assert js_distance(r, c) == pytest.approx(jensenshannon(r, c, base=2), rel=1e-9)
    # counts are normalised, so scaling must not matter
    assert js_distance(r * 37, c * 5) == pytest.approx(expected, rel=1e-12)
    assert js_distance([1, 0], [0, 1]) == 1.0
    assert math.isnan(js_distance([1, 0], [0, 0]))


@pytest.mark.parametrize("seed", range(5))
def test_wasserstein_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    support = np.sort(rng.normal(size=12))
    r, c = random_histograms(seed, 12)
    expected = stats.wasserstein_distance(support, support, r, c)
    assert wasserstein_binned(support, r, c) == pytest.approx(expected, rel=1e-12)
    # unsorted support gives the same answer once bins are carried along
    perm = rng.permutation(12)
    assert wasserstein_binned(support[perm], r[perm], c[perm]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_ks_binned_equals_raw_ks_2samp_on_bin_representatives(seed):
    rng = np.random.default_rng(seed)
    reps = np.arange(10, dtype=float)  # one value per bin: binned == raw
    n_ref, n_cur = int(rng.integers(500, 5000)), int(rng.integers(50, 3000))
    ref = rng.choice(reps, size=n_ref, p=rng.dirichlet(np.ones(10) * 5))
    shift = rng.dirichlet(np.ones(10) * 5) if seed % 2 else None
    cur = rng.choice(reps, size=n_cur, p=shift) if shift is not None else rng.choice(ref, n_cur)
    edges = reps[1:] - 0.5
    ref_fr = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=10) / n_ref
    cur_counts = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=10)

    d, p = ks_binned(ref_fr, cur_counts, n_ref)
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    en = n_ref * n_cur / (n_ref + n_cur)
    assert p == pytest.approx(stats.kstwobign.sf(np.sqrt(en) * expected.statistic), rel=1e-9, abs=1e-300)
    # The limiting distribution stays close to scipy's exact-at-round(en) p-value.
    if expected.pvalue > 1e-12:
        assert p == pytest.approx(expected.pvalue, rel=0.15)


@pytest.mark.parametrize("seed", range(5))
def test_chi_square_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    k = 6
    ref = rng.dirichlet(np.ones(k) * 3)
    cur = rng.multinomial(800, rng.dirichlet(np.ones(k) * 3) if seed % 2 else ref)
    stat, p = chi_square(ref, cur)
    expected = stats.chisquare(cur, cur.sum() * ref)
    assert stat == pytest.approx(expected.statistic, rel=1e-10)
    assert p == pytest.approx(expected.pvalue, rel=1e-8, abs=1e-300)


def test_chi_square_reference_empty_bins():
    # empty on both sides: dropped, so it matches the test on the other bins only
    stat, p = chi_square([0.5, 0.5, 0.0], [45, 55, 0])
    expected = stats.chisquare([45, 55], [50, 50])
    assert (stat, p) == pytest.approx((expected.statistic, expected.pvalue))
    # observations in a bin the reference never saw: finite and highly significant
    stat, p = chi_square([0.5, 0.5, 0.0], [40, 40, 20])
    assert math.isfinite(stat) and p < 1e-10


# ---------------------------------------------------------------- NumericDrift


@pytest.fixture(scope="module")
def reference_sample() -> np.ndarray:
    return np.random.default_rng(0).normal(50.0, 10.0, size=5000)


def test_numeric_stable_vs_shifted(reference_sample):
    profile = numeric_profile(reference_sample)
    rng = np.random.default_rng(1)
    stable, shifted = NumericDrift(profile), NumericDrift(profile)
    stable.update_many(rng.normal(50.0, 10.0, size=2000))
    shifted.update_many(rng.normal(58.0, 10.0, size=2000))
    s, d = stable.result(), shifted.result()

    assert s["psi"] < 0.05 and s["ks_pvalue"] > 0.01 and s["js"] < 0.1
    assert s["wasserstein"] < 0.1
    assert d["psi"] > 0.25 and d["ks_pvalue"] < 1e-12 and d["js"] > 0.2
    assert d["wasserstein"] == pytest.approx(0.8, abs=0.1)  # 8 units / std 10
    assert d["mean"] == pytest.approx(58.0, abs=1.0)
    # the biggest change after an upward shift is in the open top bin
    assert d["top_bins"][0]["bin"].endswith(", inf)")
    assert len(d["top_bins"]) == 3


def test_numeric_result_uses_pure_functions(reference_sample):
    profile = numeric_profile(reference_sample)
    det = NumericDrift(profile)
    xs = np.random.default_rng(2).normal(53.0, 12.0, size=777)
    det.update_many(xs)
    res = det.result()
    counts = np.bincount(np.searchsorted(profile["edges"], xs, side="right"),
                         minlength=len(profile["fractions"]))
    ref = np.asarray(profile["fractions"])
    assert res["n"] == 777
    assert res["psi"] == pytest.approx(psi(ref, counts / 777))
    assert res["wasserstein"] == pytest.approx(
        stats.wasserstein_distance(profile["bin_means"], profile["bin_means"], ref, counts)
        / profile["std"])
    assert res["mean"] == pytest.approx(xs.mean())
    top = max(range(len(ref)), key=lambda i: abs(counts[i] / 777 - ref[i]))
    assert res["top_bins"][0]["current"] == pytest.approx(counts[top] / 777)
    assert json.loads(json.dumps(res)) == res  # plain JSON types only


def test_numeric_update_equals_update_many(reference_sample):
    profile = numeric_profile(reference_sample)
    xs = np.random.default_rng(3).normal(45.0, 15.0, size=3000)
    xs[::97] = np.nan
    xs = np.concatenate([xs, profile["edges"]])  # values on an edge go to the right bin
    one, many = NumericDrift(profile), NumericDrift(profile)
    for x in xs:
        one.update(x)
    many.update_many(xs[:1000])
    many.update_many(xs[1000:].tolist())
    assert np.array_equal(one.counts, many.counts)
    assert one.n == many.n == int(np.isfinite(xs).sum())
    assert one.result()["mean"] == pytest.approx(many.result()["mean"], rel=1e-12)


def test_numeric_bin_convention_and_missing_values():
    profile = {"kind": "numeric", "count": 100, "missing_rate": 0.0, "edges": [0.0, 1.0],
               "fractions": [0.2, 0.5, 0.3], "bin_means": [-1.0, 0.5, 2.0],
               "mean": 0.0, "std": 0.0, "min": -2.0, "max": 3.0}
    det = NumericDrift(profile)
    det.update_many([-5.0, 0.0, 0.99, 1.0, np.nan, np.inf, -np.inf])
    det.update(None)
    det.update(float("nan"))
    assert det.counts.tolist() == [1, 2, 1]
    assert det.n == 4
    det.reset()
    assert det.n == 0
    empty = det.result()
    assert empty["n"] == 0 and empty["psi"] is None and empty["top_bins"] == []
    det.update(2.0)
    # std == 0 falls back to a scale of 1
    assert det.result()["wasserstein"] == pytest.approx(
        stats.wasserstein_distance([-1, 0.5, 2], [-1, 0.5, 2], [0.2, 0.5, 0.3], [0, 0, 1]))
    labels = [b["bin"] for b in det.result()["top_bins"]]
    assert labels == ["[1.0, inf)", "[0.0, 1.0)", "[-inf, 0.0)"]


def test_numeric_roundtrip_through_json(reference_sample):
    det = NumericDrift(numeric_profile(reference_sample))
    det.update_many(np.random.default_rng(4).normal(52.0, 9.0, size=1234))
    clone = NumericDrift.from_dict(json.loads(json.dumps(det.to_dict())))
    assert clone.result() == det.result()
    more = np.random.default_rng(5).normal(40.0, 9.0, size=100)
    det.update_many(more)
    clone.update_many(more)
    assert clone.result() == det.result()


def test_numeric_rejects_bad_profiles():
    base = {"kind": "numeric", "count": 10, "edges": [0.0, 1.0], "fractions": [0.2, 0.5, 0.3],
            "bin_means": [-1.0, 0.5, 2.0], "std": 1.0}
    with pytest.raises(ValueError):
        NumericDrift({**base, "fractions": [0.5, 0.5]})
    with pytest.raises(ValueError):
        NumericDrift({**base, "edges": [1.0, 0.0]})
    with pytest.raises(ValueError):
        NumericDrift({**base, "kind": "categorical"})


# ---------------------------------------------------------------- CategoricalDrift


def test_categorical_stable_vs_shifted():
    rng = np.random.default_rng(6)
    stable, shifted = CategoricalDrift(CAT_PROFILE), CategoricalDrift(CAT_PROFILE)
    stable.update_many(rng.choice(["USA", "Japan", "Europe"], p=[0.625, 0.2, 0.175], size=2000))
    shifted.update_many(rng.choice(["USA", "Japan", "Europe"], p=[0.4, 0.4, 0.2], size=2000))
    s, d = stable.result(), shifted.result()
    assert s["psi"] < 0.05 and s["chi2_pvalue"] > 0.01
    assert d["psi"] > 0.15 and d["chi2_pvalue"] < 1e-12
    assert d["top_bins"][0]["bin"] == "USA"


def test_categorical_chi_square_matches_scipy_and_other_bucket():
    profile = {"kind": "categorical", "count": 1000,
               "categories": {"a": 0.5, "b": 0.3, "c": 0.1}, "other": 0.1}
    values = ["a"] * 480 + ["b"] * 290 + ["c"] * 130 + ["zz"] * 60 + ["yy"] * 40
    det = CategoricalDrift(profile)
    det.update_many(values)
    res = det.result()
    obs = [480, 290, 130, 100]
    expected = stats.chisquare(obs, np.array([0.5, 0.3, 0.1, 0.1]) * 1000)
    assert det.counts.tolist() == obs
    assert res["chi2_statistic"] == pytest.approx(expected.statistic)
    assert res["chi2_pvalue"] == pytest.approx(expected.pvalue)
    assert res["psi"] == pytest.approx(psi([0.5, 0.3, 0.1, 0.1], np.array(obs) / 1000))
    assert res["js"] == pytest.approx(js_distance([0.5, 0.3, 0.1, 0.1], obs))


def test_categorical_update_equals_update_many():
    rng = np.random.default_rng(7)
    values = rng.choice(["USA", "Japan", "Europe", "Korea", "Mars"], size=3000).tolist()
    values[::50] = [None] * len(values[::50])
    values[1::77] = [float("nan")] * len(values[1::77])
    one, many = CategoricalDrift(CAT_PROFILE), CategoricalDrift(CAT_PROFILE)
    for v in values:
        one.update(v)
    many.update_many(values[:1500])
    many.update_many(np.array(values[1500:], dtype=object))
    assert np.array_equal(one.counts, many.counts)
    assert one.n == many.n == sum(v is not None and v == v for v in values)


def test_categorical_matches_non_string_values_via_str():
    det = CategoricalDrift({"kind": "categorical", "count": 10,
                            "categories": {"1": 0.5, "2": 0.5}, "other": 0.0})
    det.update_many([1, 2, 2, 3])
    det.update(1)
    assert det.counts.tolist() == [2, 2, 1]
    assert OTHER_LABEL in [b["bin"] for b in det.result()["top_bins"]]


def test_categorical_roundtrip_through_json():
    det = CategoricalDrift(CAT_PROFILE)
    det.update_many(["USA", "Japan", "Korea", "USA"])
    clone = CategoricalDrift.from_dict(json.loads(json.dumps(det.to_dict())))
    assert clone.result() == det.result()
    for d in (det, clone):
        d.update_many(["Europe"] * 5)
    assert clone.result() == det.result()
    assert json.loads(json.dumps(det.result())) == det.result()


def test_drift_detector_for():
    assert isinstance(drift_detector_for(CAT_PROFILE), CategoricalDrift)
    assert isinstance(drift_detector_for(numeric_profile(np.arange(100.0))), NumericDrift)
    with pytest.raises(ValueError):
        drift_detector_for({"kind": "text"})


@pytest.mark.parametrize("seed", range(20))
def test_binned_reference_gives_exactly_the_statistics_of_the_functions(seed):
    from tripwire.detectors.statistics import BinnedReference

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 12))
    ref = rng.dirichlet(np.ones(k))
    ref[rng.random(k) < 0.2] = 0.0  # empty reference bins (chi-square keeps them only when observed)
    if ref.sum() == 0:
        ref[0] = 1.0
    ref = (ref / ref.sum()).tolist()
    support = rng.normal(size=k).tolist()  # unsorted: the Wasserstein distance sorts it
    counts = rng.multinomial(int(rng.integers(1, 2000)), rng.dirichlet(np.ones(k))).tolist()
    cur = [c / sum(counts) for c in counts]
    reference = BinnedReference(ref, n_ref=5000, support=support)
    assert reference.psi(cur) == psi(ref, cur)
    assert reference.js_distance(cur) == js_distance(ref, cur)
    assert reference.wasserstein(cur) == wasserstein_binned(support, ref, cur)
    assert reference.ks(counts) == ks_binned(ref, counts, 5000)
    assert reference.chi_square(counts) == chi_square(ref, counts)


@pytest.mark.parametrize("seed", range(10))
def test_fold_numeric_columns_counts_as_update_many_row_by_row(seed):
    from tripwire.detectors.distribution import fold_numeric_columns

    rng = np.random.default_rng(seed)
    profiles = [numeric_profile(rng.normal(size=500), k=int(rng.integers(2, 12))) for _ in range(4)]
    floats = rng.normal(scale=2.0, size=(4, 300))
    floats[1, ::7] = np.nan  # rows with non-finite values take the value-by-value path
    floats[2, 3] = np.inf
    floats[3, :50] = np.round(floats[3, :50])  # values on the edges themselves
    floats[3, 50:60] = profiles[3]["edges"][0]
    batched, one_by_one = [NumericDrift(p) for p in profiles], [NumericDrift(p) for p in profiles]
    fold_numeric_columns(batched, floats)
    for detector, row in zip(one_by_one, floats):
        detector.update_many(row)
    for a, b in zip(batched, one_by_one):
        assert a.summary() == b.summary()
