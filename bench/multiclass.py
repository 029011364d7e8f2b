"""NannyML's synthetic three-class data as tripwire events; tripwire's multi-class CBPE next to NannyML's.

The data ships inside the ``nannyml`` package: a reference period and an analysis period of 60,000
rows each of a classifier choosing a credit card to offer (``prepaid_card``, ``highstreet_card``,
``upmarket_card``) with the probability of each class. From analysis row 30,000 (the middle) its
accuracy falls from 0.75 to 0.56.

nannyml lives only in the bench virtualenv, so the tests read a compact copy written by
``python -m bench.multiclass --export tests/data`` (the reference without ids and timestamps, the
analysis with its targets joined; gzip CSV, about 3 MB). :func:`load` reads that copy when
nannyml is not importable. ``python -m bench.multiclass --events out.jsonl.gz`` writes the
analysis as tripwire events, for ``tripwire replay``.
"""

from __future__ import annotations

import argparse
import gzip
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

MODEL = "card-offer"
TARGET = "y_true"
PREDICTION = "y_pred"
SCORES_PREFIX = "y_pred_proba_"
CATEGORICAL = ["acq_channel", "app_channel", "is_customer"]
FEATURES = ["acq_channel", "app_behavioral_score", "requested_credit_limit", "app_channel", "credit_bureau_score",
            "stated_income", "is_customer"]
DROP_ROW = 30_000
WINDOW = 5000
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "data"
REFERENCE_FILE = "nannyml_multiclass_reference.csv.gz"
ANALYSIS_FILE = "nannyml_multiclass_analysis.csv.gz"


def _from_nannyml() -> tuple[pd.DataFrame, pd.DataFrame]:
    import nannyml

    reference, analysis, targets = nannyml.load_synthetic_multiclass_classification_dataset()
    analysis = analysis.merge(targets, on="id", how="left")
    return reference.drop(columns=["id", "timestamp"]), analysis.drop(columns=["id"])


@lru_cache(maxsize=1)
def load() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, analysis with ``y_true``), from nannyml when installed, else the tests' copy."""
    try:
        return _from_nannyml()
    except ImportError:
        return (pd.read_csv(FIXTURE / REFERENCE_FILE), pd.read_csv(FIXTURE / ANALYSIS_FILE))


def score_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(SCORES_PREFIX)]


def export(directory: Path) -> list[Path]:
    """Write the compact copy the tests read."""
    reference, analysis = _from_nannyml()
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for frame, name in ((reference, REFERENCE_FILE), (analysis, ANALYSIS_FILE)):
        path = directory / name
        # mtime=0: the same data gives the same bytes, so a re-export is no spurious change.
        with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as handle:
            handle.write(frame.to_csv(index=False).encode())
        written.append(path)
    return written


def reference_profile(reference: pd.DataFrame | None = None) -> dict[str, Any]:
    from tripwire.reference import build_reference

    reference = load()[0] if reference is None else reference
    return build_reference(reference, model=MODEL, task="classification", target=TARGET, prediction=PREDICTION,
                           class_scores_prefix=SCORES_PREFIX, categorical=CATEGORICAL, features=FEATURES)


def event_lines(analysis: pd.DataFrame | None = None, *, labels: bool = True) -> list[bytes]:
    """One prediction per analysis row (with every class probability), followed at once by its label
    unless ``labels`` is False (the label-free case CBPE is for)."""
    from tripwire.events import format_ts

    analysis = load()[1] if analysis is None else analysis
    # Seconds since the epoch whatever the datetime resolution (pandas 3 reads these as seconds, 2 as ns).
    stamps = pd.to_datetime(analysis["timestamp"], utc=True)
    epoch = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    columns = {name: analysis[name].tolist() for name in FEATURES}
    scores = {c.removeprefix(SCORES_PREFIX): analysis[c].astype(float).tolist() for c in score_columns(analysis)}
    predictions, targets = analysis[PREDICTION].tolist(), analysis[TARGET].tolist()
    lines = []
    for i in range(len(analysis)):
        stamp = format_ts(float(epoch[i]))
        request = f"mc-{i}"
        lines.append(orjson.dumps({
            "type": "prediction", "schema": 1, "request_id": request, "model": MODEL, "model_version": "1",
            "ts": stamp, "features": {name: columns[name][i] for name in FEATURES}, "prediction": predictions[i],
            "scores": {cls: values[i] for cls, values in scores.items()}}))
        if labels:
            lines.append(orjson.dumps({"type": "label", "schema": 1, "request_id": request, "model": MODEL,
                                       "ts": stamp, "label": targets[i]}))
    return lines


def config(window: int = WINDOW) -> dict[str, Any]:
    return {"models": [{"name": MODEL, "reference": "bench:card-offer", "window_events": window,
                        "performance_window": window}]}


def run_tripwire(lines: list[bytes], window: int = WINDOW) -> dict[str, Any]:
    """Replay ``lines``: the data windows, performance windows and alerts (with record index from 1)."""
    from tripwire.config import parse_config
    from tripwire.engine import Engine
    from tripwire.replay import run_records

    out: dict[str, Any] = {"data": [], "performance": [], "alerts": [], "rejected": []}
    engine = Engine(parse_config(config(window)), references={MODEL: reference_profile()},
                    on_window=lambda w: out[w["family"]].append(w))
    started = time.perf_counter()
    run_records(engine, lines, lambda alert, index: out["alerts"].append((index, alert)),
                lambda rejection, _index, _record: out["rejected"].append(rejection.reason))
    out["seconds"] = time.perf_counter() - started
    return out


def nannyml_performance(chunk_size: int = WINDOW) -> dict[str, Any]:
    """NannyML's realized accuracy / macro F1 (with targets) and multi-class CBPE estimates (without)."""
    import nannyml

    from bench.anchors import quiet

    quiet()
    reference, analysis = load()
    probabilities = {c.removeprefix(SCORES_PREFIX): c for c in score_columns(reference)}
    common = dict(y_pred=PREDICTION, y_pred_proba=probabilities, y_true=TARGET,
                  problem_type="classification_multiclass", chunk_size=chunk_size)
    metrics = ["accuracy", "f1"]
    started = time.perf_counter()
    realized = nannyml.PerformanceCalculator(metrics=metrics, **common).fit(reference)
    frame = realized.calculate(analysis).filter(period="analysis").to_df()
    out: dict[str, Any] = {"realized": {m: frame[(m, "value")].astype(float).tolist() for m in metrics}}
    cbpe = nannyml.CBPE(metrics=metrics, **common).fit(reference)
    frame = cbpe.estimate(analysis.drop(columns=[TARGET])).filter(period="analysis").to_df()
    out["estimated"] = {m: frame[(m, "value")].astype(float).tolist() for m in metrics}
    out["seconds"] = time.perf_counter() - started
    return out


def compare(chunk_size: int = WINDOW) -> dict[str, Any]:
    """tripwire's realized and estimated accuracy / macro F1 per window next to NannyML's, and the
    error of both label-free estimates against the realized values."""
    nannyml_values = nannyml_performance(chunk_size)
    labelled = run_tripwire(event_lines(), chunk_size)
    unlabelled = run_tripwire(event_lines(labels=False), chunk_size)
    ours = {
        "realized": {"accuracy": [w["stats"]["performance:accuracy"] for w in labelled["performance"]],
                     "f1": [w["stats"]["performance:macro_f1"] for w in labelled["performance"]]},
        "estimated": {"accuracy": [w["stats"]["estimated:accuracy"] for w in unlabelled["data"]],
                      "f1": [w["stats"]["estimated:macro_f1"] for w in unlabelled["data"]]},
    }
    rows = []
    for metric in ("accuracy", "f1"):
        realized = nannyml_values["realized"][metric]
        mine = ours["realized"][metric]
        rows.append({"metric": f"realized {'macro F1' if metric == 'f1' else metric}", "who": "tripwire vs NannyML",
                     "max_abs_diff": max(abs(a - b) for a, b in zip(mine, realized)), "windows": len(mine)})
        for who, estimate in (("tripwire CBPE", ours["estimated"][metric]),
                              ("NannyML CBPE", nannyml_values["estimated"][metric])):
            errors = [abs(a - b) for a, b in zip(estimate, realized)]
            rows.append({"metric": f"estimated {'macro F1' if metric == 'f1' else metric}", "who": who,
                         "mean_abs_error": sum(errors) / len(errors), "max_abs_error": max(errors),
                         "windows": len(errors)})
    drop_window = DROP_ROW // chunk_size

    def performance_alert_windows(run: dict[str, Any], kind: str, rows_per_record: int) -> list[int]:
        return sorted({((index + rows_per_record - 1) // rows_per_record - 1) // chunk_size
                       for index, alert in run["alerts"] if alert["kind"] == kind and alert["status"] == "firing"})

    return {"rows": rows, "window_rows": chunk_size, "drop_window": drop_window,
            "tripwire": ours, "nannyml": nannyml_values,
            "performance_alert_windows": performance_alert_windows(labelled, "performance", 2),
            "estimated_alert_windows": performance_alert_windows(unlabelled, "estimated_performance", 1)}


def render(result: dict[str, Any]) -> str:
    lines = [f"Multi-class (NannyML synthetic three-class data, windows of {result['window_rows']:,} rows; "
             f"accuracy falls from window {result['drop_window']}):", "",
             "| metric | who | mean abs error | max abs error / diff | windows |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        mean = f"{row['mean_abs_error']:.4f}" if "mean_abs_error" in row else ""
        worst = row.get("max_abs_error", row.get("max_abs_diff"))
        lines.append(f"| {row['metric']} | {row['who']} | {mean} | {worst:.4f} | {row['windows']} |")
    lines.append("")
    lines.append(f"performance alerts in windows {result['performance_alert_windows']}; "
                 f"estimated-performance alerts (labels withheld) in windows {result['estimated_alert_windows']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, help="write the compact copy the tests read into this directory")
    parser.add_argument("--events", type=Path, help="write the analysis period as tripwire events (JSONL, .gz ok)")
    parser.add_argument("--reference", type=Path, help="write the reference profile (JSON)")
    args = parser.parse_args()
    if args.export:
        for path in export(args.export):
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    if args.events:
        data = b"\n".join(event_lines()) + b"\n"
        args.events.write_bytes(gzip.compress(data) if args.events.suffix == ".gz" else data)
        print(f"wrote {args.events}")
    if args.reference:
        from tripwire.reference import save_reference

        save_reference(reference_profile(), args.reference)
        print(f"wrote {args.reference}")
    if not (args.export or args.events or args.reference):
        print(render(compare()))


if __name__ == "__main__":
    main()
