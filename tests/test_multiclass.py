"""Multi-class models: metrics equal scikit-learn's, one-vs-rest CBPE, canonical classes, the NannyML drop."""

import json
import math
import re

import numpy as np
import orjson
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from bench import multiclass as nannyml_data
from tripwire.classes import ClassSet, distinct_classes
from tripwire.cli import main as cli_main
from tripwire.config import ConfigError, parse_config
from tripwire.detectors.estimated import MulticlassConfidenceEstimate, score_calibration
from tripwire.detectors.fairness import FairnessWindow
from tripwire.detectors.multiclass import MulticlassWindow, multiclass_baseline
from tripwire.engine import Engine
from tripwire.events import decode, format_ts
from tripwire.reference import ReferenceError, build_reference
from tripwire.replay import deadletter_path, replay_file, run_records

T0 = 1_795_824_000.0


def synthetic(seed, n, classes=("a", "b", "c", "d"), shift=0.0):
    """One softmax model (fixed weights) with calibrated probabilities: labels drawn from them,
    prediction = argmax; ``seed`` draws the sample, ``shift`` moves the features."""
    k = len(classes)
    weights = np.random.default_rng(99).normal(size=(2, k)) * 2
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) + shift
    logits = x @ weights
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    names = np.array(classes, dtype=object)
    frame = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "y": names[y], "pred": names[p.argmax(1)]})
    for j, c in enumerate(classes):
        frame[f"p_{c}"] = p[:, j]
    return frame


# -- metrics against scikit-learn ----------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_window_metrics_equal_scikit_learn(seed):
    frame = synthetic(seed, 800 + 100 * seed)
    classes = ["a", "b", "c", "d"]
    probabilities = frame[[f"p_{c}" for c in classes]].to_numpy()
    result = multiclass_baseline(classes, frame["pred"], frame["y"], probabilities.tolist())
    y, p = frame["y"], frame["pred"]
    assert result["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-12)
    assert result["macro_f1"] == pytest.approx(f1_score(y, p, labels=classes, average="macro", zero_division=0), abs=1e-12)
    assert result["weighted_f1"] == pytest.approx(
        f1_score(y, p, labels=classes, average="weighted", zero_division=0), abs=1e-12)
    precision, recall, f1, _support = precision_recall_fscore_support(y, p, labels=classes, zero_division=0)
    for j, c in enumerate(classes):
        assert result[f"precision:{c}"] == pytest.approx(precision[j], abs=1e-12)
        assert result[f"recall:{c}"] == pytest.approx(recall[j], abs=1e-12)
        assert result[f"f1:{c}"] == pytest.approx(f1[j], abs=1e-12)
    assert result["macro_precision"] == pytest.approx(precision.mean(), abs=1e-12)
    assert result["macro_recall"] == pytest.approx(recall.mean(), abs=1e-12)
    assert result["roc_auc"] == pytest.approx(
        roc_auc_score(y, probabilities, multi_class="ovr", average="macro", labels=classes), abs=1e-12)
    assert result["log_loss"] == pytest.approx(log_loss(y, probabilities, labels=classes), abs=1e-12)


def test_window_with_integer_classes_a_missing_class_and_extreme_scores():
    rng = np.random.default_rng(11)
    classes = [0, 1, 2]
    labels = rng.choice([0, 1], size=300).tolist()  # class 2 never occurs among the labels
    predictions = rng.choice(classes, size=300).tolist()
    scores = rng.dirichlet([0.3, 0.3, 0.3], size=300)
    scores[:5] = [1.0, 0.0, 0.0]  # log loss clips a probability of 0 as scikit-learn does
    window = MulticlassWindow(classes)
    for prediction, label, row in zip(predictions, labels, scores.tolist()):
        window.update(prediction, label, row)
    result = window.result()
    assert result["macro_f1"] == pytest.approx(
        f1_score(labels, predictions, labels=classes, average="macro", zero_division=0), abs=1e-12)
    assert result["recall:2"] == 0.0
    assert result["roc_auc"] is None  # undefined for class 2: scikit-learn says nan
    with pytest.warns(UserWarning, match="ROC AUC score is not defined"):
        assert math.isnan(roc_auc_score(labels, scores, multi_class="ovr", labels=classes))
    assert result["log_loss"] == pytest.approx(log_loss(labels, scores, labels=classes), abs=1e-12)


def test_window_rejects_values_that_are_no_class_and_round_trips():
    window = MulticlassWindow([0, 1, 2])
    with pytest.raises(ValueError, match="not one of the classes"):
        window.update("1", 1)  # the engine maps spellings first; the window is strict
    with pytest.raises(ValueError, match="3 classes"):
        window.update(1, 1, [0.5, 0.5])
    window.update(1, 2, [0.2, 0.5, 0.3])
    window.update(2, 2, [0.1, 0.1, 0.8])
    restored = MulticlassWindow.from_dict(json.loads(json.dumps(window.to_dict())))
    assert restored.result() == window.result()
    restored.reset()
    assert restored.result()["accuracy"] is None and restored.n == 0


# -- CBPE, one-vs-rest ---------------------------------------------------------------------------
def independent_cbpe(probabilities, calibrations):
    """The same estimate written with numpy over the whole matrix."""
    p = np.asarray(probabilities, dtype=float)
    predicted = p.argmax(1)
    q = np.column_stack([np.asarray(c["rates"])[np.searchsorted(c["edges"], p[:, j], side="right")]
                         for j, c in enumerate(calibrations)])
    q = q / q.sum(1, keepdims=True)
    one_hot = np.eye(p.shape[1], dtype=bool)[predicted]
    tp = (q * one_hot).sum(0)
    fp = ((1 - q) * one_hot).sum(0)
    fn = (q * ~one_hot).sum(0)
    return tp.sum() / len(p), np.mean(2 * tp / (2 * tp + fp + fn))


def test_multiclass_cbpe_equals_an_independent_computation_and_tracks_realized():
    classes = ["a", "b", "c", "d"]
    reference = synthetic(5, 6000)
    columns = [f"p_{c}" for c in classes]
    calibrations = [score_calibration(reference[col], reference["y"], c) for col, c in zip(columns, classes)]
    current = synthetic(5, 3000, shift=0.8)  # covariate shift, same concept: CBPE's premise
    estimator = MulticlassConfidenceEstimate(classes, calibrations)
    for row in current[columns].to_numpy().tolist():
        estimator.update(row)
    result = estimator.result()
    accuracy, macro_f1 = independent_cbpe(current[columns], calibrations)
    assert result["estimated_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert result["estimated_macro_f1"] == pytest.approx(macro_f1, abs=1e-12)
    predicted = current[columns].to_numpy().argmax(1)
    realized = accuracy_score(current["y"], np.array(classes)[predicted])
    realized_f1 = f1_score(current["y"], np.array(classes)[predicted], labels=classes, average="macro")
    assert abs(result["estimated_accuracy"] - realized) < 0.03
    assert abs(result["estimated_macro_f1"] - realized_f1) < 0.04
    assert MulticlassConfidenceEstimate.from_dict(json.loads(json.dumps(estimator.to_dict()))).result() == result


# -- canonical classes ---------------------------------------------------------------------------
def test_class_spellings_map_onto_the_reference_classes():
    numbers = ClassSet([0, 1, 2])
    assert [numbers.canonical(v) for v in ("2", 2.0, " 1", True, False, "0.0")] == [2, 2, 1, 1, 0, 0]
    assert numbers.canonical("3") is None and numbers.canonical("two") is None and numbers.canonical(None) is None
    booleans = ClassSet([False, True])
    assert [booleans.canonical(v) for v in ("true", "FALSE", 1, "0")] == [True, False, True, False]
    assert ClassSet(["A", "a"]).canonical("a") == "a"  # case is kept: two classes
    with pytest.raises(ValueError, match="same class"):
        ClassSet([1, "1"])
    assert distinct_classes([1, "1", 2.0, None, float("nan"), "x"]) == [1, 2.0, "x"]


def binary_reference():
    rng = np.random.default_rng(3)
    score = rng.random(4000)
    frame = pd.DataFrame({"x": rng.normal(size=4000), "score": score, "pred": (score >= 0.5).astype(int),
                          "y": (rng.random(4000) < score).astype(int)})
    return build_reference(frame, model="bin", task="classification", target="y", prediction="pred", score="score")


def binary_records(n, *, prediction_as_text):
    rng = np.random.default_rng(4)
    records = []
    for i in range(n):
        score = float(rng.random())
        prediction = int(score >= 0.5)
        ts = format_ts(T0 + i)
        records.append(orjson.dumps({"type": "prediction", "schema": 1, "request_id": f"r{i}", "model": "bin",
                                     "ts": ts, "features": {"x": float(rng.normal())},
                                     "prediction": str(prediction) if prediction_as_text else prediction,
                                     "score": score}))
        records.append(orjson.dumps({"type": "label", "schema": 1, "request_id": f"r{i}", "model": "bin", "ts": ts,
                                     "label": int(rng.random() < score)}))
    return records


def replay(records, references, models):
    engine = Engine(parse_config({"models": models}), references=references)
    alerts, rejected = [], []
    run_records(engine, records, lambda alert, _i: alerts.append(alert),
                lambda rejection, _i, _record: rejected.append(rejection))
    return alerts, rejected, engine


def test_binary_prediction_spelled_as_text_is_no_false_accuracy_alert():
    reference = binary_reference()
    models = [{"name": "bin", "reference": "x", "performance_window": 1000}]
    as_text, rejected, _ = replay(binary_records(3000, prediction_as_text=True), {"bin": reference}, models)
    as_number, _, _ = replay(binary_records(3000, prediction_as_text=False), {"bin": reference}, models)
    assert rejected == []
    assert [a for a in as_text if a["kind"] == "performance"] == []
    assert [orjson.dumps(a) for a in as_text] == [orjson.dumps(a) for a in as_number]
    # Without the canonical form every "1" would miss its label 1: the accuracy alert this prevents.
    engine = Engine(parse_config({"models": models}), references={"bin": reference})
    raw = [a for r in binary_records(3000, prediction_as_text=True) for a in engine.process(decode(r))]
    assert any(a["kind"] == "performance" and a["detector"] == "accuracy" for a in raw)


def test_values_that_are_no_class_are_dead_lettered_with_a_reason(tmp_path):
    reference = build_reference(synthetic(0, 2000), model="mc", task="classification", target="y", prediction="pred",
                                class_scores_prefix="p_")
    ts = format_ts(T0)
    scores = {"a": 0.7, "b": 0.1, "c": 0.1, "d": 0.1}
    lines = [
        {"type": "prediction", "schema": 1, "request_id": "1", "model": "mc", "ts": ts, "prediction": "e",
         "scores": scores},
        {"type": "label", "schema": 1, "request_id": "1", "model": "mc", "ts": ts, "label": "A"},
        {"type": "prediction", "schema": 1, "request_id": "2", "model": "mc", "ts": ts, "prediction": "a",
         "scores": {"a": 0.9, "b": 0.1}},
        {"type": "prediction", "schema": 1, "request_id": "3", "model": "mc", "ts": ts, "prediction": "a",
         "score": 0.9},
        {"type": "prediction", "schema": 1, "request_id": "4", "model": "mc", "ts": ts, "prediction": "a",
         "scores": {**scores, "z": 0.0}},
        {"type": "prediction", "schema": 1, "request_id": "5", "model": "mc", "ts": ts, "prediction": "a",
         "scores": scores},
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    engine = Engine(parse_config({"models": [{"name": "mc", "reference": "x"}]}), references={"mc": reference})
    summary = replay_file(engine, events, tmp_path / "alerts.jsonl", progress=False)
    dead = [orjson.loads(line) for line in deadletter_path(tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    assert summary.rejected == 5 and engine.events == 1
    reasons = [entry["reason"] for entry in dead]
    assert reasons[0].startswith("prediction 'e' is not one of the classes ['a', 'b', 'c', 'd'] of model 'mc'")
    assert reasons[1].startswith("label 'A' is not one of the classes")
    assert reasons[2] == "field 'scores' has no probability for the classes ['c', 'd'] of model 'mc'"
    assert "not one 'score'" in reasons[3]
    assert reasons[4].startswith("scores key 'z' is not one of the classes")
    assert [entry["line"] for entry in dead] == [1, 2, 3, 4, 5] and all(e["model"] == "mc" for e in dead)


def test_positive_class_in_the_config_is_mapped_or_refused():
    reference = binary_reference()
    engine = Engine(parse_config({"models": [{"name": "bin", "reference": "x", "positive_class": "1"}]}),
                    references={"bin": reference})
    assert engine.monitors["bin"].positive_class == 1
    with pytest.raises(ConfigError, match="positive_class 'yes' is not one of"):
        Engine(parse_config({"models": [{"name": "bin", "reference": "x", "positive_class": "yes"}]}),
               references={"bin": reference})


# -- reference build -----------------------------------------------------------------------------
def test_reference_build_cli_with_score_columns(tmp_path):
    frame = synthetic(1, 3000)
    frame["y"] = frame["y"].map({"a": 10, "b": 1, "c": 0, "d": 2})
    frame["pred"] = frame["pred"].map({"a": 10, "b": 1, "c": 0, "d": 2})
    frame = frame.rename(columns={"p_a": "prob_10", "p_b": "prob_1", "p_c": "prob_0", "p_d": "prob_2"})
    data = tmp_path / "validation.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "reference.json"
    assert cli_main(["reference", "build", str(data), "--model", "mc", "--task", "classification", "--target", "y",
                     "--prediction", "pred", "--scores", "prob_0,prob_1,prob_2,prob_10", "-o", str(out)]) == 0
    reference = json.loads(out.read_text())
    assert reference["classes"] == [0, 1, 2, 10]  # the order of the probability vectors
    assert reference["score_columns"] == ["prob_0", "prob_1", "prob_2", "prob_10"]
    assert set(reference["features"]) == {"x0", "x1"}
    assert len(reference["class_score_profiles"]) == 4 and len(reference["class_score_calibrations"]) == 4
    probabilities = frame[reference["score_columns"]].to_numpy()
    assert reference["baseline"]["roc_auc"] == pytest.approx(
        roc_auc_score(frame["y"], probabilities, multi_class="ovr", labels=[0, 1, 2, 10]), abs=1e-12)
    assert reference["baseline"]["recall:10"] == pytest.approx(
        precision_recall_fscore_support(frame["y"], frame["pred"], labels=[10])[1][0], abs=1e-12)
    assert reference["prediction_profile"]["kind"] == "categorical"
    # "class=column" pairs and a prefix give the same reference.
    pairs = ["0=prob_0", "1=prob_1", "2=prob_2", "10=prob_10"]
    same = build_reference(frame, model="mc", task="classification", target="y", prediction="pred",
                           class_scores=pairs)
    prefixed = build_reference(frame, model="mc", task="classification", target="y", prediction="pred",
                               class_scores_prefix="prob_")
    assert same["baseline"] == prefixed["baseline"] == reference["baseline"]


def test_reference_build_refuses_what_it_cannot_use():
    frame = synthetic(2, 500)
    with pytest.raises(ReferenceError, match=r"no probability column for the classes \['d'\]"):
        build_reference(frame, model="m", task="classification", target="y", prediction="pred",
                        class_scores=["p_a", "p_b", "p_c"])
    with pytest.raises(ReferenceError, match="not one --score column"):
        build_reference(frame, model="m", task="classification", target="y", prediction="pred", score="p_a")
    with pytest.raises(ReferenceError, match="no column starts with the scores prefix 'q_'"):
        build_reference(frame, model="m", task="classification", target="y", prediction="pred",
                        class_scores_prefix="q_")
    with pytest.raises(ReferenceError, match="'zz' is none of the classes"):
        build_reference(frame, model="m", task="classification", target="y", prediction="pred",
                        class_scores=["zz=p_a"])
    with pytest.raises(ReferenceError, match=r"score columns, row 3: every class's probability must be a number"):
        build_reference(frame.assign(p_b=[0.1] * 3 + [None] + [0.1] * (len(frame) - 4)), model="m",
                        task="classification", target="y", prediction="pred", class_scores_prefix="p_")
    # Without scores a multi-class reference still has its class set and baseline accuracy / F1.
    plain = build_reference(frame, model="m", task="classification", target="y", prediction="pred")
    assert plain["classes"] == ["a", "b", "c", "d"] and plain["baseline"]["roc_auc"] is None
    assert plain["positive_class"] is None and plain["score_columns"] is None


# -- the engine on a multi-class stream ----------------------------------------------------------
def multiclass_records(frame, start=0, *, labels=True, scores=True):
    records = []
    classes = [c.removeprefix("p_") for c in frame.columns if c.startswith("p_")]
    for i, row in enumerate(frame.itertuples(index=False), start):
        ts = format_ts(T0 + i)
        event = {"type": "prediction", "schema": 1, "request_id": f"m{i}", "model": "mc", "ts": ts,
                 "features": {"x0": row.x0, "x1": row.x1}, "prediction": row.pred,
                 "attributes": {"group": "g1" if i % 3 else "g2"}}
        if scores:
            event["scores"] = {c: getattr(row, f"p_{c}") for c in classes}
        records.append(orjson.dumps(event))
        if labels:
            records.append(orjson.dumps({"type": "label", "schema": 1, "request_id": f"m{i}", "model": "mc",
                                         "ts": ts, "label": row.y}))
    return records


def test_class_probability_and_predicted_class_drift_alert():
    reference = build_reference(synthetic(0, 6000), model="mc", task="classification", target="y", prediction="pred",
                                class_scores_prefix="p_")
    models = [{"name": "mc", "reference": "x", "window_events": 1000, "performance_window": 1000}]
    stable, _, _ = replay(multiclass_records(synthetic(1, 3000)), {"mc": reference}, models)
    assert [a for a in stable if a["status"] == "firing"] == []
    shifted, _, _ = replay(multiclass_records(synthetic(1, 3000, shift=1.5)), {"mc": reference}, models)
    signals = {a["signal"] for a in shifted if a["status"] == "firing" and a["kind"] == "prediction_drift"}
    assert "prediction" in signals
    assert {s for s in signals if s.startswith("score:")} <= {"score:a", "score:b", "score:c", "score:d"}
    assert len([s for s in signals if s.startswith("score:")]) >= 2


def test_window_stats_per_class_and_checkpoint_restore():
    reference = build_reference(synthetic(0, 4000), model="mc", task="classification", target="y", prediction="pred",
                                class_scores_prefix="p_")
    models = [{"name": "mc", "reference": "x", "window_events": 500, "performance_window": 500}]
    records = multiclass_records(synthetic(0, 2000, shift=1.5))
    windows = []
    engine = Engine(parse_config({"models": models}), references={"mc": reference}, on_window=windows.append)
    whole = []
    run_records(engine, records, lambda alert, _i: whole.append(alert), lambda *_: None)
    performance = [w for w in windows if w["family"] == "performance"]
    frame = synthetic(0, 2000, shift=1.5).iloc[:500]
    recall = precision_recall_fscore_support(frame["y"], frame["pred"], labels=["a", "b", "c", "d"], zero_division=0)[1]
    assert [performance[0]["stats"][f"class:{c}.recall"] for c in "abcd"] == pytest.approx(recall.tolist(), abs=1e-12)
    assert performance[0]["stats"]["performance:macro_f1"] is not None
    assert {"score:a.psi", "estimated:accuracy", "estimated:macro_f1"} <= set(windows[0]["stats"])

    half = len(records) // 2 + 77
    first = Engine(parse_config({"models": models}), references={"mc": reference})
    head = []
    run_records(first, records[:half], lambda alert, _i: head.append(alert), lambda *_: None)
    restored = Engine(parse_config({"models": models}), references={"mc": reference})
    restored.restore(orjson.loads(orjson.dumps(first.state())))
    tail = []
    run_records(restored, records[half:], lambda alert, _i: tail.append(alert), lambda *_: None)
    assert head + tail == whole


def test_multiclass_fairness_is_one_vs_rest_for_the_chosen_class():
    frame = synthetic(6, 1200)
    groups = np.where(np.arange(len(frame)) % 3, "g1", "g2")
    window = FairnessWindow(positive_class="b")
    for group, prediction, label in zip(groups, frame["pred"], frame["y"]):
        window.update(group, prediction, label)
    result = window.result()
    predicted_b, labelled_b = frame["pred"] == "b", frame["y"] == "b"
    assert result["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(labelled_b, predicted_b, sensitive_features=groups), abs=1e-12)
    assert result["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(labelled_b, predicted_b, sensitive_features=groups), abs=1e-12)
    # In the engine the chosen class is the model's positive_class; without one there is no fairness window.
    reference = build_reference(synthetic(0, 3000).assign(group="g1"), model="mc", task="classification", target="y",
                                prediction="pred", class_scores_prefix="p_", attributes=["group"])
    without = Engine(parse_config({"models": [{"name": "mc", "reference": "x"}]}), references={"mc": reference})
    chosen = Engine(parse_config({"models": [{"name": "mc", "reference": "x", "positive_class": "b"}]}),
                    references={"mc": reference})
    assert without.monitors["mc"].fairness == {}
    assert list(chosen.monitors["mc"].fairness) == ["group"]
    assert chosen.monitors["mc"].fairness["group"].positive_class == "b"


# -- the "done when": NannyML's three-class data -----------------------------------------
@pytest.fixture(scope="module")
def nannyml_runs():
    analysis = pd.read_csv(nannyml_data.FIXTURE / nannyml_data.ANALYSIS_FILE)
    return (analysis,
            nannyml_data.run_tripwire(nannyml_data.event_lines(analysis)),
            nannyml_data.run_tripwire(nannyml_data.event_lines(analysis, labels=False)))


def test_nannyml_accuracy_drop_raises_a_performance_alert_after_it_and_none_before(nannyml_runs):
    analysis, labelled, _ = nannyml_runs
    performance = [(i, a) for i, a in labelled["alerts"] if a["kind"] == "performance" and a["status"] == "firing"]
    drop_record = 2 * nannyml_data.DROP_ROW  # a prediction and its label per row
    assert performance, "no performance alert"
    assert all(index > drop_record for index, _a in performance)
    assert {a["detector"] for _i, a in performance} >= {"accuracy", "macro_f1"}
    # Event time is the data's own: the window that alerts starts at the drop.
    drop_ts = pd.Timestamp(analysis["timestamp"].iloc[nannyml_data.DROP_ROW], tz="UTC")
    assert {a["window"]["start"] for _i, a in performance} == {drop_ts.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    accuracy = [w["stats"]["performance:accuracy"] for w in labelled["performance"]]
    realized = [accuracy_score(chunk["y_true"], chunk["y_pred"])
                for chunk in (analysis.iloc[s:s + nannyml_data.WINDOW] for s in range(0, len(analysis), 5000))]
    assert accuracy == pytest.approx(realized, abs=1e-12)
    assert max(accuracy[:6]) < 0.77 and min(accuracy[:6]) > 0.74 and max(accuracy[6:]) < 0.58
    assert labelled["rejected"] == []


def test_nannyml_estimated_performance_alert_without_labels_fires_after_the_drop(nannyml_runs):
    _, _, unlabelled = nannyml_runs
    estimated = [(i, a) for i, a in unlabelled["alerts"]
                 if a["kind"] == "estimated_performance" and a["status"] == "firing"]
    assert estimated and all(index > nannyml_data.DROP_ROW for index, _a in estimated)
    values = [w["stats"]["estimated:accuracy"] for w in unlabelled["data"]]
    assert max(values[6:]) < 0.65 < min(values[:6])
    assert not any(math.isnan(v) for v in values)


def test_report_draws_per_class_series_and_class_probability_histograms():
    from tripwire.report import WindowLog, render_report

    reference = build_reference(synthetic(0, 4000), model="mc", task="classification", target="y", prediction="pred",
                                class_scores_prefix="p_")
    config = parse_config({"models": [{"name": "mc", "reference": "x", "window_events": 500,
                                       "performance_window": 500}]})
    log = WindowLog(config)
    engine = Engine(config, references={"mc": reference}, on_window=log)
    alerts = []
    run_records(engine, multiclass_records(synthetic(1, 1500)) + multiclass_records(synthetic(2, 1500, shift=1.5), 1500),
                lambda alert, _i: alerts.append(alert), lambda *_: None)
    page = render_report(log.windows, alerts, config, {"mc": reference}, title="t", facts=[])
    panels = re.findall(r'<div class="panel" data-search="[^"]*"><h4><a href="#[^"]*">([^<]*)</a>', page)
    assert {f"class:{c} \u00b7 {m}" for c in "abcd" for m in ("precision", "recall")} <= set(panels)
    assert "performance:macro_f1 \u00b7 macro_f1" in panels and "estimated:macro_f1 \u00b7 estimated_macro_f1" in panels
    drifted = {a["signal"] for a in alerts if a["kind"] == "prediction_drift" and a["signal"].startswith("score:")}
    figures = set(re.findall(r'<figure class="dist" [^>]*data-signal="([^"]*)"', page))
    assert drifted and drifted <= figures  # each drifted class probability: reference vs worst window


def test_status_board_charts_macro_f1_and_the_recall_of_each_class():
    from tripwire.streams.status import StatusBoard

    reference = build_reference(synthetic(0, 4000), model="mc", task="classification", target="y", prediction="pred",
                                class_scores_prefix="p_")
    board = StatusBoard("w1")
    config = parse_config({"models": [{"name": "mc", "reference": "x", "window_events": 500,
                                       "performance_window": 500}]})
    engine = Engine(config, references={"mc": reference}, on_window=board.observe_window)
    run_records(engine, multiclass_records(synthetic(1, 1000)), lambda *_: None, lambda *_: None)
    history = board.models["mc"]["history"]
    assert {"performance:macro_f1", "estimated:macro_f1", "class:a.recall", "class:d.recall"} <= set(history)
    assert len(history["class:a.recall"]) == 2


def test_multiclass_reference_logs_to_mlflow_with_per_class_baselines(tmp_path):
    from mlflow.tracking import MlflowClient

    from tripwire.tracking import log_reference, resolve_reference

    frame = synthetic(0, 1500, classes=("low risk", "high/risk", "medium?"))
    reference = build_reference(frame, model="mc", task="classification", target="y", prediction="pred",
                                class_scores_prefix="p_")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("training", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    location = log_reference(reference, run_id, tracking_uri=uri)
    metrics = client.get_run(run_id).data.metrics
    assert metrics["baseline_macro_f1"] == pytest.approx(reference["baseline"]["macro_f1"])
    assert metrics["baseline_recall.high/risk"] == pytest.approx(reference["baseline"]["recall:high/risk"])
    assert metrics["baseline_recall.medium_"] == pytest.approx(reference["baseline"]["recall:medium?"])
    assert resolve_reference(location, tracking_uri=uri)["classes"] == reference["classes"]
