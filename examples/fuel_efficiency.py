"""Worked example: a fuel-efficiency model from training in MLflow to drift and performance alerts.

1. Train a scikit-learn regressor of miles per gallon on the 1970-1974 cars of the auto-MPG data
   (``vega_datasets`` ships it, no network needed), log it to MLflow with its tripwire reference
   (the profile of its out-of-fold predictions and their baseline error), register it as
   ``fuel-efficiency`` and give the new version the alias ``champion``.
2. Turn the 1975-1982 cars into the events a serving system would emit: one prediction per car
   (event time from its model year) and its measured mpg as a label a month later.
3. Write a monitor config that points at ``models:/fuel-efficiency@champion`` and replay the events
   exactly as ``tripwire replay`` does, reporting window statistics back to MLflow.
4. Print the drift and performance alerts, and where the window metrics went.
5. Live: run the same stream through one engine; at the end of 1978 retrain on 1970-1978 and move
   ``champion``; the alias watcher notices and the engine starts fresh detectors for the new version,
   which scores and is monitored on the 1979-1982 cars.

Run it inside the project's environment (``pip install -e '.[examples]'``)::

    python examples/fuel_efficiency.py [FOLDER]     # FOLDER defaults to ./mlruns-example

Everything (sqlite tracking store, artifacts, events, config, alerts) goes to FOLDER; browse it with
``mlflow ui --backend-store-uri sqlite:///FOLDER/mlflow.db``.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
import time
import warnings
from pathlib import Path

import orjson
import pandas as pd

MODEL = "fuel-efficiency"
FEATURES = ["cylinders", "displacement", "horsepower", "weight", "acceleration", "origin"]
DAY = 86_400.0
LABEL_DELAY_DAYS = 30  # the measured mpg arrives a month after the prediction


def load_cars() -> pd.DataFrame:
    from vega_datasets import data

    cars = data.cars().rename(columns={
        "Name": "name", "Miles_per_Gallon": "mpg", "Cylinders": "cylinders", "Displacement": "displacement",
        "Horsepower": "horsepower", "Weight_in_lbs": "weight", "Acceleration": "acceleration", "Origin": "origin",
    })
    cars["model_year"] = pd.to_datetime(cars["Year"]).dt.year
    cars = cars.dropna(subset=["mpg", "horsepower"]).drop(columns=["Year"])
    cars["weight"] = cars["weight"].astype(float)
    cars["origin"] = cars["origin"].astype(str)
    return cars.reset_index(drop=True)


def make_model():
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = ColumnTransformer([("origin", OneHotEncoder(handle_unknown="ignore"), ["origin"])],
                               remainder="passthrough")
    return make_pipeline(encode, RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=0))


def train_and_register(cars: pd.DataFrame, experiment_id: str, client, description: str) -> tuple[object, str]:
    """Fit on ``cars``, log the model and its reference to a new run, register a version; return both."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.model_selection import KFold, cross_val_predict

    from tripwire.tracking import log_reference

    X, y = cars[FEATURES], cars["mpg"]
    model = make_model()
    # The reference profiles out-of-fold predictions, so its baseline error is an honest one.
    validation = X.assign(mpg=y, prediction=cross_val_predict(model, X, y, cv=KFold(5, shuffle=True, random_state=0)))
    model.fit(X, y)
    with mlflow.start_run(experiment_id=experiment_id, run_name=description) as run:
        mlflow.log_params({"model": "RandomForestRegressor", "n_estimators": 200, "years": description,
                           "rows": len(cars)})
        options = inspect.signature(mlflow.sklearn.log_model).parameters
        where = {"name": "model"} if "name" in options else {"artifact_path": "model"}  # MLflow 3 / 2
        if "skops_trusted_types" in options:  # we built these trees ourselves; MLflow's skops format asks to say so
            where["skops_trusted_types"] = ["sklearn.tree._tree.Tree"]
        info = mlflow.sklearn.log_model(model, registered_model_name=MODEL,
                                        signature=infer_signature(X, model.predict(X)),
                                        pip_requirements=["scikit-learn", "pandas"], **where)
        reference_uri = log_reference(validation, model=MODEL, task="regression", target="mpg",
                                      prediction="prediction", categorical=["origin", "cylinders"], bins=5)
    version = str(info.registered_model_version)
    client.set_registered_model_alias(MODEL, "champion", version)
    baseline = client.get_run(run.info.run_id).data.metrics["baseline_mae"]
    print(f"  trained on {len(cars)} cars ({description}); out-of-fold MAE {baseline:.2f} mpg")
    print(f"  run {run.info.run_id}: model + {reference_uri.split('/', 3)[-1]}; "
          f"registered {MODEL} version {version}, alias champion -> {version}")
    return model, version


def to_events(cars: pd.DataFrame, model, version: str) -> list[bytes]:
    """Predictions through each model year (event time), each car's measured mpg a month later."""
    from tripwire.events import format_ts

    records: list[tuple[float, int, bytes]] = []
    cars = cars.sort_values(["model_year", "name"], kind="stable").reset_index(drop=True)
    predictions = model.predict(cars[FEATURES])
    per_year = cars.groupby("model_year").cumcount().to_numpy()
    year_size = cars.groupby("model_year")["name"].transform("size").to_numpy()
    for i, car in enumerate(cars.itertuples()):
        start = pd.Timestamp(year=int(car.model_year), month=1, day=1, tz="UTC").timestamp()
        ts = start + (per_year[i] + 0.5) / year_size[i] * 365 * DAY
        request = f"car-{car.model_year}-{per_year[i]:03d}"
        features = {name: getattr(car, name) for name in FEATURES}
        features = {k: (int(v) if k == "cylinders" else v) for k, v in features.items()}
        records.append((ts, 0, orjson.dumps({
            "type": "prediction", "schema": 1, "request_id": request, "model": MODEL, "model_version": version,
            "ts": format_ts(ts), "features": features, "prediction": round(float(predictions[i]), 2),
            "attributes": {"origin": car.origin},
        }, option=orjson.OPT_SERIALIZE_NUMPY)))
        label_ts = ts + LABEL_DELAY_DAYS * DAY
        records.append((label_ts, 1, orjson.dumps({
            "type": "label", "schema": 1, "request_id": request, "model": MODEL, "ts": format_ts(label_ts),
            "label": float(car.mpg),
        })))
    return [record for _ts, _kind, record in sorted(records, key=lambda r: (r[0], r[1]))]


CONFIG = """\
# Monitor for the fuel-efficiency example. ~250 cars in all, so the windows are small.
[[models]]
name = "{model}"
reference = "models:/{model}@champion"
window_events = 30            # predictions per data window (about one model year)
performance_window = 30       # labelled predictions per performance window
min_samples = 25              # a window needs this many values to change an alert
label_ttl_seconds = {ttl}     # labels arrive {delay} days after the prediction

[mlflow]
tracking_uri = "{tracking_uri}"
report = true                 # window statistics and alerts go to the experiment below
experiment = "tripwire-monitoring"
flush_windows = 5
alias_check_seconds = 60
"""


def print_alerts(alerts: list[dict], kinds: tuple[str, ...]) -> None:
    shown = [a for a in alerts if a["kind"] in kinds]
    for alert in shown:
        print(f"  {alert['ts'][:10]}  {alert['status']:<8} {alert['severity']:<8} {alert['kind']:<16} "
              f"{alert['signal']:<22} {alert['message']}")
    others: dict[str, int] = {}
    for alert in alerts:
        if alert["kind"] not in kinds:
            others[alert["kind"]] = others.get(alert["kind"], 0) + 1
    if others:
        print(f"  (also {', '.join(f'{n} {k}' for k, n in sorted(others.items()))} alerts)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=Path("mlruns-example"),
                        help="where the MLflow store and the example's files go (default ./mlruns-example)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    folder = args.folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", module="mlflow")  # deprecation noise from MLflow's own dependencies

    import mlflow
    from mlflow import MlflowClient

    from tripwire import cli
    from tripwire.config import load_config
    from tripwire.engine import Engine
    from tripwire.events import decode
    from tripwire.tracking import AliasWatcher, resolve_config

    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_ids = {}
    for name in ("fuel-efficiency-training", "tripwire-monitoring"):
        found = client.get_experiment_by_name(name)
        experiment_ids[name] = found.experiment_id if found else client.create_experiment(
            name, artifact_location=(folder / "artifacts" / name).as_uri())

    cars = load_cars()
    older, newer = cars[cars.model_year <= 1974], cars[cars.model_year >= 1975]
    print(f"auto-MPG: {len(cars)} cars; training on 1970-1974 ({len(older)}), serving 1975-1982 ({len(newer)})")

    print("\n1. train, log the reference, register (MLflow at", tracking_uri + ")")
    model, version = train_and_register(older, experiment_ids["fuel-efficiency-training"], client, "1970-1974")

    print("\n2. events")
    events_path = folder / "events.jsonl"
    records = to_events(newer, model, version)
    events_path.write_bytes(b"\n".join(records) + b"\n")
    print(f"  {events_path}: {len(records)} records (predictions of version {version}, labels "
          f"{LABEL_DELAY_DAYS} days later)")

    config_path = folder / "monitor.toml"
    config_path.write_text(CONFIG.format(model=MODEL, tracking_uri=tracking_uri, ttl=90 * DAY, delay=LABEL_DELAY_DAYS))
    alerts_path = folder / "alerts.jsonl"
    print(f"\n3. tripwire replay {events_path.name} --config {config_path.name} --out {alerts_path.name}")
    code = cli.main(["replay", str(events_path), "--config", str(config_path), "--out", str(alerts_path),
                     "--no-progress"])
    if code != 0:
        return code
    alerts = [orjson.loads(line) for line in alerts_path.read_bytes().splitlines()]

    print(f"\n4. drift and performance alerts on the 1975-1982 cars (model version {version})")
    print_alerts(alerts, ("data_drift", "prediction_drift", "performance", "concept_drift"))
    monitoring = client.search_runs([experiment_ids["tripwire-monitoring"]],
                                    f"tags.`tripwire.model` = '{MODEL}' "
                                    f"and tags.`tripwire.model_version` = '{version}'",
                                    order_by=["attributes.start_time DESC"], max_results=1)
    if monitoring:
        run_id = monitoring[0].info.run_id
        psi = client.get_metric_history(run_id, "feature.weight.psi")
        mae = client.get_metric_history(run_id, "performance.mae")
        print(f"  monitoring run {run_id}: weight PSI per window "
              f"{', '.join(f'{m.value:.2f}' for m in sorted(psi, key=lambda m: m.step))}; "
              f"MAE per window {', '.join(f'{m.value:.1f}' for m in sorted(mae, key=lambda m: m.step))}")

    print("\n5. live: the same stream through one engine; at the end of 1978 the model is retrained on")
    print("   1970-1978 and champion moves; the alias watcher (a worker checks it on a timer) swaps the reference")
    config = load_config(config_path)
    resolved = resolve_config(config)
    engine = Engine(config, references={name: r.reference for name, r in resolved.items()})
    watcher = AliasWatcher.for_config(config, resolved)
    cutoff = pd.Timestamp("1979-01-01", tz="UTC").timestamp()
    before = [event for event in map(decode, records) if event.ts < cutoff]
    engine.process_batch(before)
    retrained, new_version = train_and_register(cars[cars.model_year <= 1978],
                                                experiment_ids["fuel-efficiency-training"], client, "1970-1978")
    for event in watcher.apply(engine, watcher.check()):
        print(f"  alerts topic <- {orjson.dumps(event).decode()}")
    after = engine.process_batch([decode(r) for r in to_events(cars[cars.model_year >= 1979], retrained, new_version)])
    print(f"  1979-1982 cars, scored and monitored as version {new_version}:")
    print_alerts(after, ("data_drift", "prediction_drift", "performance", "concept_drift"))

    print(f"\ndone in {time.perf_counter() - started:.1f} s; browse with: "
          f"mlflow ui --backend-store-uri {tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
