import json

import numpy as np
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
)

from tripwire.detectors.fairness import FairnessWindow

TOL = 1e-9


def close(a, b):
    return a == pytest.approx(b, rel=TOL, abs=TOL)


def roundtrip(w):
    return FairnessWindow.from_dict(json.loads(json.dumps(w.to_dict())))


def make_data(seed, n=6000, groups=("a", "b", "c", "d")):
    rng = np.random.default_rng(seed)
    weights = np.arange(len(groups), 0, -1, dtype=float)
    g = rng.choice(groups, n, p=weights / weights.sum())
    # Group-dependent base and selection rates so the disparities are not ~0.
    bias = {name: 0.15 * i for i, name in enumerate(groups)}
    shift = np.array([bias[x] for x in g])
    y = (rng.random(n) < 0.3 + shift).astype(int)
    pred = (rng.random(n) < 0.2 + shift + 0.3 * y).astype(int)
    return g, pred, y


def test_matches_fairlearn_fully_labelled():
    g, pred, y = make_data(seed=0)
    w = FairnessWindow(positive_class=1)
    for gi, p, t in zip(g, pred.tolist(), y.tolist()):
        w.update(gi, p, t)
    r = w.result()
    dpd = demographic_parity_difference(y, pred, sensitive_features=g)
    eod = equalized_odds_difference(y, pred, sensitive_features=g)
    dpr = demographic_parity_ratio(y, pred, sensitive_features=g)
    assert close(r["demographic_parity_difference"], dpd)
    assert close(r["equalized_odds_difference"], eod)
    assert close(r["disparate_impact_ratio"], dpr)
    assert dpd > 0.1 and eod > 0.1  # the fixture really is unfair
    counts = {name: int((g == name).sum()) for name in np.unique(g)}
    assert r["min_group_n"] == min(counts.values())
    for name, stats in r["groups"].items():
        m = g == name
        assert stats["n"] == stats["n_labelled"] == counts[name]
        assert close(stats["selection_rate"], pred[m].mean())
        assert close(stats["tpr"], pred[m & (y == 1)].mean())
        assert close(stats["fpr"], pred[m & (y == 0)].mean())


def test_unlabelled_events_count_for_selection_only():
    g, pred, y = make_data(seed=1)
    labelled = np.random.default_rng(2).random(len(g)) < 0.5
    w = FairnessWindow(positive_class=1)
    for gi, p, t, lab in zip(g, pred.tolist(), y.tolist(), labelled):
        w.update(gi, p, t if lab else None)
    r = w.result()
    # Selection rate is a property of decisions alone: every event counts.
    assert close(r["demographic_parity_difference"],
                 demographic_parity_difference(y, pred, sensitive_features=g))
    assert close(r["disparate_impact_ratio"],
                 demographic_parity_ratio(y, pred, sensitive_features=g))
    # Error rates need the truth: only labelled events count.
    assert close(r["equalized_odds_difference"],
                 equalized_odds_difference(y[labelled], pred[labelled],
                                           sensitive_features=g[labelled]))
    for name, stats in r["groups"].items():
        assert stats["n"] == int((g == name).sum())
        assert stats["n_labelled"] == int(((g == name) & labelled).sum())


def test_string_classes():
    g, pred, y = make_data(seed=3, groups=("x", "y", "z"), n=3000)
    names = np.array(["deny", "grant"])
    w = FairnessWindow(positive_class="grant")
    for gi, p, t in zip(g, names[pred].tolist(), names[y].tolist()):
        w.update(gi, p, t)
    r = w.result()
    assert close(r["demographic_parity_difference"],
                 demographic_parity_difference(y, pred, sensitive_features=g))
    assert close(r["equalized_odds_difference"],
                 equalized_odds_difference(y, pred, sensitive_features=g))


def test_group_without_positives_is_excluded_from_tpr():
    events = [
        ("a", 1, 1), ("a", 0, 0),                # TPR 1.0, FPR 0.0
        ("b", 1, 1), ("b", 1, 0), ("b", 0, 0),   # TPR 1.0, FPR 0.5
        ("c", 0, 0), ("c", 0, 0), ("c", 1, None),  # no labelled positives, FPR 0.0
    ]
    w = FairnessWindow(positive_class=1)
    for group, pred, label in events:
        w.update(group, pred, label)
    r = w.result()
    assert r["groups"]["c"]["tpr"] is None
    assert r["groups"]["c"]["fpr"] == 0.0
    assert r["groups"]["c"]["n"] == 3 and r["groups"]["c"]["n_labelled"] == 2
    # TPR spread over a, b is 0.0; FPR spread over a, b, c is 0.5.
    assert r["equalized_odds_difference"] == 0.5
    # fairlearn scores c's undefined TPR as 0.0 and would report 1.0 instead.
    lab = [e for e in events if e[2] is not None]
    fl = equalized_odds_difference(
        [e[2] for e in lab], [e[1] for e in lab], sensitive_features=[e[0] for e in lab]
    )
    assert fl == 1.0

    only_c_has_fpr = FairnessWindow(positive_class=1)
    for group, pred, label in [("a", 1, 1), ("b", 0, 1), ("c", 1, 0)]:
        only_c_has_fpr.update(group, pred, label)
    r = only_c_has_fpr.result()
    assert r["groups"]["a"]["fpr"] is None and r["groups"]["c"]["tpr"] is None
    assert r["equalized_odds_difference"] == 1.0  # TPR spread; FPR spread is 0.0


def test_degenerate_windows():
    w = FairnessWindow(positive_class=1)
    r = w.result()
    assert r["groups"] == {}
    assert r["demographic_parity_difference"] is None
    assert r["equalized_odds_difference"] is None
    assert r["disparate_impact_ratio"] is None
    assert r["min_group_n"] is None
    w.update("a", 0, None)
    w.update("b", 0, None)
    r = w.result()
    assert r["demographic_parity_difference"] == 0.0
    assert r["disparate_impact_ratio"] is None  # nobody selected: 0 / 0
    assert r["equalized_odds_difference"] is None  # nothing labelled
    one = FairnessWindow(positive_class=1)
    one.update("a", 1, 1)
    one.update("a", 0, 0)
    r = one.result()
    assert (r["demographic_parity_difference"], r["disparate_impact_ratio"],
            r["equalized_odds_difference"]) == (0.0, 1.0, 0.0)


def test_roundtrip_mid_stream_and_reset():
    g, pred, y = make_data(seed=4, n=2000)
    whole = FairnessWindow(positive_class=1)
    part = FairnessWindow(positive_class=1)
    for i, (gi, p, t) in enumerate(zip(g, pred.tolist(), y.tolist())):
        label = None if i % 3 == 0 else t
        whole.update(gi, p, label)
        part.update(gi, p, label)
        if i in (5, 1000):
            part = roundtrip(part)
    assert part.result() == whole.result()
    whole.reset()
    assert whole.result()["groups"] == {}


def test_non_string_groups_are_stringified():
    w = FairnessWindow(positive_class=1)
    w.update(1, 1, 1)
    w.update(np.int64(2), 0, 0)
    assert set(w.result()["groups"]) == {"1", "2"}
    assert roundtrip(w).result() == w.result()
