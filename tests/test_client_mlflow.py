"""`mlflow models serve` of a monitored model: HTTP requests in, events on the broker, alerts out.

A real scikit-learn regressor is logged to a real MLflow store, wrapped by
``tripwire.client.mlflow.log_monitored_model`` and served by ``mlflow models serve --env-manager
local`` on a free port. Requests carry a drift (car weight +700 lb) from their second half on;
the events the server emitted are read back from the real broker and checked against the contract
and the responses. A `tripwire worker` on that topic must publish the alerts `tripwire replay`
finds in the same events, byte for byte, and they must flag the drifted feature, only after the
drift.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import mlflow
import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from tests.test_client import BOOTSTRAP, records
from tests.test_kafka import Worker, model_alerts, read, wait_until
from tripwire.cli import main as tripwire_cli
from tripwire.client.mlflow import log_monitored_model
from tripwire.config import load_config
from tripwire.events import Prediction, decode, parse_ts
from tripwire.reference import build_reference, save_reference
from tripwire.streams.topics import kafka_settings

MODEL = "fuel-efficiency"
BATCH = 100
NORMAL_BATCHES = DRIFTED_BATCHES = 10


def cars(rng: np.random.Generator, n: int, weight_shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"weight": rng.normal(3000, 500, n) + weight_shift, "horsepower": rng.normal(100, 20, n),
                         "cylinders": rng.choice([4.0, 6.0, 8.0], n)})


def mpg(frame: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    return 50 - frame.weight / 200 - frame.horsepower / 20 + rng.normal(0, 1, len(frame))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, frame: pd.DataFrame) -> list:
    body = json.dumps({"dataframe_split": frame.to_dict(orient="split")}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["predictions"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The monitored model served on a free port; its events go to a topic of this run."""
    directory = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(11)
    train = cars(rng, 2000)
    regressor = LinearRegression().fit(train, mpg(train, rng))
    validation = cars(rng, 2000)
    validation["mpg"] = mpg(validation, rng)
    validation["prediction"] = regressor.predict(validation[["weight", "horsepower", "cylinders"]])
    reference = build_reference(validation, model=MODEL, task="regression", target="mpg", prediction="prediction")
    save_reference(reference, directory / f"{MODEL}.json")

    mlflow.set_tracking_uri(f"sqlite:///{directory / 'mlflow.db'}")
    with mlflow.start_run():
        inner = mlflow.sklearn.log_model(regressor, name="model", input_example=train.head(3))
        wrapped = log_monitored_model(inner.model_uri, model=MODEL, model_version="3", return_request_ids=True)
    model_dir = mlflow.artifacts.download_artifacts(wrapped.model_uri, dst_path=str(directory / "served"))

    topic = f"client.served.{uuid.uuid4().hex[:8]}"
    port = free_port()
    # the server runs `uvicorn` from PATH: this interpreter's environment, as if it were activated
    env = {**os.environ, "TRIPWIRE_KAFKA_BOOTSTRAP": BOOTSTRAP, "TRIPWIRE_CLIENT_TOPIC": topic,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = open(directory / "serve.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", model_dir, "--env-manager",
                               "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow models serve did not come up:\n{(directory / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "topic": topic, "dir": directory, "rng": rng}
    finally:
        stop(server)
        log.close()


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (mlflow's CLI and its uvicorn), SIGKILL after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def traffic(served):
    """Requests to the server: 1,000 ordinary cars, then 1,000 700 lb heavier; half carry a request id."""
    rng = served["rng"]
    sent, answers = [], []
    for batch in range(NORMAL_BATCHES + DRIFTED_BATCHES):
        frame = cars(rng, BATCH, weight_shift=700.0 if batch >= NORMAL_BATCHES else 0.0)
        frame["request_id"] = [f"caller-{batch}-{i}" if i % 2 else None for i in range(BATCH)]
        sent.append(frame)
        answers += post(f"{served['url']}/invocations", frame)
    found = records(BOOTSTRAP, served["topic"], len(answers))
    return {"sent": pd.concat(sent, ignore_index=True), "answers": answers, "records": found}


def test_served_predictions_reach_the_broker_as_valid_events(traffic):
    sent, answers, found = traffic["sent"], traffic["answers"], traffic["records"]
    assert len(found) == len(answers) == len(sent) == BATCH * (NORMAL_BATCHES + DRIFTED_BATCHES)
    # the caller's ids are kept, the others generated, and every one returned in the response
    for row, answer in zip(sent.itertuples(), answers):
        given = row.request_id if isinstance(row.request_id, str) else None
        assert answer["request_id"] == given if given else len(answer["request_id"]) == 32, (row, answer)
    events = [decode(record.value) for record in found]
    assert all(isinstance(event, Prediction) for event in events), [e for e in events if not isinstance(e, Prediction)][:3]
    assert {record.key for record in found} == {MODEL.encode()} and len({r.partition for r in found}) == 1
    by_id = {event.request_id: event for event in events}
    assert set(by_id) == {answer["request_id"] for answer in answers}
    for row, answer in zip(sent.itertuples(), answers):
        event = by_id[answer["request_id"]]
        assert event.prediction == pytest.approx(answer["prediction"])
        assert event.features == pytest.approx({"weight": row.weight, "horsepower": row.horsepower,
                                                "cylinders": row.cylinders})
        assert event.model == MODEL and event.model_version == "3" and event.latency_ms > 0


def monitor_config(path: Path, served: dict, **tables: dict) -> Path:
    """monitor.toml for the served model (data windows of 500 events), plus the given tables."""
    lines = ["[defaults]", "window_events = 500", "", "[[models]]", f'name = "{MODEL}"',
             f'reference = "{served["dir"] / (MODEL + ".json")}"']
    for table, values in tables.items():
        lines += ["", f"[{table}]"] + [f"{key} = {orjson.dumps(value).decode()}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def replayed(traffic, served, tmp_path_factory) -> list[bytes]:
    """The served model's events as the topic holds them, through `tripwire replay`: its alerts."""
    directory = tmp_path_factory.mktemp("replay")
    events = directory / "events.jsonl"
    ordered = sorted(traffic["records"], key=lambda r: (r.partition, r.offset))
    events.write_bytes(b"".join(record.value + b"\n" for record in ordered))
    alerts = directory / "alerts.jsonl"
    assert tripwire_cli(["replay", str(events), "--config", str(monitor_config(directory / "monitor.toml", served)),
                         "--out", str(alerts), "--no-progress"]) == 0
    return alerts.read_bytes().splitlines()


def assert_drift_on_weight_only_after_the_shift(alerts: list[dict], traffic: dict) -> None:
    drift = [a for a in alerts if a["kind"] == "data_drift"]
    assert {a["signal"] for a in drift} == {"feature:weight"}, alerts
    assert all(a["status"] == "firing" and a["model_version"] == "3" for a in drift)
    ordered = sorted(traffic["records"], key=lambda r: (r.partition, r.offset))
    first_drifted_ts = decode(ordered[BATCH * NORMAL_BATCHES].value).ts
    assert all(parse_ts(a["ts"]) >= first_drifted_ts for a in alerts), alerts


def test_the_engine_flags_the_drift_injected_through_the_served_model(replayed, traffic):
    """The served model's events, replayed from the topic in log order: weight drifts, nothing before."""
    assert_drift_on_weight_only_after_the_shift([orjson.loads(line) for line in replayed], traffic)


def test_the_worker_raises_the_alerts_from_the_served_events(replayed, traffic, served, tmp_path):
    """A `tripwire worker` on the events topic the server wrote: the drift alert, as the replay's bytes."""
    topic = served["topic"]
    topics = {"events": topic, **{role: f"{topic}.{role}" for role in ("alerts", "deadletter", "metrics",
                                                                       "checkpoints")}}
    config = monitor_config(tmp_path / "worker.toml", served, kafka={"bootstrap_servers": BOOTSTRAP},
                            **{"kafka.topics": topics},
                            worker={"app_id": f"client-test-{uuid.uuid4().hex[:8]}", "checkpoint_seconds": 0.5,
                                    "utilization_seconds": 1.0, "session_timeout_seconds": 6.0})
    settings = kafka_settings(load_config(config))
    expected = set(replayed)
    worker = Worker(config, "client-test")
    try:
        wait_until(lambda: set(model_alerts(alert_values(settings, topics["alerts"]))) >= expected,
                   f"the worker's alerts to include the replay's {len(expected)}", [worker])
    finally:
        worker.stop()
    published = model_alerts(alert_values(settings, topics["alerts"]))
    assert set(published) == expected
    assert_drift_on_weight_only_after_the_shift([orjson.loads(value) for value in published], traffic)


def alert_values(settings, topic: str) -> list[bytes]:
    return [record.value for record in read(settings, topic)]
