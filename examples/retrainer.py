"""Example retrainer: acts on tripwire's ``retrain_requested`` events for the fuel-efficiency model.

The other half of the loop the worker starts: with a ``[retrain]`` table in its config, the worker
publishes a ``retrain_requested`` event to the actions topic (``tripwire.actions``) when the policy
holds. This service

1. consumes those requests (consumer group ``tripwire-retrainer``; an offset is committed only after
   the request is done, and a request whose ``request_id`` already produced a model version is
   skipped, so a restart or a duplicate never trains twice);
2. takes the labelled data of the request's ``train`` range from the events it is pointed at
   (predictions with their features and labels, the tripwire event contract; a label counts only if
   it had arrived by the end of the range);
3. trains the example's model on it, logs the model and its tripwire reference to MLflow, registers a
   new version of ``fuel-efficiency`` and moves the alias ``champion`` to it
   (:func:`fuel_efficiency.train_and_register`), tagging the version ``tripwire.retrained_for``.

The worker's alias watcher then notices the move, re-baselines on the new version's reference and
publishes ``reference_changed`` (closing the alerts of the old version) on the alerts topic.

Run it next to a worker that uses the same config::

    python examples/retrainer.py --config monitor.toml --data events.jsonl [--max-requests 1] [--timeout 600]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuel_efficiency  # noqa: E402  (the example's model, training and registration)

from tripwire.config import load_config  # noqa: E402
from tripwire.events import parse_ts  # noqa: E402
from tripwire.streams.topics import ensure_topics, kafka_settings, running  # noqa: E402

GROUP = "tripwire-retrainer"
EXPERIMENT = "fuel-efficiency-training"
DONE_TAG = "tripwire.retrained_for"

log = logging.getLogger("retrainer")


def labelled_rows(events: Path, start: float, end: float) -> pd.DataFrame:
    """Cars predicted in ``[start, end]`` whose measured mpg had arrived by ``end``: features + ``mpg``."""
    predictions: dict[str, dict[str, Any]] = {}
    labels: dict[str, float] = {}
    with events.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            event = orjson.loads(line)
            if event.get("model") != fuel_efficiency.MODEL:
                continue
            ts = parse_ts(event["ts"])
            if event["type"] == "prediction" and start <= ts <= end:
                predictions[event["request_id"]] = event["features"]
            elif event["type"] == "label" and ts <= end:
                labels[event["request_id"]] = float(event["label"])
    rows = [{**features, "mpg": labels[request]} for request, features in predictions.items() if request in labels]
    return pd.DataFrame(rows, columns=[*fuel_efficiency.FEATURES, "mpg"])


def already_done(client: Any, request_id: str) -> str | None:
    for version in client.search_model_versions(f"name='{fuel_efficiency.MODEL}'"):
        if version.tags.get(DONE_TAG) == request_id:
            return str(version.version)
    return None


def handle(request: dict[str, Any], data: Path, tracking_uri: str | None) -> str | None:
    """Retrain for one request; returns the new version (or the one an earlier run made for it)."""
    import mlflow
    from mlflow import MlflowClient

    if request.get("model") != fuel_efficiency.MODEL:
        log.warning("request %s is for %r; this retrainer only knows %r", request.get("request_id"),
                    request.get("model"), fuel_efficiency.MODEL)
        return None
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    done = already_done(client, request["request_id"])
    if done is not None:
        print(f"request {request['request_id']}: already retrained as version {done}; skipped", flush=True)
        return done
    start, end = parse_ts(request["train"]["start"]), parse_ts(request["train"]["end"])
    cars = labelled_rows(data, start, end)
    print(f"request {request['request_id']} ({request['reason']}, {len(request['evidence'])} alerts on version "
          f"{request['model_version']}): training on {len(cars)} labelled cars from {request['train']['start'][:10]} "
          f"to {request['train']['end'][:10]}", flush=True)
    found = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = found.experiment_id if found else client.create_experiment(EXPERIMENT)
    description = f"retrain {request['train']['start'][:10]}..{request['train']['end'][:10]}"
    _model, version = fuel_efficiency.train_and_register(cars, experiment_id, client, description)
    client.set_model_version_tag(fuel_efficiency.MODEL, version, DONE_TAG, request["request_id"])
    return version


async def serve(config_path: Path, data: Path, max_requests: int | None, timeout: float | None) -> int:
    from aiokafka import AIOKafkaConsumer

    config = load_config(config_path)
    kafka = kafka_settings(config)
    topic = kafka.topics["actions"]
    tracking_uri = config.mlflow.tracking_uri
    await ensure_topics(kafka, [topic])
    consumer = AIOKafkaConsumer(topic, **kafka.client_kwargs(), group_id=GROUP, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    handled = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    print(f"retrainer: waiting for retrain_requested on {topic} ({kafka.bootstrap_servers})", flush=True)
    async with running(consumer):
        while max_requests is None or handled < max_requests:
            if deadline is not None and time.monotonic() > deadline:
                print(f"retrainer: no more requests within {timeout:.0f} s", flush=True)
                return 1
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for message in messages:
                    event = orjson.loads(message.value)  # JSON only: nothing read from a topic is executed
                    if event.get("type") != "retrain_requested":
                        continue
                    version = await asyncio.get_running_loop().run_in_executor(None, handle, event, data,
                                                                               tracking_uri)
                    handled += version is not None
            if batches:
                await consumer.commit()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="the worker's monitor config ([kafka], [mlflow])")
    parser.add_argument("--data", type=Path, required=True, help="JSONL events with predictions and labels")
    parser.add_argument("--max-requests", type=int, help="stop after this many requests (default: run forever)")
    parser.add_argument("--timeout", type=float, help="give up (exit 1) after this many seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", module="mlflow")
    return asyncio.run(serve(args.config, args.data, args.max_requests, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
