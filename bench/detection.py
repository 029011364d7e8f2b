"""Detection quality on streams with known drift points: delay, missed drifts, false alarms.

Error streams (1 = the model was wrong on a labelled prediction):

* Bernoulli, 50,000 labelled predictions, abrupt rise of the error rate at 25,000 from 0.15 to
  0.35 (large) and to 0.20 (small), 10 seeds each;
* river's ``ConceptDriftStream`` over ``SEA`` (label noise 0.1): concept 0 until position 25,000,
  then variant 1, 2 or 3 over a sigmoid of width 1,000, 5 seeds each; the monitored model is
  frozen on concept 0 (it predicts ``x0 + x1 > 8``), so its errors rise when the concept moves;
* stationary Bernoulli(0.15), 5 x 100,000, for false alarms.

Each stream runs through tripwire end to end (prediction and label events, built as the typed
events ``decode`` returns so no time goes to JSON here, through an engine with its defaults: ADWIN at river's defaults on the error stream, accuracy / F1 windows of 500
outcomes vs the reference baseline, the alert policy) and through bare river detectors at their
defaults on the same error values. A detection is the first alarm at or after the drift point
(for SEA: after position - width/2); anything before it is a false alarm. Delays are counted in
labelled predictions after the drift point. For tripwire an alarm is an alert opening an incident
(an escalation from warning to critical is the same incident and is not counted again); alerts on
the same labelled prediction (accuracy and F1 together) count once.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

N = 50_000
CHANGE = 25_000
SEEDS = 10
SEA_SEEDS = 5
SEA_WIDTH = 1_000
SEA_NOISE = 0.1
SEA_THRESHOLD_0 = 8.0  # SEA concept 0: y = x0 + x1 > 8
STATIONARY_RUNS = 5
STATIONARY_N = 100_000
BASE_ERROR = 0.15
MODEL = "error-stream"


def river_detectors() -> dict[str, Callable[[], Any]]:
    """Bare river detectors, default parameters (KSWIN is left out: ~0.5 ms per value)."""
    from river import drift
    from river.drift import binary

    return {
        "river ADWIN": drift.ADWIN,
        "river PageHinkley": drift.PageHinkley,
        "river DDM": binary.DDM,
        "river EDDM": binary.EDDM,
        "river HDDM_A": binary.HDDMA,
        "river HDDM_W": binary.HDDMW,
        "river FHDDM": binary.FHDDM,
    }


@dataclass
class Stream:
    scenario: str
    seed: int
    errors: list[int]
    drift_at: int | None  # first index counted as a detection; None = stationary
    delay_from: int | None  # index delays are measured from
    predictions: list[int] | None = None
    labels: list[int] | None = None
    features: list[dict[str, float]] | None = None


def bernoulli_stream(scenario: str, seed: int, before: float, after: float | None, n: int = N,
                     change: int = CHANGE) -> Stream:
    rng = np.random.default_rng(seed)
    p = np.full(n, before)
    if after is not None:
        p[change:] = after
    errors = (rng.random(n) < p).astype(int).tolist()
    return Stream(scenario, seed, errors, change if after is not None else None, change if after is not None else None)


def sea_stream(variant: int, seed: int, n: int = N) -> Stream:
    from river.datasets import synth

    stream = synth.ConceptDriftStream(
        stream=synth.SEA(variant=0, noise=SEA_NOISE, seed=seed),
        drift_stream=synth.SEA(variant=variant, noise=SEA_NOISE, seed=seed + 1000),
        position=CHANGE, width=SEA_WIDTH, seed=seed)
    features, predictions, labels = [], [], []
    for x, y in stream.take(n):
        features.append({"x0": round(x[0], 4), "x1": round(x[1], 4), "x2": round(x[2], 4)})
        predictions.append(int(x[0] + x[1] > SEA_THRESHOLD_0))
        labels.append(int(y))
    errors = [int(p != y) for p, y in zip(predictions, labels)]
    return Stream(f"SEA 0->{variant} (width {SEA_WIDTH})", seed, errors, CHANGE - SEA_WIDTH // 2, CHANGE,
                  predictions, labels, features)


def streams() -> list[Stream]:
    out = [bernoulli_stream("Bernoulli 0.15->0.35", seed, BASE_ERROR, 0.35) for seed in range(SEEDS)]
    out += [bernoulli_stream("Bernoulli 0.15->0.20", 100 + seed, BASE_ERROR, 0.20) for seed in range(SEEDS)]
    out += [sea_stream(variant, 200 + 10 * variant + seed) for variant in (1, 2, 3) for seed in range(SEA_SEEDS)]
    out += [bernoulli_stream("stationary 0.15", 300 + seed, BASE_ERROR, None, n=STATIONARY_N)
            for seed in range(STATIONARY_RUNS)]
    return out


# -- tripwire, end to end ---------------------------------------------------------------------
def _reference(kind: str) -> dict[str, Any]:
    """Reference profile of the monitored model on its validation data (before any drift)."""
    from tripwire.reference import build_reference

    rng = np.random.default_rng(12345)
    if kind == "sea":
        s = sea_stream(1, 999_999, n=CHANGE - SEA_WIDTH)  # concept 0 only
        frame = pd.DataFrame(s.features)
        frame["prediction"], frame["label"] = s.predictions, s.labels
    else:
        n = 20_000
        frame = pd.DataFrame({"x": np.round(rng.normal(0, 1, n), 4)})
        frame["prediction"] = 1
        frame["label"] = (rng.random(n) >= BASE_ERROR).astype(int)
    return build_reference(frame, model=MODEL, task="classification", target="label", prediction="prediction",
                           positive_class=1)


_REFERENCES: dict[str, dict[str, Any]] = {}


def tripwire_alarms(stream: Stream) -> dict[str, list[int]]:
    """Run the stream through a default-configured engine; alarm indices (in labelled predictions)
    of concept_drift and performance alerts, and of the raw ADWIN alarms inside the engine."""
    from bench.carloan import new_incident
    from tripwire.config import parse_config
    from tripwire.engine import Engine
    from tripwire.events import Label, Prediction

    kind = "sea" if stream.features is not None else "bernoulli"
    if kind not in _REFERENCES:
        _REFERENCES[kind] = _reference(kind)
    engine = Engine(parse_config({"models": [{"name": MODEL, "reference": "bench"}]}),
                    references={MODEL: _REFERENCES[kind]})
    monitor = engine.monitors[MODEL]
    adwin = monitor.change["error"]
    n = len(stream.errors)
    if kind == "sea":
        features, predictions, labels = stream.features, stream.predictions, stream.labels
    else:
        rng = random.Random(stream.seed)
        features = [{"x": round(rng.gauss(0, 1), 4)} for _ in range(n)]
        predictions = [1] * n
        labels = [1 - e for e in stream.errors]
    found: dict[str, list[int]] = {"concept_drift": [], "performance": [], "other": [], "adwin_raw": []}
    start = 1_795_824_000.0
    process = engine.process
    detections = 0
    for i in range(n):
        ts = start + i
        request = f"r{i}"
        for alert in process(Prediction(request, MODEL, "1", ts, features[i], predictions[i], None, None, 10.0, {})):
            if new_incident(alert):
                found["other"].append(i)
        for alert in process(Label(request, MODEL, ts + 0.5, labels[i])):
            if new_incident(alert):
                found[alert["kind"] if alert["kind"] in found else "other"].append(i)
        if adwin.detections != detections:
            detections = adwin.detections
            found["adwin_raw"].append(i)
    found["tripwire alert (either)"] = found["concept_drift"] + found["performance"]
    # Alerts fired on the same labelled prediction (accuracy and F1 together) count as one alarm.
    return {k: sorted(set(v)) for k, v in found.items()}


def river_alarms(stream: Stream) -> dict[str, list[int]]:
    out = {}
    for name, factory in river_detectors().items():
        detector = factory()
        alarms = []
        update = detector.update
        for i, x in enumerate(stream.errors):
            update(x)
            if detector.drift_detected:
                alarms.append(i)
        out[name] = alarms
    return out


METHOD_LABELS = {
    "concept_drift": "tripwire alert: concept_drift (ADWIN on errors)",
    "performance": "tripwire alert: performance (accuracy/F1 window)",
    "tripwire alert (either)": "tripwire alert: either",
    "adwin_raw": "tripwire ChangeDetector raw alarms",
}


@dataclass
class Outcome:
    delays: list[int] = field(default_factory=list)
    missed: int = 0
    drifts: int = 0
    false_alarms: int = 0
    monitored: int = 0  # values in which a false alarm could happen


def score(alarms: list[int], stream: Stream) -> Outcome:
    out = Outcome()
    n = len(stream.errors)
    if stream.drift_at is None:
        out.false_alarms = len(alarms)
        out.monitored = n
        return out
    out.drifts = 1
    out.false_alarms = sum(1 for a in alarms if a < stream.drift_at)
    out.monitored = stream.drift_at
    hit = next((a for a in alarms if a >= stream.drift_at), None)
    if hit is None:
        out.missed = 1
    else:
        out.delays.append(hit - stream.delay_from)
    return out


def run(progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every stream through tripwire and the river detectors; per scenario and method: mean delay,
    missed-detection rate, false alarms per 100k."""
    table: dict[tuple[str, str], Outcome] = {}
    example: dict[str, Any] = {}
    for stream in streams():
        if progress:
            progress(f"{stream.scenario} seed {stream.seed}")
        alarms = {METHOD_LABELS[k]: v for k, v in tripwire_alarms(stream).items() if k in METHOD_LABELS}
        alarms.update(river_alarms(stream))
        for method, found in alarms.items():
            o = score(found, stream)
            agg = table.setdefault((stream.scenario, method), Outcome())
            agg.delays += o.delays
            agg.missed += o.missed
            agg.drifts += o.drifts
            agg.false_alarms += o.false_alarms
            agg.monitored += o.monitored
        if stream.scenario.startswith("SEA 0->1") and "sea" not in example:
            example["sea"] = {"errors": stream.errors, "alarms": alarms, "drift_at": stream.drift_at,
                              "delay_from": stream.delay_from, "scenario": stream.scenario, "seed": stream.seed}
    rows = []
    for (scenario, method), o in table.items():
        rows.append({
            "scenario": scenario, "method": method,
            "drifts": o.drifts, "detected": o.drifts - o.missed,
            "missed_rate": (o.missed / o.drifts) if o.drifts else None,
            "mean_delay": statistics.fmean(o.delays) if o.delays else None,
            "median_delay": statistics.median(o.delays) if o.delays else None,
            "delays": o.delays,
            "false_alarms": o.false_alarms, "monitored": o.monitored,
            "false_alarms_per_100k": o.false_alarms / o.monitored * 100_000 if o.monitored else None,
        })
    return {"rows": rows, "example": example}


# -- car loan: per feature and window ---------------------------------------------------------
def carloan(nannyml_default: dict[str, Any] | None = None, evidently_default: dict[str, Any] | None = None,
            window_events: int = 1000, anchor_window: int = 5000) -> dict[str, Any]:
    """Which windows alarm, per feature, vs the truth; tripwire at its default window and at the
    anchors' window, NannyML's and Evidently's own default verdicts at theirs."""
    from bench import carloan as C

    lines = C.event_lines()
    verdicts: dict[str, dict[str, list[bool]]] = {}
    sizes: dict[str, int] = {}
    runs = {}
    for label, rows in ((f"tripwire ({window_events}-row windows)", window_events),
                        (f"tripwire ({anchor_window}-row windows)", anchor_window)):
        run = C.run_tripwire(rows, lines=lines)
        cfg = C.config(rows)
        verdicts[label] = C.window_verdicts(run, cfg)
        sizes[label] = rows
        runs[label] = run
        fired = C.alert_windows(run, rows)
        first = {f: (w.index(True) if True in w else None) for f, w in verdicts[label].items()}
        for feature, windows in fired.items():  # the alert policy fires on the first window the rule holds
            if windows and windows[0] != first[feature]:
                raise AssertionError(f"{label}: {feature} alert at window {windows[0]} but rule first holds at {first[feature]}")
    if nannyml_default is not None:
        label = f"NannyML default JS ({anchor_window}-row chunks)"
        verdicts[label] = {f: nannyml_default["alerts"][f]["jensen_shannon"] for f in C.FEATURES}
        sizes[label] = anchor_window
    if evidently_default is not None:
        per_window = [sum(evidently_default["drifted"][f][w] for f in C.FEATURES)
                      for w in range(len(evidently_default["drifted_count"]))]
        if per_window != [int(c) for c in evidently_default["drifted_count"]]:
            raise AssertionError(f"Evidently verdicts {per_window} disagree with its DriftedColumnsCount "
                                 f"{evidently_default['drifted_count']}")
        label = f"Evidently DataDriftPreset ({anchor_window}-row windows)"
        verdicts[label] = {f: evidently_default["drifted"][f] for f in C.FEATURES}
        sizes[label] = anchor_window
    rows = []
    for label, per_feature in verdicts.items():
        n_windows = len(next(iter(per_feature.values())))
        truth = C.truth(n_windows, sizes[label])
        flagged = sorted(f for f, w in per_feature.items() if any(w))
        false_windows = sum(v and not t for f in C.FEATURES for v, t in zip(per_feature[f], truth[f]))
        missed_windows = sum(t and not v for f in C.FEATURES for v, t in zip(per_feature[f], truth[f]))
        true_windows = sum(t for f in C.FEATURES for t in truth[f])
        first_after = {}
        for f in C.SHIFTED:
            hits = [w for w, v in enumerate(per_feature[f]) if v and truth[f][w]]
            first_after[f] = hits[0] if hits else None
        shift_window = C.SHIFT_ROW // sizes[label]
        rows.append({
            "method": label, "window_rows": sizes[label], "windows": n_windows,
            "flagged_features": flagged,
            "exactly_shifted": set(flagged) == set(C.SHIFTED),
            "false_alarm_windows": false_windows,
            "missed_windows": missed_windows, "shifted_windows": true_windows,
            "first_alarm_delay_windows": {f: (w - shift_window if w is not None else None) for f, w in first_after.items()},
            "grid": {f: "".join("X" if v else "." for v in per_feature[f]) for f in C.FEATURES},
        })
    default_label = f"tripwire ({window_events}-row windows)"
    psi_series = {f: [w["stats"].get(f"feature:{f}.psi") for w in runs[default_label].windows] for f in C.FEATURES}
    return {"rows": rows, "psi_series": psi_series, "window_events": window_events,
            "alerts": [(i, a["signal"], a["status"], a["severity"]) for i, a in runs[default_label].alerts
                       if a["kind"] == "data_drift" and C.new_incident(a)]}
