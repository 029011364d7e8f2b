import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    precision_score,
    recall_score,
    roc_auc_score,
)

from tripwire.detectors.performance import (
    ClassificationWindow,
    RegressionWindow,
    baseline_metrics,
    mann_whitney_auc,
)

TOL = 1e-9


def close(a, b):
    return a == pytest.approx(b, rel=TOL, abs=TOL)


def roundtrip(obj):
    return type(obj).from_dict(json.loads(json.dumps(obj.to_dict())))


# --------------------------------------------------------------------------- regression


def regression_data(seed=0, n=5000):
    rng = np.random.default_rng(seed)
    y = rng.normal(10.0, 5.0, n)
    y[rng.random(n) < 0.05] = 0.0  # exact zeros exercise the MAPE exclusion
    pred = y + rng.normal(0.0, 2.0, n)
    return pred, y


def test_regression_matches_sklearn():
    pred, y = regression_data()
    w = RegressionWindow()
    for p, t in zip(pred, y):
        w.update(p, t)
    r = w.result()
    nz = y != 0
    assert r["n"] == len(y)
    assert close(r["mae"], mean_absolute_error(y, pred))
    assert close(r["rmse"], math.sqrt(mean_squared_error(y, pred)))
    assert close(r["mape"], mean_absolute_percentage_error(y[nz], pred[nz]))
    assert nz.sum() < len(y)  # the zeros really were there and really were skipped


def test_regression_empty_and_all_zero_labels():
    w = RegressionWindow()
    assert w.result() == {"n": 0, "mae": None, "rmse": None, "mape": None}
    w.update(1.0, 0.0)
    w.update(-1.0, 0.0)
    assert w.result() == {"n": 2, "mae": 1.0, "rmse": 1.0, "mape": None}


def test_regression_rejects_non_finite():
    w = RegressionWindow()
    with pytest.raises(ValueError):
        w.update(float("nan"), 1.0)
    with pytest.raises(ValueError):
        w.update(1.0, float("inf"))
    assert w.n == 0


def test_regression_roundtrip_mid_stream_and_reset():
    pred, y = regression_data(seed=1, n=1000)
    whole = RegressionWindow()
    part = RegressionWindow()
    for i, (p, t) in enumerate(zip(pred, y)):
        whole.update(p, t)
        part.update(p, t)
        if i == 400:
            part = roundtrip(part)
    assert part.result() == whole.result()
    whole.reset()
    assert whole.result()["n"] == 0 and whole.result()["mae"] is None


# ----------------------------------------------------------------------- classification


def classification_data(seed=0, n=4000, ties=False):
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    if ties:
        score = np.round(score, 1)
    y = (rng.random(n) < score).astype(int)
    pred = (score >= 0.5).astype(int)
    # Flip a few decisions so predictions are not a pure function of the score.
    flip = rng.random(n) < 0.1
    pred[flip] = 1 - pred[flip]
    return pred, y, score


def sklearn_reference(pred, y, score, pos):
    yt = np.asarray([v == pos for v in y])
    yp = np.asarray([v == pos for v in pred])
    return {
        "accuracy": accuracy_score(y, pred),
        "precision": precision_score(yt, yp, zero_division=0),
        "recall": recall_score(yt, yp, zero_division=0),
        "f1": f1_score(yt, yp, zero_division=0),
        "roc_auc": roc_auc_score(yt, score),
        "log_loss": log_loss(yt, score),
    }


def feed(w, pred, y, score):
    for p, t, s in zip(pred, y, score):
        w.update(p, t, s)
    return w.result()


@pytest.mark.parametrize("ties", [False, True])
def test_classification_matches_sklearn(ties):
    pred, y, score = classification_data(seed=2, ties=ties)
    r = feed(ClassificationWindow(1), pred.tolist(), y.tolist(), score.tolist())
    ref = sklearn_reference(pred, y, score, 1)
    assert r["n"] == len(y)
    for key, value in ref.items():
        assert close(r[key], value), key


def test_classification_string_labels_and_positive_class():
    pred, y, score = classification_data(seed=3)
    names = np.array(["reject", "accept"])
    pred_s, y_s = names[pred].tolist(), names[y].tolist()
    r = feed(ClassificationWindow("accept"), pred_s, y_s, score.tolist())
    ref = sklearn_reference(pred_s, y_s, score, "accept")
    for key, value in ref.items():
        assert close(r[key], value), key
    # Choosing the other class as positive must change precision/recall, i.e. the
    # positive class is really used.
    other = feed(ClassificationWindow("reject"), pred_s, y_s, (1 - score).tolist())
    assert close(other["precision"], precision_score(y_s, pred_s, pos_label="reject"))
    assert not close(other["precision"], r["precision"])
    assert close(other["roc_auc"], r["roc_auc"])


def test_classification_bool_labels_with_int_positive_class():
    pred, y, score = classification_data(seed=4, n=500)
    r = feed(ClassificationWindow(1), pred.astype(bool).tolist(), y.astype(bool).tolist(), score)
    ref = sklearn_reference(pred, y, score, 1)
    for key, value in ref.items():
        assert close(r[key], value), key


def test_classification_multiclass_accuracy_is_exact_match():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 2000)
    pred = np.where(rng.random(2000) < 0.7, y, rng.integers(0, 3, 2000))
    r = feed(ClassificationWindow(2), pred.tolist(), y.tolist(), [None] * 2000)
    assert close(r["accuracy"], accuracy_score(y, pred))
    assert close(r["precision"], precision_score(y == 2, pred == 2))
    assert close(r["recall"], recall_score(y == 2, pred == 2))
    assert close(r["f1"], f1_score(y == 2, pred == 2))
    assert r["roc_auc"] is None and r["log_loss"] is None


def test_log_loss_clipping_matches_sklearn_at_the_extremes():
    y = [1, 0, 1, 0, 1, 0]
    score = [0.0, 1.0, 1.0, 0.0, 1e-20, 1 - 1e-17]
    w = ClassificationWindow(1)
    for t, s in zip(y, score):
        w.update(t, t, s)
    assert close(w.result()["log_loss"], log_loss(y, score))


def test_zero_division_and_single_class():
    w = ClassificationWindow(1)
    for _ in range(5):
        w.update(0, 0, 0.2)
    r = w.result()
    assert r["precision"] == precision_score([0] * 5, [0] * 5, zero_division=0) == 0.0
    assert r["recall"] == 0.0 and r["f1"] == 0.0 and r["accuracy"] == 1.0
    assert r["roc_auc"] is None  # one class only
    assert close(r["log_loss"], -math.log(0.8))


def test_empty_window():
    r = ClassificationWindow(1).result()
    assert r["n"] == 0
    assert all(r[k] is None for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"))


def test_partial_scores_use_scored_events_only():
    pred, y, score = classification_data(seed=6, n=3000)
    has = np.random.default_rng(7).random(3000) < 0.6
    scores = [float(s) if h else None for s, h in zip(score, has)]
    scores[0] = float("nan")  # NaN is a missing score, as pandas writes it
    has[0] = False
    r = feed(ClassificationWindow(1), pred.tolist(), y.tolist(), scores)
    assert close(r["accuracy"], accuracy_score(y, pred))
    assert close(r["roc_auc"], roc_auc_score(y[has], score[has]))
    assert close(r["log_loss"], log_loss(y[has], score[has]))


def test_invalid_scores_rejected():
    w = ClassificationWindow(1)
    for bad in (1.5, -0.1, float("inf")):
        with pytest.raises(ValueError):
            w.update(1, 1, bad)
    assert w.n == 0


def test_auc_follows_new_events_after_result():
    w = ClassificationWindow(1)
    w.update(1, 1, 0.9)
    w.update(0, 0, 0.1)
    assert w.result()["roc_auc"] == 1.0
    w.update(0, 1, 0.05)
    assert close(w.result()["roc_auc"], 0.5)


def test_classification_roundtrip_mid_stream_and_reset():
    pred, y, score = classification_data(seed=8, n=1500, ties=True)
    whole = ClassificationWindow(1)
    part = ClassificationWindow(1)
    for i, (p, t, s) in enumerate(zip(pred.tolist(), y.tolist(), score.tolist())):
        whole.update(p, t, s)
        part.update(p, t, s)
        if i in (10, 700):
            part = roundtrip(part)
    assert part.result() == whole.result()
    assert part.to_dict() == whole.to_dict()
    whole.reset()
    assert whole.result()["n"] == 0 and whole.to_dict()["scores"] == []


def test_numpy_positive_class_is_json_serialisable():
    w = ClassificationWindow(np.int64(1))
    w.update(np.int64(1), np.int64(1), np.float64(0.7))
    assert roundtrip(w).result() == w.result()


# ---------------------------------------------------------------------------- baseline


def test_baseline_metrics_equals_windows():
    pred, y = regression_data(seed=9, n=800)
    w = RegressionWindow()
    for p, t in zip(pred, y):
        w.update(p, t)
    assert baseline_metrics("regression", pred, y) == w.result()

    pred, y, score = classification_data(seed=10, n=800)
    c = ClassificationWindow(1)
    feed(c, pred, y, score)
    b = baseline_metrics("classification", pred, y, score, positive_class=1)
    assert b == c.result()
    assert close(b["roc_auc"], roc_auc_score(y, score))
    no_scores = baseline_metrics("classification", pred, y, positive_class=1)
    assert no_scores["roc_auc"] is None and no_scores["accuracy"] == b["accuracy"]


def test_baseline_metrics_errors():
    with pytest.raises(ValueError):
        baseline_metrics("ranking", [1], [1])
    with pytest.raises(ValueError):
        baseline_metrics("classification", [1], [1])  # no positive_class
    with pytest.raises(ValueError):
        baseline_metrics("regression", [1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        baseline_metrics("classification", [1, 0], [1, 0], [0.5], positive_class=1)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, -0.0, 0.25, 0.5, 1.0, 5e-324]) | st.floats(0.0, 1.0), st.booleans()),
                max_size=80))
def test_mann_whitney_auc_counts_every_pair(scored):
    """The AUC is the share of (positive, negative) pairs ranked right, ties counting one half: pair by pair here."""
    scores = [score for score, _ in scored]
    is_positive = [positive for _, positive in scored]
    positives = [score for score, positive in scored if positive]
    negatives = [score for score, positive in scored if not positive]
    if not positives or not negatives:
        assert mann_whitney_auc(scores, is_positive) is None
        return
    twice_u = sum(2 * (p > n) + (p == n) for p in positives for n in negatives)
    assert mann_whitney_auc(scores, is_positive) == twice_u / (2 * len(positives) * len(negatives))
