"""MLflow integration against a real tracking store (sqlite in a temporary folder) and a real server.

Nothing is mocked: references are logged to and read back from MLflow runs and the model registry,
window metrics are read back with ``get_metric_history``, and one test talks to an ``mlflow server``
process over HTTP. MLflow's import and store creation are slow, so the store is shared by the module
and the server starts at the first test, while the others run.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import orjson
import pandas as pd
import pytest
from mlflow import MlflowClient  # noqa: E402

from tripwire import cli  # noqa: E402
from tripwire.config import ConfigError, load_config, parse_config  # noqa: E402
from tripwire.engine import Engine  # noqa: E402
from tripwire.events import Label, Prediction, format_ts  # noqa: E402
from tripwire.reference import ReferenceError, build_reference  # noqa: E402
from tripwire.tracking import (  # noqa: E402
    AliasWatcher,
    MlflowReporter,
    log_reference,
    metric_key,
    resolve,
    resolve_config,
    resolve_reference,
    window_metrics,
)

T0 = 1_795_824_000.0  # 2026-11-28T00:00:00Z


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Store:
    uri: str
    client: MlflowClient
    experiment_id: str
    root: Path


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An ``mlflow server`` (sqlite backend, proxied artifacts) on a free port; started, not awaited."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log_path = root / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/server.db",
             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, cwd=root,
        )
    yield Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        os.killpg(process.pid, 15)  # the server and its uvicorn / job-runner children
    except ProcessLookupError:
        pass
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait(10)


@pytest.fixture(scope="module")
def store(tmp_path_factory, server):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("training", artifact_location=(root / "training").as_uri())
    client.create_experiment("tripwire-monitoring", artifact_location=(root / "monitoring").as_uri())
    previous = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")}
    os.environ["MLFLOW_TRACKING_URI"] = uri  # what resolve_reference("runs:/...") uses
    yield Store(uri, client, experiment_id, root)
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def cars(seed: int, n: int = 300, heavier: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    weight = rng.normal(3000 + heavier, 400, n).round(0)
    horsepower = (weight / 30 + rng.normal(0, 8, n)).round(1)
    origin = rng.choice(["USA", "Europe", "Japan"], size=n, p=[0.6, 0.2, 0.2])
    mpg = 50 - weight / 120 + rng.normal(0, 1.5, n)
    return pd.DataFrame({"weight": weight, "horsepower": horsepower, "origin": origin, "mpg": mpg.round(1),
                         "prediction": (50 - weight / 120).round(2)})


def reference_for(data: pd.DataFrame, model: str = "fuel") -> dict:
    return build_reference(data, model=model, task="regression", target="mpg", prediction="prediction", bins=5)


def training_run(store: Store, reference: dict, register_as: str | None = None) -> tuple[str, str | None]:
    """A run with the reference logged; optionally registered as a new version of a model."""
    run_id = store.client.create_run(store.experiment_id).info.run_id
    log_reference(reference, run_id, tracking_uri=store.uri)
    store.client.set_terminated(run_id)
    version = None
    if register_as:
        try:
            store.client.create_registered_model(register_as)
        except mlflow.exceptions.MlflowException:
            pass  # already there
        version = str(store.client.create_model_version(register_as, f"runs:/{run_id}/model", run_id=run_id).version)
    return run_id, version


def events(data: pd.DataFrame, model: str, version: str, start: float, prefix: str) -> list:
    out = []
    for i, row in enumerate(data.itertuples()):
        ts = start + i
        request = f"{prefix}-{i}"
        out.append(Prediction(request, model, version, ts, {"weight": row.weight, "horsepower": row.horsepower,
                                                            "origin": row.origin}, float(row.prediction), None, None,
                              10.0, {}))
        out.append(Label(request, model, ts + 0.5, float(row.mpg)))
    return out


# -- training time ----------------------------------------------------------------------------
def test_reference_round_trip_through_runs_uri(store):
    reference = reference_for(cars(1))
    run_id, _ = training_run(store, reference)

    run = store.client.get_run(run_id)
    assert run.data.metrics["baseline_mae"] == pytest.approx(reference["baseline"]["mae"])
    assert run.data.metrics["baseline_rmse"] == pytest.approx(reference["baseline"]["rmse"])
    assert run.data.tags["tripwire.reference"] == f"runs:/{run_id}/tripwire/reference.json"
    assert [a.path for a in store.client.list_artifacts(run_id, "tripwire")] == ["tripwire/reference.json"]
    for uri in (f"runs:/{run_id}", f"runs:/{run_id}/tripwire", f"runs:/{run_id}/tripwire/reference.json"):
        assert resolve_reference(uri) == reference, uri
    with pytest.raises(ReferenceError, match="has no artifact 'elsewhere/reference.json'"):
        resolve_reference(f"runs:/{run_id}/elsewhere")


def test_log_reference_builds_from_a_dataframe_in_the_active_run(store):
    data = cars(2)
    with mlflow.start_run(experiment_id=store.experiment_id) as run:
        uri = log_reference(data, model="fuel", task="regression", target="mpg", prediction="prediction",
                            categorical=["origin"])
    assert uri == f"runs:/{run.info.run_id}/tripwire/reference.json"
    loaded = resolve_reference(uri)
    assert loaded["features"]["origin"]["kind"] == "categorical"
    assert loaded["n"] == len(data)


def test_cli_reference_log(store, tmp_path, capsys):
    table = tmp_path / "validation.csv"
    cars(3).to_csv(table, index=False)
    run_id = store.client.create_run(store.experiment_id).info.run_id
    code = cli.main(["reference", "log", "--run-id", run_id, str(table), "--model", "fuel", "--task", "regression",
                     "--target", "mpg", "--prediction", "prediction", "--tracking-uri", store.uri])
    assert code == 0
    assert f"logged runs:/{run_id}/tripwire/reference.json" in capsys.readouterr().out
    assert resolve_reference(f"runs:/{run_id}")["model"] == "fuel"
    assert "baseline_mae" in store.client.get_run(run_id).data.metrics


# -- monitoring time --------------------------------------------------------------------------
def test_models_uri_by_version_and_alias(store):
    reference = reference_for(cars(4))
    run_id, version = training_run(store, reference, register_as="fuel-by-alias")
    store.client.set_registered_model_alias("fuel-by-alias", "champion", version)

    by_version = resolve(f"models:/fuel-by-alias/{version}")
    by_alias = resolve("models:/fuel-by-alias@champion", store.uri)
    assert by_version.reference == by_alias.reference == reference
    assert (by_alias.run_id, by_alias.model_version, by_alias.pinned_uri) == (run_id, version,
                                                                              f"models:/fuel-by-alias/{version}")
    assert resolve_reference("models:/fuel-by-alias@champion") == reference
    with pytest.raises(ReferenceError, match="has no alias 'nobody'"):
        resolve_reference("models:/fuel-by-alias@nobody")
    with pytest.raises(ReferenceError, match="has no version 99"):
        resolve_reference("models:/fuel-by-alias/99")


def test_alias_move_swaps_the_reference_and_resets_the_detectors(store):
    light, heavy = cars(5), cars(6, heavier=1200)
    _, v1 = training_run(store, reference_for(light, "fuel"), register_as="fuel-registry")
    _, v2 = training_run(store, reference_for(heavy, "fuel"), register_as="fuel-registry")
    store.client.set_registered_model_alias("fuel-registry", "champion", v1)
    config = parse_config({
        "models": [{"name": "fuel", "reference": "models:/fuel-registry@champion", "window_events": 100,
                    "performance_window": 100, "min_samples": 50, "change_streams": []}],
        "mlflow": {"tracking_uri": store.uri, "alias_check_seconds": 30},
    })
    resolved = resolve_config(config)
    assert resolved["fuel"].model_version == v1
    engine = Engine(config, references={name: r.reference for name, r in resolved.items()})
    now = [0.0]
    watcher = AliasWatcher.for_config(config, resolved, clock=lambda: now[0])
    assert watcher.interval_seconds == 30

    before = engine.process_batch(events(cars(7, 200, heavier=1200), "fuel", v1, T0, "a"))
    drift = [a for a in before if a["kind"] == "data_drift" and a["status"] == "firing"]
    assert drift and {a["model_version"] for a in drift} == {v1}
    assert watcher.check() == []  # due at once; the alias has not moved

    store.client.set_registered_model_alias("fuel-registry", "champion", v2)
    now[0] = 10.0
    assert watcher.check() == []  # not due yet: no registry call at all
    now[0] = 31.0
    changes = watcher.check()
    assert [(c.model, c.version, c.previous_version, c.uri) for c in changes] == [
        ("fuel", v2, v1, f"models:/fuel-registry/{v2}")]
    old_monitor = engine.monitors["fuel"]
    [event] = watcher.apply(engine, changes)
    assert event == {
        "type": "reference_changed", "schema": 1, "model": "fuel", "model_version": v2,
        "reference": f"models:/fuel-registry/{v2}", "previous_version": v1,
        "previous_reference": "models:/fuel-registry@champion",
        "closed_alerts": [a["alert_id"] for a in old_monitor.policy.open_alerts()],
        "ts": format_ts(T0 + 199.5),
    }
    assert len(event["closed_alerts"]) >= len(drift)
    monitor = engine.monitors["fuel"]
    assert monitor is not old_monitor and monitor.window_index == 0 and monitor.policy.open_alerts() == []
    assert monitor.reference == changes[0].reference

    # Heavy cars match version 2's reference: no drift now, and nothing "resolves" from version 1.
    after = engine.process_batch(events(cars(8, 200, heavier=1200), "fuel", v2, T0 + 1000, "b"))
    assert [a for a in after if a["kind"] == "data_drift"] == []
    # Light cars drift against version 2: the alerts name version 2 and its pinned reference.
    later = engine.process_batch(events(cars(9, 200), "fuel", v2, T0 + 2000, "c"))
    drift = [a for a in later if a["kind"] == "data_drift"]
    assert drift and {(a["model_version"], a["reference"]) for a in drift} == {(v2, f"models:/fuel-registry/{v2}")}
    now[0] = 62.0
    assert watcher.check() == []


def test_window_metrics_and_alerts_reach_mlflow(store):
    reporter = MlflowReporter(store.uri, "tripwire-monitoring", flush_windows=2, background=False,
                              references={"fuel": "models:/fuel-registry/3"})
    for index in range(5):
        reporter.on_window({"model": "fuel", "model_version": "3", "family": "data", "index": index,
                            "start": T0 + 60 * index, "end": T0 + 60 * index + 59.5, "n": 100,
                            "stats": {"feature:weight.psi": 0.01 * index, "feature:weight.pvalue": None,
                                      "serving.latency_p95": 12.5}})
    reporter.on_window({"model": "fuel", "model_version": "3", "family": "performance", "index": 0,
                        "start": T0, "end": T0 + 120, "n": 50, "stats": {"performance:mae": 2.5}})
    assert reporter.pending == 0  # two flushes of two windows, then one of two
    run_id = reporter.run_id("fuel", "3")
    history = store.client.get_metric_history(run_id, "feature.weight.psi")
    assert [(m.step, m.timestamp, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (i, int((T0 + 60 * i + 59.5) * 1000), pytest.approx(0.01 * i)) for i in range(5)]
    assert [m.value for m in store.client.get_metric_history(run_id, "performance.mae")] == [2.5]
    assert [m.step for m in store.client.get_metric_history(run_id, "data.n")] == [0, 1, 2, 3, 4]
    assert store.client.get_metric_history(run_id, "feature.weight.pvalue") == []  # None is not a metric

    alert = {"type": "alert", "alert_id": "a1", "model": "fuel", "model_version": "3", "status": "firing"}
    reporter.on_alert(alert)
    reporter.on_window({"model": "fuel", "model_version": "4", "family": "data", "index": 0, "start": T0,
                        "end": T0 + 1, "n": 3, "stats": {}})
    assert reporter.close() is True
    run = store.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["tripwire.model_version"] == "3"
    assert run.data.tags["tripwire.reference"] == "models:/fuel-registry/3"
    text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/alerts.jsonl")
    assert [orjson.loads(line) for line in text.splitlines()] == [alert]
    assert reporter.run_id("fuel", "4") not in (None, run_id)  # one run per model version


def test_metric_keys_are_valid_mlflow_names():
    assert metric_key("feature:weight.psi") == "feature.weight.psi"
    assert metric_key("fairness:région/../x.ratio") == "fairness.r_gion/_/x.ratio"
    assert metric_key("feature:a//b") == "feature.a/b"
    window = {"model": "m", "family": "data", "index": 3, "end": 1.5, "n": 7,
              "stats": {"x": float("nan"), "y": True, "z": 2}}
    assert window_metrics(window) == [("data.n", 7.0, 1500, 3), ("z", 2.0, 1500, 3)]


def test_replay_reports_to_mlflow_when_configured(store, tmp_path, capsys):
    reference = reference_for(cars(10), "fuel-replay")
    run_id, _ = training_run(store, reference)
    lines = []
    for i, row in enumerate(cars(11, 120, heavier=1500).itertuples()):
        ts = format_ts(T0 + i)
        lines.append(orjson.dumps({"type": "prediction", "schema": 1, "request_id": f"r{i}", "model": "fuel-replay",
                                   "model_version": "1", "ts": ts, "prediction": float(row.prediction),
                                   "features": {"weight": row.weight, "horsepower": row.horsepower,
                                                "origin": row.origin}}))
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "monitor.toml").write_text(f"""
[[models]]
name = "fuel-replay"
reference = "runs:/{run_id}"
window_events = 40
min_samples = 30

[mlflow]
tracking_uri = "{store.uri}"
report = true
flush_windows = 2
""")
    assert load_config(tmp_path / "monitor.toml").mlflow.report is True
    code = cli.main(["replay", str(tmp_path / "events.jsonl"), "--config", str(tmp_path / "monitor.toml"),
                     "--out", str(tmp_path / "alerts.jsonl"), "--no-progress"])
    assert code == 0
    assert "3 of 3 windows logged" in capsys.readouterr().out
    experiment = store.client.get_experiment_by_name("tripwire-monitoring")
    [run] = store.client.search_runs([experiment.experiment_id], "tags.`tripwire.model` = 'fuel-replay'")
    assert [m.step for m in store.client.get_metric_history(run.info.run_id, "feature.weight.psi")] == [0, 1, 2]
    alerts = (tmp_path / "alerts.jsonl").read_bytes()
    assert alerts and mlflow.artifacts.load_text(f"{run.info.artifact_uri}/alerts.jsonl").encode() == alerts


def test_mlflow_config_keys_are_validated():
    models = [{"name": "m", "reference": "r.json"}]
    assert vars(parse_config({"models": models}).mlflow) == {
        "tracking_uri": None, "experiment": "tripwire-monitoring", "report": False, "flush_windows": 10,
        "buffer_windows": 10_000, "alias_check_seconds": 60.0}
    for table, message in (({"report": "yes"}, "mlflow.report must be true or false"),
                           ({"flush_windows": 0}, "mlflow.flush_windows must be a positive integer"),
                           ({"alias_check_seconds": -1}, "mlflow.alias_check_seconds must be a number > 0"),
                           ({"experiment": ""}, "mlflow.experiment must be a non-empty string"),
                           ({"tracking": "x"}, "mlflow.tracking: unknown key")):
        with pytest.raises(ConfigError, match=message):
            parse_config({"models": models, "mlflow": table})


# -- MLflow down ------------------------------------------------------------------------------
def test_unreachable_mlflow_never_stops_the_caller(monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail each attempt fast; the reporter retries
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    closed = f"http://127.0.0.1:{free_port()}"
    caplog.set_level(logging.WARNING, logger="tripwire.tracking")

    reporter = MlflowReporter(closed, flush_windows=1, buffer_windows=3, background=False, retry_seconds=0.05)
    for index in range(5):
        reporter.on_window({"model": "fuel", "model_version": "1", "family": "data", "index": index,
                            "start": T0, "end": T0 + index, "n": 10, "stats": {"feature:weight.psi": 0.1}})
    assert reporter.failures >= 1 and "Connection refused" in reporter.last_error
    assert (reporter.pending, reporter.dropped, reporter.delivered) == (3, 2, 0)
    started = time.monotonic()
    assert reporter.close(timeout=0.5) is False
    assert time.monotonic() - started < 10
    messages = caplog.text
    assert f"MLflow at {closed}: delivery failed" in messages
    assert "dropped the oldest, 1 dropped so far" in messages
    assert "3 windows and 0 alerts not delivered" in messages

    background = MlflowReporter(closed, flush_windows=2, background=True, retry_seconds=0.05)
    started = time.monotonic()
    for index in range(50):
        background.on_window({"model": "fuel", "model_version": "1", "family": "data", "index": index,
                              "start": T0, "end": T0 + index, "n": 10, "stats": {"x": 1.0}})
    assert time.monotonic() - started < 1.0  # the sink only appends; delivery is on the thread
    assert background.close(timeout=1.0) is False
    assert background.pending == 50 and background.failures >= 1

    watcher = AliasWatcher({"fuel": "models:/fuel@champion"}, tracking_uri=closed, versions={"fuel": "1"})
    assert watcher.check() == []
    assert "cannot check models:/fuel@champion for fuel" in caplog.text


# -- a real server over HTTP ------------------------------------------------------------------
def test_mlflow_server_over_http(server, tmp_path):
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"mlflow server did not start:\n{server.log.read_text()[-3000:]}")
        time.sleep(0.25)

    client = MlflowClient(server.url)
    experiment_id = client.create_experiment("training-over-http")  # artifacts proxied by the server
    run_id = client.create_run(experiment_id).info.run_id
    reference = reference_for(cars(12), "fuel-http")
    assert log_reference(reference, run_id, tracking_uri=server.url) == f"runs:/{run_id}/tripwire/reference.json"
    assert client.get_run(run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    client.create_registered_model("fuel-http")
    version = str(client.create_model_version("fuel-http", f"runs:/{run_id}/model", run_id=run_id).version)
    client.set_registered_model_alias("fuel-http", "champion", version)

    resolved = resolve("models:/fuel-http@champion", server.url)
    assert (resolved.reference, resolved.model_version, resolved.run_id) == (reference, version, run_id)

    reporter = MlflowReporter(server.url, flush_windows=1, background=True)
    reporter.on_window({"model": "fuel-http", "model_version": version, "family": "data", "index": 0,
                        "start": T0, "end": T0 + 2, "n": 5, "stats": {"feature:weight.psi": 0.2}})
    assert reporter.close(timeout=30) is True
    [metric] = client.get_metric_history(reporter.run_id("fuel-http", version), "feature.weight.psi")
    assert (metric.step, metric.timestamp, metric.value) == (0, int((T0 + 2) * 1000), 0.2)
