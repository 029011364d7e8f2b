"""The anchors tripwire is compared with, run on NannyML's car-loan data: NannyML and Evidently.

Each function returns plain per-window values and the wall time it took, so the agreement,
detection and speed sections share one set of runs. Windows are consecutive blocks of analysis
rows (NannyML's ``chunk_size``; Evidently gets each block as its current dataset), matching
tripwire's count-based data windows row for row.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

# No usage telemetry from the anchors (NannyML posts to segment.io, Evidently to its own endpoint).
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

import pandas as pd

from bench.carloan import CATEGORICAL, FEATURES, NUMERIC, load

NANNYML_CONTINUOUS = ["kolmogorov_smirnov", "jensen_shannon", "wasserstein"]
NANNYML_CATEGORICAL = ["chi2", "jensen_shannon"]
# Evidently stattests asked for per column kind: (method, applies to numeric, applies to categorical)
EVIDENTLY_METHODS = [("psi", True, True), ("jensenshannon", True, True), ("ks", True, False),
                     ("wasserstein", True, False), ("chisquare", False, True)]


def quiet() -> None:
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("nannyml").setLevel(logging.ERROR)


def nannyml_univariate(chunk_size: int, continuous: list[str] | None = None,
                       categorical: list[str] | None = None) -> dict[str, Any]:
    """NannyML's UnivariateDriftCalculator; ``None`` methods = NannyML's defaults (Jensen-Shannon)."""
    import nannyml

    quiet()
    reference, analysis = load()
    kwargs: dict[str, Any] = {}
    if continuous is not None:
        kwargs["continuous_methods"] = continuous
    if categorical is not None:
        kwargs["categorical_methods"] = categorical
    calculator = nannyml.UnivariateDriftCalculator(column_names=FEATURES, treat_as_categorical=CATEGORICAL,
                                                   chunk_size=chunk_size, **kwargs)
    started = time.perf_counter()
    calculator.fit(reference[FEATURES])
    fitted = time.perf_counter()
    result = calculator.calculate(analysis[FEATURES])
    done = time.perf_counter()
    frame = result.filter(period="analysis").to_df()
    values: dict[str, dict[str, list[float]]] = {}
    alerts: dict[str, dict[str, list[bool]]] = {}
    for column, method, what in frame.columns:
        if column == "chunk":
            continue
        if what == "value":
            values.setdefault(column, {})[method] = frame[(column, method, what)].astype(float).tolist()
        elif what == "alert":
            alerts.setdefault(column, {})[method] = frame[(column, method, what)].astype(bool).tolist()
    return {"values": values, "alerts": alerts, "fit_seconds": fitted - started, "calculate_seconds": done - fitted,
            "rows": len(analysis), "windows": len(frame)}


def nannyml_performance(chunk_size: int) -> dict[str, Any]:
    """Realized performance (with targets) and CBPE estimates (without) per chunk."""
    import nannyml

    quiet()
    reference, analysis = load()
    common = dict(y_pred="y_pred", y_pred_proba="y_pred_proba", y_true="repaid", problem_type="classification_binary",
                  chunk_size=chunk_size)
    realized = nannyml.PerformanceCalculator(metrics=["accuracy", "f1", "roc_auc"], **common)
    realized.fit(reference)
    frame = realized.calculate(analysis).filter(period="analysis").to_df()
    out: dict[str, Any] = {"realized": {m: frame[(m, "value")].astype(float).tolist() for m in ("accuracy", "f1", "roc_auc")}}
    cbpe = nannyml.CBPE(metrics=["accuracy", "f1"], **common)
    cbpe.fit(reference)
    frame = cbpe.estimate(analysis.drop(columns=["repaid"])).filter(period="analysis").to_df()
    out["estimated"] = {m: frame[(m, "value")].astype(float).tolist() for m in ("accuracy", "f1")}
    return out


def _evidently_datasets(window_rows: int):
    from evidently import DataDefinition, Dataset

    reference, analysis = load()
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    ref = Dataset.from_pandas(reference[FEATURES].reset_index(drop=True), data_definition=definition)
    windows = [Dataset.from_pandas(analysis[FEATURES].iloc[start:start + window_rows].reset_index(drop=True),
                                   data_definition=definition)
               for start in range(0, len(analysis), window_rows)]
    return ref, windows


def _metric_values(snapshot) -> list[tuple[dict[str, Any], Any]]:
    return [(m["config"], m["value"]) for m in snapshot.dict()["metrics"]]


def evidently_preset(window_rows: int) -> dict[str, Any]:
    """Evidently's DataDriftPreset at its defaults, one report per window: per column value and verdict."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    quiet()
    started = time.perf_counter()
    ref, windows = _evidently_datasets(window_rows)
    prepared = time.perf_counter()
    values: dict[str, list[float]] = {c: [] for c in FEATURES}
    drifted: dict[str, list[bool]] = {c: [] for c in FEATURES}
    methods: dict[str, str] = {}
    counts: list[float] = []
    for window in windows:
        snapshot = Report([DataDriftPreset()]).run(window, ref)
        for config, value in _metric_values(snapshot):
            if config["type"].endswith("ValueDrift"):
                column, method, threshold = config["column"], config["method"], config["threshold"]
                values[column].append(float(value))
                methods[column] = method
                # Distances drift when >= threshold; p-value tests when < threshold (Evidently's rule).
                is_pvalue = "p_value" in method or "test" in method.lower()
                drifted[column].append(float(value) < threshold if is_pvalue else float(value) >= threshold)
            elif config["type"].endswith("DriftedColumnsCount"):
                counts.append(value["count"])
    done = time.perf_counter()
    return {"values": values, "drifted": drifted, "methods": methods, "drifted_count": counts,
            "seconds": done - started, "prepare_seconds": prepared - started, "rows": len(load()[1]),
            "windows": len(windows)}


def evidently_values(window_rows: int) -> dict[str, Any]:
    """Per column and stattest, Evidently's value on each window (psi, JS, KS p, Wasserstein normed, chi2 p)."""
    from evidently import Report
    from evidently.metrics import ValueDrift

    quiet()
    ref, windows = _evidently_datasets(window_rows)
    metrics = [ValueDrift(column=c, method=m) for m, num, cat in EVIDENTLY_METHODS
               for c in FEATURES if (c in NUMERIC and num) or (c in CATEGORICAL and cat)]
    values: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    for window in windows:
        for config, value in _metric_values(Report(metrics).run(window, ref)):
            values.setdefault(config["column"], {}).setdefault(config["method"], []).append(float(value))
    return {"values": values, "seconds": time.perf_counter() - started}


def evidently_version() -> str:
    import evidently

    return evidently.__version__


def nannyml_version() -> str:
    import nannyml

    return nannyml.__version__


def frame_windows(frame: pd.DataFrame, rows: int) -> list[pd.DataFrame]:
    return [frame.iloc[start:start + rows] for start in range(0, len(frame), rows)]
