"""The closed loop on the real broker and a real MLflow store: drift -> one retrain request ->
the example retrainer registers a new version and moves the alias -> the worker re-baselines.

The auto-MPG story of ``examples/fuel_efficiency.py``: a model trained on the 1970-1974 cars serves
the 1975-1980 ones, whose features drift (lighter, smaller engines, more imports) until by 1980 four
features drift critically at once. The worker's retrain policy asks for retraining once; the example
retrainer trains on the request's range of labelled cars; ``champion`` moves; the worker's alias
watcher swaps the reference in and closes the old version's alerts. The request is cross-checked with
the same events replayed through one engine and the policy (the worker must say the same, id included).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import orjson
import pandas as pd
import vega_datasets  # noqa: F401  (the test extra: the cars data the loop trains on)
from mlflow import MlflowClient  # noqa: E402

from tests.test_kafka import Worker, read, wait_until  # noqa: E402
from tests.test_sinks import Receiver, active, alertmanager, alertmanager_alerts, free_port  # noqa: E402,F401
from tripwire import cli  # noqa: E402
from tripwire.config import load_config  # noqa: E402
from tripwire.engine import Engine  # noqa: E402
from tripwire.events import decode, parse_ts  # noqa: E402
from tripwire.retrain import TAG, RetrainPolicy  # noqa: E402
from tripwire.streams.publish import publish  # noqa: E402
from tripwire.streams.topics import kafka_settings  # noqa: E402
from tripwire.tracking import resolve_config  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import fuel_efficiency  # noqa: E402
import retrainer  # noqa: E402

BOOTSTRAP = os.environ.get("TRIPWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
RUN = uuid.uuid4().hex[:8]
DAY = 86_400.0
YEAR = 365 * DAY
WAIT = 240.0

CONFIG = """\
[[models]]
name = "fuel-efficiency"
reference = "models:/fuel-efficiency@champion"
window_events = 30
performance_window = 30
min_samples = 25
label_ttl_seconds = {ttl}

[mlflow]
tracking_uri = "{tracking_uri}"
alias_check_seconds = 1

[retrain]
on_drift_features = 3          # the trigger under test: critical drift on three features at once
on_performance_windows = 0
on_estimated = false
min_interval_seconds = {interval}
training_window_seconds = {window}

[[sinks.webhook]]              # the worker routes alerts to people too
url = "{webhook}"
retry_seconds = 0.2
{alertmanager}

[kafka]
bootstrap_servers = "{bootstrap}"

[kafka.topics]
{topics}

[worker]
app_id = "tripwire-retrain-{run}"
checkpoint_seconds = 0.5
utilization_seconds = 1.0
"""


def create_topics(settings, names: list[str]) -> None:
    """Topics that keep the 1970s event times: Kafka's time retention would otherwise delete them."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def create() -> None:
        admin = AIOKafkaAdminClient(**settings.client_kwargs())
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, settings.partitions, 1, topic_configs={"retention.ms": "-1"})
                                       for name in names])
        finally:
            await admin.close()

    asyncio.run(create())


def messages(settings, role: str, kind: str) -> list[dict]:
    values = [orjson.loads(m.value) for m in read(settings, settings.topics[role])]
    return [v for v in values if v.get("type") == kind]


def records_processed(settings) -> int:
    samples = [orjson.loads(m.value) for m in read(settings, settings.topics["metrics"])]
    return max((s.get("records") or 0 for s in samples), default=0)


@dataclass
class Story:
    client: MlflowClient
    tracking_uri: str
    cars: pd.DataFrame
    model: Any
    first: str  # the registered version trained on 1970-1974
    records: list[bytes]  # its predictions of the 1975-1980 cars, and their labels
    events: Path
    config_path: Path


def prepare(tmp_path: Path, name: str, webhook: str, alertmanager: str | None = None) -> Story:
    """Version 1 in a fresh MLflow store, champion on it, the served events, a config on topics named for ``name``."""
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(retrainer.EXPERIMENT, artifact_location=(tmp_path / "artifacts").as_uri())
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        cars = fuel_efficiency.load_cars()
        model, first = fuel_efficiency.train_and_register(cars[cars.model_year <= 1974], experiment_id, client,
                                                          "1970-1974")
    finally:
        mlflow.set_tracking_uri(previous_uri)
    records = fuel_efficiency.to_events(cars[(cars.model_year >= 1975) & (cars.model_year <= 1980)], model, first)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(records) + b"\n")
    roles = ("events", "alerts", "deadletter", "metrics", "checkpoints", "actions")
    topics = "\n".join(f'{role} = "r{RUN}.{name}.{role}"' for role in roles)
    config_path = tmp_path / "monitor.toml"
    config_path.write_text(CONFIG.format(ttl=90 * DAY, tracking_uri=tracking_uri, interval=5 * YEAR, window=6 * YEAR,
                                         bootstrap=BOOTSTRAP, topics=topics, run=f"{RUN}-{name}", webhook=webhook,
                                         alertmanager=f'[[sinks.alertmanager]]\nurl = "{alertmanager}"' if alertmanager else ""))
    return Story(client, tracking_uri, cars, model, first, records, events, config_path)


def expected_requests(story: Story) -> list[dict[str, Any]]:
    """The same events through one engine and the policy: what a worker or a replay must request."""
    config = load_config(story.config_path)
    engine = Engine(config, references={name: r.reference for name, r in resolve_config(config).items()})
    policy = RetrainPolicy(config.retrain)
    return [request for record in story.records for alert in engine.handle(decode(record))
            for request in policy.observe(alert)]


def test_replay_with_sinks_requests_retraining_once_and_tags_the_version(tmp_path: Path) -> None:
    receiver = Receiver(free_port())
    story = prepare(tmp_path, "replay", f"http://127.0.0.1:{receiver.server.server_address[1]}/hook")
    settings = kafka_settings(load_config(story.config_path))
    try:
        out = tmp_path / "alerts.jsonl"
        assert cli.main(["replay", str(story.events), "--config", str(story.config_path), "--out", str(out),
                         "--sinks", "--no-progress"]) == 0
    finally:
        receiver.close()
    # cli.main returned after the trigger delivered; a read of a busy broker can still come back short.
    wait_until(lambda: messages(settings, "actions", "retrain_requested"), "the retrain request on the topic", [], 60)
    assert messages(settings, "actions", "retrain_requested") == expected_requests(story)
    (request,) = expected_requests(story)
    assert story.client.get_model_version("fuel-efficiency", story.first).tags[TAG] == request["request_id"]
    assert [p["alert"] for p in receiver.payloads] == [orjson.loads(line) for line in out.read_bytes().splitlines()]


def test_drift_retrain_alias_move_rebaseline(tmp_path: Path, alertmanager: str) -> None:
    receiver = Receiver(free_port())
    story = prepare(tmp_path, "worker", f"http://127.0.0.1:{receiver.server.server_address[1]}/hook", alertmanager)
    client, tracking_uri, cars, first, records, events, config_path = (
        story.client, story.tracking_uri, story.cars, story.first, story.records, story.events, story.config_path)
    previous_uri = mlflow.get_tracking_uri()
    config = load_config(config_path)
    settings = kafka_settings(config)

    expected = expected_requests(story)
    assert len(expected) == 1 and expected[0]["reason"] == "data_drift" and len(expected[0]["evidence"]) == 3

    create_topics(settings, [settings.events])
    worker = Worker(config_path, "retrain")
    try:
        asyncio.run(publish(settings, records))
        wait_until(lambda: messages(settings, "actions", "retrain_requested"), "a retrain request", [worker], WAIT)
        (request,) = messages(settings, "actions", "retrain_requested")
        assert request == expected[0]
        evidence = {e["alert_id"] for e in request["evidence"]}
        assert request["model_version"] == first
        assert request["train"]["end"] == request["ts"]
        assert parse_ts(request["train"]["end"]) - parse_ts(request["train"]["start"]) == 6 * YEAR
        wait_until(lambda: client.get_model_version("fuel-efficiency", first).tags.get(TAG) == request["request_id"],
                   "the MLflow tag on the version that drifted", [worker], WAIT)
        signals = {e["signal"] for e in request["evidence"]}
        wait_until(lambda: signals <= {a["labels"]["signal"] for a in active(alertmanager_alerts(alertmanager),
                                                                               model="fuel-efficiency")},
                   "the evidence firing in Alertmanager", [worker], WAIT)

        # The example retrainer: one request, a new version, champion moved.
        done = subprocess.run([sys.executable, str(EXAMPLES / "retrainer.py"), "--config", str(config_path),
                               "--data", str(events), "--max-requests", "1", "--timeout", str(WAIT)],
                              capture_output=True, text=True, timeout=WAIT + 60, env={**os.environ})
        assert done.returncode == 0, done.stdout + done.stderr
        second = str(client.get_model_version_by_alias("fuel-efficiency", "champion").version)
        assert int(second) == int(first) + 1
        mlflow.set_tracking_uri(tracking_uri)
        assert client.get_model_version("fuel-efficiency", second).tags[retrainer.DONE_TAG] == request["request_id"]
        trained_on = retrainer.labelled_rows(events, parse_ts(request["train"]["start"]), parse_ts(request["train"]["end"]))
        run = client.get_run(client.get_model_version("fuel-efficiency", second).run_id)
        assert run.data.params["rows"] == str(len(trained_on)) and len(trained_on) > 100
        assert f"training on {len(trained_on)} labelled cars" in done.stdout

        # The worker re-baselines on the new version and closes the old version's alerts.
        wait_until(lambda: messages(settings, "alerts", "reference_changed"), "reference_changed", [worker], WAIT)
        (changed,) = messages(settings, "alerts", "reference_changed")
        assert changed["model_version"] == second and changed["previous_version"] == first
        assert changed["reference"] == f"models:/fuel-efficiency/{second}"
        assert evidence <= set(changed["closed_alerts"])
        wait_until(lambda: not active(alertmanager_alerts(alertmanager), model="fuel-efficiency"),
                   "the old version's alerts to resolve in Alertmanager", [worker], WAIT)

        # The 1981-1982 cars, scored by the new version: monitored against its reference; no second request.
        retrained = mlflow.sklearn.load_model(f"models:/fuel-efficiency/{second}")
        rescored = fuel_efficiency.to_events(cars[cars.model_year >= 1981], retrained, second)
        asyncio.run(publish(settings, rescored))
        total = len(records) + len(rescored)
        wait_until(lambda: records_processed(settings) >= total, "the worker to process every record", [worker], WAIT)
        assert len(messages(settings, "actions", "retrain_requested")) == 1
        after = [a for a in messages(settings, "alerts", "alert") if a["ts"] > changed["ts"] and a["model"] == "fuel-efficiency"]
        assert all(a["model_version"] == second for a in after)
        assert not evidence & {a["incident_id"] for a in after}  # nothing of the old incident goes on

        # The worker's webhook sink saw the alerts of the topic, and the change that closed them.
        published = [a["alert_id"] for a in messages(settings, "alerts", "alert")]
        wait_until(lambda: {p["alert_id"] for p in receiver.payloads} >= set(published) and
                   any(p["alert"]["type"] == "reference_changed" for p in receiver.payloads), "the webhook payloads",
                   [worker], WAIT)
        closing = next(p for p in receiver.payloads if p["alert"]["type"] == "reference_changed")
        assert closing["alert"] == changed and closing["text"].startswith("[REFERENCE CHANGED] fuel-efficiency")
        print(f"request {request['request_id']} at {request['ts']}: {[e['signal'] for e in request['evidence']]}, "
              f"trained on {len(trained_on)} cars -> version {second}; {len(changed['closed_alerts'])} alerts closed; "
              f"{len(after)} alerts of version {second} after; {len(receiver.payloads)} webhook payloads")
    finally:
        worker.stop()
        receiver.close()
        mlflow.set_tracking_uri(previous_uri)


def test_a_restarted_trigger_rebuilds_the_policy_from_the_alerts_topic() -> None:
    from tests.test_retrain import HOUR, T0, Alerts
    from tripwire.alerts import encode_alert
    from tripwire.config import parse_config
    from tripwire.sinks.actions import RetrainTrigger

    topics = {role: f"r{RUN}.recover.{role}" for role in ("alerts", "actions")}
    config = parse_config({"models": [{"name": "fuel", "reference": "fuel.json"}], "kafka": {"topics": topics},
                           "retrain": {"on_drift_features": 1, "min_interval_seconds": 0}})
    settings = kafka_settings(config)
    stream = Alerts()
    history = [stream.window("feature:a", 0.5, T0), stream.window("feature:x", 0.15, T0 + HOUR)]
    later = stream.window("feature:b", 0.5, T0 + 2 * HOUR)  # a second feature while the first is still open

    async def produce() -> None:
        from aiokafka import AIOKafkaProducer

        from tripwire.streams.topics import ensure_topics, running

        await ensure_topics(settings, list(topics.values()))
        async with running(AIOKafkaProducer(**settings.client_kwargs())) as producer:
            for alert in history:
                await producer.send_and_wait(topics["alerts"], encode_alert(alert), key=b"fuel")

    asyncio.run(produce())
    expected = [r for alert in history for r in RetrainPolicy(config.retrain).observe(alert)]
    assert len(expected) == 1

    # The worker died after publishing the alert, before the request: the restart publishes it.
    first = RetrainTrigger.from_config(config, settings, recover=True)
    assert first.requests == expected
    assert first.close(timeout=60)
    assert messages(settings, "actions", "retrain_requested") == expected

    # Restarted again: the request is on the topic, the incident still open; a new alert of it asks nothing.
    second = RetrainTrigger.from_config(config, settings, recover=True)
    second.on_alert(later)
    assert second.requests == [] and second.close(timeout=60)
    assert messages(settings, "actions", "retrain_requested") == expected
    # Without the history the same alert would look like a new incident.
    assert len(RetrainPolicy(config.retrain).observe(later)) == 1
