"""Reference profiles: bins, fractions and baselines against numpy / scikit-learn; errors that say why."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, roc_auc_score

from tripwire.reference import ReferenceError, build_reference, load_reference, save_reference


@pytest.fixture()
def frame():
    rng = np.random.default_rng(3)
    n = 2000
    weight = rng.normal(3000, 800, n)
    weight[:40] = np.nan
    return pd.DataFrame({
        "weight": weight,
        "origin": rng.choice(["USA", "Europe", "Japan"], n, p=[0.6, 0.2, 0.2]),
        "region": rng.choice(["EU", "US"], n),
        "target": rng.normal(20, 5, n),
        "prediction": rng.normal(20, 5, n),
    })


def test_numeric_profile_matches_numpy(frame):
    reference = build_reference(frame, model="m", task="regression", target="target", prediction="prediction",
                                attributes=["region"])
    profile = reference["features"]["weight"]
    finite = frame["weight"].dropna().to_numpy()
    expected_edges = np.quantile(finite, np.linspace(0, 1, 11)[1:-1])
    assert np.allclose(profile["edges"], expected_edges)
    counts = np.bincount(np.searchsorted(expected_edges, finite, side="right"), minlength=10)
    assert np.allclose(profile["fractions"], counts / finite.size)
    assert profile["missing_rate"] == pytest.approx(40 / 2000)
    assert profile["mean"] == pytest.approx(finite.mean()) and profile["std"] == pytest.approx(finite.std())
    assert set(reference["features"]) == {"weight", "origin"} and reference["attributes"] == ["region"]
    assert reference["baseline"]["mae"] == pytest.approx(mean_absolute_error(frame["target"], frame["prediction"]))


def test_categorical_profile_and_other_bucket(frame):
    reference = build_reference(frame, model="m", task="regression", target="target", prediction="prediction")
    origin = reference["features"]["origin"]
    expected = frame["origin"].value_counts(normalize=True)
    assert origin["categories"] == pytest.approx(expected.to_dict()) and origin["other"] == 0


def test_classification_baseline_and_score_profile():
    rng = np.random.default_rng(5)
    score = rng.random(1000)
    frame = pd.DataFrame({"x": rng.normal(size=1000), "score": score, "pred": (score > 0.5).astype(int),
                          "y": (rng.random(1000) < score).astype(int)})
    reference = build_reference(frame, model="c", task="classification", target="y", prediction="pred", score="score")
    assert reference["positive_class"] == 1
    assert reference["baseline"]["roc_auc"] == pytest.approx(roc_auc_score(frame["y"], frame["score"]))
    assert reference["score_profile"]["kind"] == "numeric"


def test_save_and_load_round_trip(frame, tmp_path):
    reference = build_reference(frame, model="m", task="regression", target="target", prediction="prediction")
    save_reference(reference, tmp_path / "reference.json")
    assert load_reference(tmp_path / "reference.json") == reference


@pytest.mark.parametrize("kwargs, message", [
    ({"target": "nope"}, "target column 'nope' is not in the data"),
    ({"task": "ranking"}, "task must be one of regression, classification"),
])
def test_bad_arguments_say_why(frame, kwargs, message):
    arguments = {"model": "m", "task": "regression", "target": "target", "prediction": "prediction", **kwargs}
    with pytest.raises(ReferenceError, match=message):
        build_reference(frame, **arguments)


def test_loading_something_else_fails_clearly(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(ReferenceError, match="not a tripwire reference"):
        load_reference(tmp_path / "x.json")
    with pytest.raises(ReferenceError, match="no such reference file"):
        load_reference(tmp_path / "missing.json")
