import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from tripwire.detectors.estimated import ConfidenceEstimate


def roundtrip(est):
    return ConfidenceEstimate.from_dict(json.loads(json.dumps(est.to_dict())))


def calibrated(seed, n, a=2.0, b=5.0):
    rng = np.random.default_rng(seed)
    p = rng.beta(a, b, n)
    y = (rng.random(n) < p).astype(int)  # labels drawn Bernoulli(p): calibrated by design
    return p, y


def feed(est, scores):
    for s in scores.tolist():
        est.update(s)
    return est


@pytest.mark.parametrize("threshold, beta", [(0.5, (2.0, 5.0)), (0.3, (2.0, 2.0))])
def test_estimate_tracks_realised_metrics_on_calibrated_scores(threshold, beta):
    p, y = calibrated(seed=0, n=200_000, a=beta[0], b=beta[1])
    r = feed(ConfidenceEstimate(positive_class=1, threshold=threshold), p).result()
    pred = (p >= threshold).astype(int)
    assert r["n"] == 200_000
    assert abs(r["estimated_accuracy"] - accuracy_score(y, pred)) < 0.01
    # Precision rests on the predicted positives only (~11 % of events for Beta(2, 5)),
    # so its sampling error is about 3x that of accuracy.
    assert abs(r["estimated_precision"] - precision_score(y, pred)) < 0.02
    assert abs(r["estimated_recall"] - recall_score(y, pred)) < 0.02
    assert abs(r["estimated_f1"] - f1_score(y, pred)) < 0.02


def test_estimate_detects_miscalibration():
    # Control: if the model is overconfident (true positive rate p / 2, not p) the
    # estimate is off (0.75 vs 0.625 in expectation), so the calibrated test above is
    # not passing vacuously.
    rng = np.random.default_rng(1)
    p = rng.random(200_000)
    y = (rng.random(200_000) < p / 2).astype(int)
    r = feed(ConfidenceEstimate(1), p).result()
    assert abs(r["estimated_accuracy"] - accuracy_score(y, (p >= 0.5).astype(int))) > 0.05


def test_expected_confusion_equals_numpy_by_hand():
    p, _ = calibrated(seed=2, n=50_000)
    threshold = 0.4
    est = feed(ConfidenceEstimate(positive_class="yes", threshold=threshold), p)
    pos = p >= threshold
    # cumsum adds strictly left to right, the same order as the stream, so the
    # comparison can be exact; adding 0.0 for the other branch is an exact no-op.
    tp = np.cumsum(np.where(pos, p, 0.0))[-1]
    fp = np.cumsum(np.where(pos, 1.0 - p, 0.0))[-1]
    fn = np.cumsum(np.where(pos, 0.0, p))[-1]
    tn = np.cumsum(np.where(pos, 0.0, 1.0 - p))[-1]
    cm = est.expected_confusion()
    assert cm == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    r = est.result()
    assert r["estimated_accuracy"] == (tp + tn) / len(p)
    assert r["estimated_precision"] == tp / (tp + fp)
    assert r["estimated_recall"] == tp / (tp + fn)
    assert r["estimated_f1"] == 2 * tp / (2 * tp + fp + fn)


def test_score_equal_to_threshold_is_predicted_positive():
    est = ConfidenceEstimate(1, threshold=0.25)
    est.update(0.25)
    assert est.expected_confusion() == {"tp": 0.25, "fp": 0.75, "fn": 0.0, "tn": 0.0}


def test_empty_and_zero_division():
    est = ConfidenceEstimate(1)
    assert est.result() == {
        "n": 0,
        "estimated_accuracy": None,
        "estimated_precision": None,
        "estimated_recall": None,
        "estimated_f1": None,
    }
    est.update(0.0)
    est.update(0.0)
    r = est.result()
    assert r["estimated_accuracy"] == 1.0
    assert r["estimated_precision"] == 0.0  # nothing predicted positive
    assert r["estimated_recall"] == 0.0 and r["estimated_f1"] == 0.0


def test_invalid_input():
    with pytest.raises(ValueError):
        ConfidenceEstimate(1, threshold=1.5)
    est = ConfidenceEstimate(1)
    for bad in (-0.01, 1.01, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            est.update(bad)
    assert est.n == 0


def test_roundtrip_mid_stream_and_reset():
    p, _ = calibrated(seed=3, n=5000)
    whole = ConfidenceEstimate(positive_class="churn", threshold=0.35)
    part = ConfidenceEstimate(positive_class="churn", threshold=0.35)
    for i, s in enumerate(p.tolist()):
        whole.update(s)
        part.update(s)
        if i in (3, 2500):
            part = roundtrip(part)
    assert part.to_dict() == whole.to_dict()
    assert part.result() == whole.result()
    assert part.threshold == 0.35 and part.positive_class == "churn"
    whole.reset()
    assert whole.result()["n"] == 0
    assert whole.expected_confusion() == {"tp": 0.0, "fp": 0.0, "fn": 0.0, "tn": 0.0}


def test_reference_calibration_corrects_overconfident_scores():
    """Scores twice as confident (in log-odds) as the truth: raw CBPE is off, calibrated CBPE is not."""
    from tripwire.detectors.estimated import score_calibration

    def sample(seed, n):
        rng = np.random.default_rng(seed)
        p_true = rng.beta(2, 2, n)
        logit = np.log(p_true / (1 - p_true))
        scores = 1 / (1 + np.exp(-2 * logit))
        labels = (rng.random(n) < p_true).astype(int)
        return scores, labels

    ref_scores, ref_labels = sample(1, 50_000)
    calibration = score_calibration(ref_scores, ref_labels, positive_class=1)
    scores, labels = sample(2, 50_000)
    realized = np.mean((scores >= 0.5).astype(int) == labels)
    raw, calibrated = ConfidenceEstimate(1), ConfidenceEstimate(1, calibration=calibration)
    for s in scores:
        raw.update(s)
        calibrated.update(s)
    assert abs(raw.result()["estimated_accuracy"] - realized) > 0.05
    assert abs(calibrated.result()["estimated_accuracy"] - realized) < 0.01
    restored = ConfidenceEstimate.from_dict(json.loads(json.dumps(calibrated.to_dict())))
    assert restored.result() == calibrated.result()


@pytest.mark.parametrize("calibrated", [False, True])
def test_update_many_equals_update_one_by_one(calibrated):
    rng = np.random.default_rng(5)
    scores = rng.random(2_000).tolist()
    calibration = {"edges": [0.2, 0.5, 0.8], "rates": [0.1, 0.3, 0.6, 0.9]} if calibrated else None
    one, many = ConfidenceEstimate(1, calibration=calibration), ConfidenceEstimate(1, calibration=calibration)
    for score in scores:
        one.update(score)
    many.update_many(scores[:1_000])
    many.update_many(scores[1_000:])
    assert many.result() == one.result()  # the same sums in the same order: equal, not approximately
    with pytest.raises(ValueError, match="probability"):
        many.update_many([0.5, 1.5])
    assert many.n == one.n + 1  # the score before the bad one is counted, as update() would
