"""A worker's outputs on their way to the broker: sent, awaited, retried, never dropped.

Every output (alert, dead letter, summary) is sent and its delivery awaited before a checkpoint
may cover it. A failed send is kept and retried with backoff (counted in ``/metrics``, an
``unpublished`` infrastructure alert when it lasts); the partition's checkpoint waits for it, and
past ``max_unpublished`` outputs the partition's consumption pauses. Nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from tripwire.alerts import encode_alert
from tripwire.streams.partition import Output
from tripwire.streams.topics import RETRY_BACKOFF_SECONDS

if TYPE_CHECKING:
    from tripwire.streams.worker import MonitorWorker

log = logging.getLogger("tripwire.worker")


@dataclass
class Outgoing:
    """One record to publish, kept until the broker has acknowledged it."""

    topic: str
    key: bytes | None
    value: bytes
    attempts: int = 0


class Outbox:
    """The outputs of a worker's partitions: in flight, or waiting for a retry (see the module docstring)."""

    def __init__(self, worker: MonitorWorker) -> None:
        self.worker = worker
        self.inflight: dict[int, list[tuple[asyncio.Future[Any], Outgoing]]] = defaultdict(list)
        self.unpublished: dict[int, list[Outgoing]] = defaultdict(list)
        self.retry_at: dict[int, float] = {}
        self.paused: set[int] = set()

    def waiting(self) -> int:
        """How many outputs, over every partition, wait for a retry."""
        return sum(len(v) for v in self.unpublished.values())

    def forget(self, partition: int) -> None:
        for table in (self.inflight, self.unpublished, self.retry_at):
            table.pop(partition, None)
        self.paused.discard(partition)

    async def publish(self, partition: int, output: Output) -> None:
        """Send what processing a batch of ``partition`` produced; count it."""
        worker, stats = self.worker, self.worker.stats
        for model, summary in output.summaries:
            await self.send(partition, Outgoing(worker.topics["summaries"], model, summary))
        for alert in output.alerts:
            await self.send(partition, Outgoing(worker.topics["alerts"], alert["model"].encode(), encode_alert(alert)))
            worker._observe_alert(alert)
        for key, entry in output.deadletters:
            await self.send(partition, Outgoing(worker.topics["deadletter"], key, fit_deadletter(entry)))
        if output.records:
            worker.metrics.observe_records(worker.kafka.events, output.records, len(output.deadletters))
            stats.last_record = time.time()
            if stats.first_record is None:
                stats.first_record = stats.last_record
        if output.last_ts is not None:
            worker.metrics.observe_event_time(output.last_ts)
        stats.records += output.records
        stats.alerts += len(output.alerts)
        stats.deadletters += len(output.deadletters)

    async def send(self, partition: int, outgoing: Outgoing) -> None:
        from aiokafka.errors import KafkaError

        try:
            future = await self.worker.producer.send(outgoing.topic, outgoing.value, key=outgoing.key)
        except KafkaError as error:  # refused before it was queued (too large, buffer timed out)
            self._failed(partition, outgoing, error)
            return
        self.inflight[partition].append((future, outgoing))

    def _failed(self, partition: int, outgoing: Outgoing, error: BaseException) -> None:
        outgoing.attempts += 1
        self.unpublished[partition].append(outgoing)
        self.worker.stats.publish_failures += 1
        self.worker.metrics.publish_failures.labels(topic=outgoing.topic).inc()
        delay = RETRY_BACKOFF_SECONDS[min(outgoing.attempts, len(RETRY_BACKOFF_SECONDS)) - 1]
        self.retry_at[partition] = min(self.retry_at.get(partition, float("inf")), time.monotonic() + delay)
        # tripwire.logs collapses repeats of one message: an outage does not flood the log.
        log.warning("could not publish to %s (%s: %s); kept for a retry, and no checkpoint of partition %d "
                    "covers it until it is on the broker", outgoing.topic, type(error).__name__, error, partition)

    async def settle(self, partition: int) -> bool:
        """Wait for every send of ``partition``; True when all of its outputs are on the broker."""
        inflight, self.inflight[partition] = self.inflight[partition], []
        for future, outgoing in inflight:
            try:
                await future
            except Exception as error:
                self._failed(partition, outgoing, error)
        return not self.unpublished[partition]

    async def retry(self, partition: int) -> None:
        if not self.unpublished[partition] or time.monotonic() < self.retry_at.get(partition, 0.0):
            return
        waiting, self.unpublished[partition] = self.unpublished[partition], []
        self.retry_at.pop(partition, None)
        for outgoing in waiting:
            await self.send(partition, outgoing)

    def backpressure(self, partition: int) -> None:
        from aiokafka import TopicPartition

        waiting = len(self.unpublished[partition])
        tp = TopicPartition(self.worker.kafka.events, partition)
        if waiting >= self.worker.settings.max_unpublished and partition not in self.paused:
            self.worker.consumer.pause(tp)
            self.paused.add(partition)
            log.warning("partition %d: %d outputs wait for a retry; consumption paused until they are published",
                        partition, waiting)
        elif partition in self.paused and waiting < self.worker.settings.max_unpublished // 2:
            self.worker.consumer.resume(tp)
            self.paused.discard(partition)
            log.info("partition %d: consumption resumed", partition)


def fit_deadletter(entry: bytes, limit: int = 900_000) -> bytes:
    """A dead-letter entry that fits in one Kafka record: an oversized record is cut, its size and hash kept."""
    if len(entry) <= limit:
        return entry
    import hashlib

    document = orjson.loads(entry)
    field = "record" if "record" in document else "record_hex"
    original = document[field].encode() if field == "record" else bytes.fromhex(document[field])
    document["record_bytes"] = len(original)
    document["record_sha256"] = hashlib.sha256(original).hexdigest()
    document["record_truncated"] = True
    keep = limit // 2 if field == "record" else limit // 4
    document[field] = original[:keep].decode("utf-8", "ignore") if field == "record" else original[:keep].hex()
    return orjson.dumps(document)
