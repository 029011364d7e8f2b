"""NannyML's synthetic car-loan data as tripwire events, and tripwire's verdicts on it.

The data ships inside the ``nannyml`` package (no download): a reference period of 50,000 rows
and an analysis period of 50,000 rows of a binary classifier (will the loan be repaid?) with 7
features. From analysis row 25,000 four of them shift: ``car_value``, ``salary_range``,
``loan_length`` and ``repaid_loan_on_prev_car`` (NannyML's tutorials show exactly these; the
bench checks it again with the two-sample KS / chi-square statistics it prints). The other three
(``debt_to_income_ratio``, ``size_of_downpayment``, ``driver_tenure``) do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
import pandas as pd

MODEL = "car-loan"
NUMERIC = ["car_value", "debt_to_income_ratio", "loan_length", "driver_tenure"]
CATEGORICAL = ["salary_range", "repaid_loan_on_prev_car", "size_of_downpayment"]
FEATURES = ["car_value", "salary_range", "debt_to_income_ratio", "loan_length", "repaid_loan_on_prev_car",
            "size_of_downpayment", "driver_tenure"]
SHIFTED = ("car_value", "salary_range", "loan_length", "repaid_loan_on_prev_car")
SHIFT_ROW = 25_000


@lru_cache(maxsize=1)
def load() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, analysis with its ``repaid`` targets joined), both with integer targets."""
    import nannyml

    reference, analysis, targets = nannyml.load_synthetic_car_loan_dataset()
    reference = reference.copy()
    reference["repaid"] = reference["repaid"].astype(int)
    analysis = analysis.merge(targets, on="id", how="left")
    analysis["repaid"] = analysis["repaid"].astype(int)
    return reference, analysis


@lru_cache(maxsize=1)
def reference_profile() -> dict[str, Any]:
    from tripwire.reference import build_reference

    reference, _ = load()
    frame = reference[[*FEATURES, "repaid", "y_pred", "y_pred_proba"]]
    return build_reference(frame, model=MODEL, task="classification", target="repaid", prediction="y_pred",
                           score="y_pred_proba", categorical=CATEGORICAL, positive_class=1)


def event_lines(frame: pd.DataFrame | None = None) -> list[bytes]:
    """One prediction per analysis row, each followed at once by its label (so performance windows
    line up with data windows row for row)."""
    from tripwire.events import format_ts

    if frame is None:
        frame = load()[1]
    epoch = pd.to_datetime(frame["timestamp"]).astype("int64").to_numpy() / 1e9
    columns = {name: frame[name].tolist() for name in FEATURES}
    ids, preds = frame["id"].tolist(), frame["y_pred"].tolist()
    scores, labels = frame["y_pred_proba"].astype(float).tolist(), frame["repaid"].tolist()
    lines = []
    for i in range(len(frame)):
        stamp = format_ts(float(epoch[i]))
        request = f"cl-{ids[i]}"
        lines.append(orjson.dumps({
            "type": "prediction", "schema": 1, "request_id": request, "model": MODEL, "model_version": "1",
            "ts": stamp, "features": {name: columns[name][i] for name in FEATURES}, "prediction": preds[i],
            "score": scores[i], "latency_ms": None}))
        lines.append(orjson.dumps({"type": "label", "schema": 1, "request_id": request, "model": MODEL, "ts": stamp,
                                   "label": labels[i]}))
    return lines


def config(window_events: int = 1000, performance_window: int | None = None) -> dict[str, Any]:
    model: dict[str, Any] = {"name": MODEL, "reference": "bench:car-loan", "window_events": window_events}
    if performance_window is not None:
        model["performance_window"] = performance_window
    return {"models": [model]}


@dataclass
class TripwireRun:
    windows: list[dict[str, Any]] = field(default_factory=list)  # data windows, in order
    performance: list[dict[str, Any]] = field(default_factory=list)  # performance windows, in order
    alerts: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (record index from 1, alert)
    seconds: float = 0.0
    records: int = 0


def run_tripwire(window_events: int = 1000, performance_window: int | None = None,
                 lines: list[bytes] | None = None) -> TripwireRun:
    import time

    from tripwire.config import parse_config
    from tripwire.engine import Engine
    from tripwire.replay import run_records

    out = TripwireRun()

    def sink(window: dict[str, Any]) -> None:
        (out.windows if window["family"] == "data" else out.performance).append(window)

    lines = event_lines() if lines is None else lines
    engine = Engine(parse_config(config(window_events, performance_window)), references={MODEL: reference_profile()},
                    on_window=sink)
    started = time.perf_counter()
    summary = run_records(engine, lines, lambda alert, index: out.alerts.append((index, alert)), lambda *_: None)
    out.seconds = time.perf_counter() - started
    out.records = summary.records
    return out


def window_verdicts(run: TripwireRun, model_config: dict[str, Any] | None = None) -> dict[str, list[bool]]:
    """Per feature, per data window: did tripwire's drift rule hold (effect size over the warning
    threshold AND Benjamini-Hochberg-corrected p-value <= alpha, across the model's features)?

    The rule is the engine's (``tripwire.findings.significant`` + ``AlertPolicy``); it is evaluated here
    from the window statistics the engine publishes, with the engine's own BH function and config.
    """
    from tripwire.config import parse_config
    from tripwire.detectors.multiple_testing import benjamini_hochberg, bonferroni

    cfg = parse_config(model_config or config()).models[0]
    verdicts: dict[str, list[bool]] = {name: [] for name in FEATURES}
    for window in run.windows:
        stats = window["stats"]
        pvalues = [stats.get(f"feature:{name}.pvalue") for name in FEATURES]
        if cfg.drift_correction == "benjamini-hochberg":
            significant = benjamini_hochberg(pvalues, cfg.drift_alpha)
        elif cfg.drift_correction == "bonferroni":
            significant = bonferroni(pvalues, cfg.drift_alpha)
        else:
            significant = [p is not None and p <= cfg.drift_alpha for p in pvalues]
        for name, ok in zip(FEATURES, significant):
            statistic = cfg.drift_statistic if stats.get(f"feature:{name}.{cfg.drift_statistic}") is not None else "psi"
            value = stats.get(f"feature:{name}.{statistic}")
            threshold = cfg.threshold(statistic, f"feature:{name}")
            verdicts[name].append(bool(ok and value is not None and threshold.severity(value) is not None))
    return verdicts


def new_incident(alert: dict[str, Any]) -> bool:
    """A firing alert that opens an incident (an escalation to critical re-fires with the same incident_id)."""
    return alert["status"] == "firing" and alert.get("incident_id", alert["alert_id"]) == alert["alert_id"]


def alert_windows(run: TripwireRun, window_events: int) -> dict[str, list[int]]:
    """Per feature: indices of the data windows whose close opened a data_drift incident."""
    fired: dict[str, list[int]] = {name: [] for name in FEATURES}
    for index, alert in run.alerts:
        if alert["kind"] == "data_drift" and new_incident(alert) and alert["signal"].startswith("feature:"):
            # Two records (prediction + label) per row; the window closes on its last prediction.
            row = (index + 1) // 2
            fired[alert["signal"][8:]].append(row // window_events - 1 if row % window_events == 0 else row // window_events)
    return fired


def truth(n_windows: int, window_rows: int) -> dict[str, list[bool]]:
    """Per feature, per window: is the window (wholly or partly) after the shift?"""
    return {name: [name in SHIFTED and (w + 1) * window_rows > SHIFT_ROW for w in range(n_windows)]
            for name in FEATURES}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
