"""The retraining trigger at work: the policy's requests to the actions topic and to MLflow.

:class:`RetrainTrigger` takes every alert through :meth:`~RetrainTrigger.on_alert` (and, for
``on_performance_windows``, every window through :meth:`~RetrainTrigger.on_window`) and runs the
:class:`~tripwire.retrain.RetrainPolicy`. Each ``retrain_requested`` it emits goes

* to the actions topic (``[kafka.topics] actions``, default ``tripwire.actions``), keyed by model;
* when the model's reference is a ``models:/`` URI and ``tag_mlflow`` is on, onto the registered model
  version as the tag ``tripwire.retrain_requested = <request_id>``.

Both deliveries run on :class:`~tripwire.sinks.delivery.DeliveryRunner` threads (retries with
backoff, bounded buffer), so the worker's event loop never waits on Kafka or MLflow here.

A worker restarts with an empty policy; :meth:`RetrainTrigger.recover` (run by the worker at
start) rebuilds it by feeding the alerts topic through it, which gives the same state since the
policy is a function of the alerts, and publishes any request of that history that never reached
the actions topic (the worker died in between). Window counts (``on_performance_windows``) are
not on the alerts topic: an open performance alert counts its windows again from one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from tripwire.alerts import encode_alert
from tripwire.config import MonitorConfig
from tripwire.retrain import TAG, RetrainPolicy
from tripwire.sinks.delivery import DeliveryRunner, Rejected
from tripwire.streams.topics import KafkaSettings, ensure_topics, read_topic
from tripwire.tracking import tag_model_version

log = logging.getLogger("tripwire.retrain")


class ActionsPublisher:
    """Sends requests to the actions topic from the runner's thread, with a producer and loop of its own."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: Any = None

    def send(self, batch: list[dict[str, Any]]) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._send(batch))

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        from aiokafka import AIOKafkaProducer

        if self._producer is None:
            await ensure_topics(self.kafka, [self.topic])
            producer = AIOKafkaProducer(**self.kafka.client_kwargs(), acks="all")
            try:
                await producer.start()
            except Exception:
                await producer.stop()
                raise
            self._producer = producer
        for request in batch:
            await self._producer.send_and_wait(self.topic, encode_alert(request), key=request["model"].encode())

    def close(self) -> None:
        if self._loop is not None:
            if self._producer is not None:
                self._loop.run_until_complete(self._producer.stop())
            self._loop.close()
            self._loop = self._producer = None


class RetrainTrigger:
    """Policy + deliveries; ``on_alert`` / ``on_window`` are cheap and never raise into the worker."""

    def __init__(self, config: MonitorConfig, kafka: KafkaSettings) -> None:
        if config.retrain is None:
            raise ValueError("the config has no [retrain] table")
        self.policy = RetrainPolicy(config.retrain)
        self.references = {model.name: model.reference for model in config.models}
        self.tracking_uri = config.mlflow.tracking_uri
        self.kafka = kafka
        self.topic = kafka.topics["actions"]
        self.publisher = ActionsPublisher(kafka, self.topic)
        self.kafka_runner = DeliveryRunner(f"actions topic {self.topic}", self.publisher.send, batch_size=16)
        self.mlflow_runner = DeliveryRunner("MLflow tags", self._tag)
        self.requests: list[dict[str, Any]] = []

    @classmethod
    def from_config(cls, config: MonitorConfig, kafka: KafkaSettings, *, recover: bool = False) -> RetrainTrigger | None:
        """The trigger the ``[retrain]`` table asks for (None without one); ``recover``: see :meth:`recover`."""
        if config.retrain is None:
            return None
        trigger = cls(config, kafka)
        if recover:
            trigger.recover()
        return trigger

    def recover(self) -> int:
        """Replay the alerts topic into the policy; publish the requests it gives that the actions topic lacks."""
        loop = asyncio.new_event_loop()  # its own: the caller's loop (if any) stays untouched
        try:
            alerts_topic = self.kafka.topics["alerts"]
            loop.run_until_complete(ensure_topics(self.kafka, [alerts_topic, self.topic]))
            history = loop.run_until_complete(read_topic(self.kafka, alerts_topic))
            published = {_field(m.value, "request_id") for m in loop.run_until_complete(read_topic(self.kafka, self.topic))}
        finally:
            loop.close()
        missing = 0
        for message in sorted(history, key=lambda m: (m.partition, m.offset)):  # a model's alerts share a partition
            try:
                alert = orjson.loads(message.value)
                requests = self.policy.observe(alert) if isinstance(alert, dict) else []
            except Exception:  # not an alert of ours: it did not change the policy then either
                continue
            for request in requests:
                if request["request_id"] not in published:
                    self._dispatch(request)
                    missing += 1
        log.info("retrain policy rebuilt from %d records of %s; %d request(s) re-published", len(history),
                 alerts_topic, missing)
        return missing

    def on_alert(self, alert: dict[str, Any]) -> None:
        self._emit(self.policy.observe, alert)

    def on_window(self, window: dict[str, Any]) -> None:
        self._emit(self.policy.observe_window, window)

    def _emit(self, observe: Any, item: dict[str, Any]) -> None:
        try:
            requests = observe(item)
        except Exception:  # a malformed alert must not stop the worker
            log.exception("retrain policy: cannot read %r", item.get("alert_id") or item.get("type"))
            return
        for request in requests:
            self._dispatch(request)

    def _dispatch(self, request: dict[str, Any]) -> None:
        log.warning("retrain requested for %s version %s (%s, %d alerts): request %s", request["model"],
                    request["model_version"], request["reason"], len(request["evidence"]), request["request_id"])
        self.requests.append(request)
        self.kafka_runner.submit(request)
        if self.policy.model_settings(request["model"])["tag_mlflow"] and \
                self.references.get(request["model"], "").startswith("models:/"):
            self.mlflow_runner.submit(request)

    def _tag(self, batch: list[dict[str, Any]]) -> None:
        from mlflow.exceptions import MlflowException

        for request in batch:
            # The reference the alerts were judged against (a pinned models:/<name>/<version> after a move);
            # behind an alias, the version is the one the events named.
            uri = request.get("reference") or self.references[request["model"]]
            try:
                tag_model_version(uri, TAG, request["request_id"], request.get("model_version"), self.tracking_uri)
            except MlflowException as error:
                if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                    raise Rejected(f"{uri} version {request.get('model_version')}: {error.message}") from None
                raise

    def close(self, timeout: float = 10.0) -> bool:
        ok = [self.kafka_runner.close(timeout), self.mlflow_runner.close(timeout)]
        if not self.kafka_runner.running:  # else a send still holds the publisher's loop; the process exit ends it
            self.publisher.close()
        return all(ok)


def _field(value: bytes | None, name: str) -> Any:
    try:
        document = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return document.get(name) if isinstance(document, dict) else None
