"""The worker's merge stage: a second group consumer that merges sharded models' window summaries.

Every worker runs one (unless ``[worker] stages`` leaves it out), in the consumer group ``<app id>-merge`` on the
summaries topic (``[kafka.topics] summaries``, keyed by model: all of a model's summaries sit on
one partition, so one worker merges it at a time). Per owned summaries partition it keeps a
:class:`~tripwire.shard.merge.ShardMerger`; every merged alert is published with its delivery
awaited (retried with backoff while the broker refuses) before a checkpoint may cover the
summaries that raised it. A checkpoint is the merger's state (pending summaries, watermarks, alert
policies) and the summaries offset it covers, one record in the checkpoints topic under the key
``<app id>-merge/<partition>``. After a crash the new owner restores it and reads on from its
offset; without one it reads the summaries topic from its start. The merge is a function of the
summaries alone, so re-raised alerts are the same bytes with the same ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from tripwire.alerts import encode_alert
from tripwire.shard.merge import ShardMerger
from tripwire.streams.partition import CHECKPOINT_FORMAT, decode_checkpoint, encode_checkpoint
from tripwire.streams.topics import MAX_REQUEST_BYTES, RETRY_BACKOFF_SECONDS, keyed_records_newest_first, partitions_for

if TYPE_CHECKING:
    from tripwire.streams.worker import MonitorWorker

log = logging.getLogger("tripwire.merge")


class MergeStage:
    """The merge consumer of one worker (see the module docstring)."""

    def __init__(self, worker: MonitorWorker) -> None:
        self.worker = worker
        self.topic = worker.topics["summaries"]
        self.group = f"{worker.app_id}-merge"
        self.mergers: dict[int, ShardMerger] = {}
        self.done: dict[int, int] = {}  # per summaries partition: the last offset merged
        self.since_checkpoint: dict[int, int] = {}
        self.last_checkpoint: dict[int, float] = {}
        self.input_partitions = 0
        self.consumer: Any = None
        self._reader: Any = None
        self.lock = asyncio.Lock()

    def open_alerts(self) -> list[dict[str, Any]]:
        return [a for merger in self.mergers.values() for m in merger.monitors.values() for a in m.policy.open_alerts()]

    def waiting(self) -> int:
        """Windows whose summaries wait for a partition's watermark (an idle input partition holds them)."""
        return sum(merger.waiting() for merger in self.mergers.values())

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

        worker, settings = self.worker, self.worker.settings
        session = settings.session_timeout_seconds
        self.consumer = AIOKafkaConsumer(
            **worker.kafka.client_kwargs(), group_id=self.group, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=int(session * 1000),
            heartbeat_interval_ms=int(min(3.0, session / 4) * 1000), rebalance_timeout_ms=max(60_000, int(session * 2000)))
        stage = self

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await stage.on_revoked(revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await stage.on_assigned(assigned)

        await self.consumer.start()
        try:
            self.input_partitions = len(await partitions_for(self.consumer, worker.kafka.events))
            self.consumer.subscribe([self.topic], listener=Listener())
            timeout_ms = int(settings.batch_seconds * 1000)
            while True:
                batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=settings.batch_size)
                async with self.lock:
                    for tp in sorted(batches, key=lambda tp: tp.partition):
                        await self._merge(tp.partition, batches[tp])
                    now = time.monotonic()
                    for partition in sorted(self.mergers):
                        if self._checkpoint_due(partition, now):
                            await self._checkpoint(partition)
        finally:
            await self.stop()

    async def _merge(self, partition: int, messages: list[Any]) -> None:
        merger = self.mergers.get(partition)
        if merger is None:
            return  # revoked while fetched
        for message in messages:
            if message.offset <= self.done[partition]:
                continue
            try:
                alerts = merger.add(orjson.loads(message.value or b""))
            except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
                # Only workers write this topic; still, a bad record is kept with its reason, never run.
                entry = {"reason": f"unreadable window summary: {type(error).__name__}: {error}",
                         "model": None, "topic": self.topic, "partition": partition, "offset": message.offset,
                         "record_hex": (message.value or b"")[:4096].hex()}
                await self._deliver(self.worker.topics["deadletter"], None, orjson.dumps(entry))
                alerts = []
            for alert in alerts:
                await self._deliver(self.worker.topics["alerts"], alert["model"].encode(), encode_alert(alert))
                self.worker._observe_alert(alert)
            self.done[partition] = message.offset
            self.since_checkpoint[partition] = self.since_checkpoint.get(partition, 0) + 1

    async def _deliver(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Send and await the delivery; retry with the worker's backoff until the broker has it."""
        attempts = 0
        while True:
            try:
                await (await self.worker.producer.send(topic, value, key=key))
                return
            except Exception as error:
                self.worker.stats.publish_failures += 1
                self.worker.metrics.publish_failures.labels(topic=topic).inc()
                delay = RETRY_BACKOFF_SECONDS[min(attempts, len(RETRY_BACKOFF_SECONDS) - 1)]
                attempts += 1
                log.warning("merge stage: could not publish to %s (%s: %s); retrying in %.1f s, no checkpoint "
                            "covers it until it is on the broker", topic, type(error).__name__, error, delay)
                await asyncio.sleep(delay)

    # -- checkpoints -----------------------------------------------------------------------------
    def _key(self, partition: int) -> bytes:
        return f"{self.group}/{partition}".encode()

    def _checkpoint_due(self, partition: int, now: float) -> bool:
        pending = self.since_checkpoint.get(partition, 0)
        if not pending:
            return False
        every = self.worker.settings.checkpoint_records
        return bool(every and pending >= every) or (
            now - self.last_checkpoint.get(partition, 0.0) >= self.worker.settings.checkpoint_seconds)

    async def _checkpoint(self, partition: int) -> None:
        """The merger's state and the summaries offset it covers (every alert before it is delivered already)."""
        worker = self.worker
        document = {"format": CHECKPOINT_FORMAT, "topic": self.topic, "partition": partition,
                    "offset": self.done[partition], "state": self.mergers[partition].state(),
                    "worker": worker.worker_id, "written": time.time()}
        blob = encode_checkpoint(document)
        try:
            checkpoints = worker.topics["checkpoints"]
            await (await worker.producer.send(checkpoints, blob, key=self._key(partition),
                                              partition=partition % await worker.checkpoints.topic_partitions()))
        except Exception as error:
            log.warning("merge stage: checkpoint of summaries partition %d not written (%s); retried later",
                        partition, error)
            return
        self.since_checkpoint[partition] = 0
        self.last_checkpoint[partition] = time.monotonic()

    async def _open(self, partition: int) -> ShardMerger:
        """The merger of a newly owned summaries partition, from its newest readable checkpoint."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        worker = self.worker
        if self._reader is None:
            self._reader = AIOKafkaConsumer(**worker.kafka.client_kwargs(), group_id=None, enable_auto_commit=False,
                                            fetch_max_wait_ms=50, max_partition_fetch_bytes=MAX_REQUEST_BYTES,
                                            fetch_max_bytes=MAX_REQUEST_BYTES)
            await self._reader.start()
        tp = TopicPartition(worker.topics["checkpoints"], partition % await worker.checkpoints.topic_partitions())
        async for offset, blob in keyed_records_newest_first(self._reader, tp, self._key(partition)):
            merger = self._new_merger()
            try:
                document = decode_checkpoint(blob)
                merger.restore(document["state"])
            except Exception as error:  # refused whole: the one before it, else the topic from its start
                log.error("merge stage: refused the checkpoint at offset %d of %s: %s", offset, tp, error)
                continue
            self.done[partition] = document["offset"]
            log.info("merge stage: summaries partition %d restored at offset %d (%d windows waiting)", partition,
                     document["offset"], merger.waiting())
            return merger
        self.done[partition] = -1
        return self._new_merger()

    def _new_merger(self) -> ShardMerger:
        return ShardMerger(self.worker.config, self.input_partitions, self.worker.references,
                           on_window=self.worker._on_window)

    # -- rebalances ------------------------------------------------------------------------------
    async def on_revoked(self, revoked: Any) -> None:
        async with self.lock:
            for tp in sorted(revoked, key=lambda tp: tp.partition):
                if tp.partition in self.mergers and self.since_checkpoint.get(tp.partition):
                    await self._checkpoint(tp.partition)

    async def on_assigned(self, assigned: Any) -> None:
        async with self.lock:
            owned = {tp.partition for tp in assigned}
            for partition in set(self.mergers) - owned:
                for table in (self.mergers, self.done, self.since_checkpoint, self.last_checkpoint):
                    table.pop(partition, None)
            for tp in sorted(assigned, key=lambda tp: tp.partition):
                if tp.partition not in self.mergers:
                    self.mergers[tp.partition] = await self._open(tp.partition)
                    self.last_checkpoint[tp.partition] = time.monotonic()
                if self.done[tp.partition] >= 0:
                    self.consumer.seek(tp, self.done[tp.partition] + 1)
                else:
                    await self.consumer.seek_to_beginning(tp)
            log.info("merge stage of worker %s owns summaries partitions %s", self.worker.worker_id, sorted(owned))

    async def stop(self) -> None:
        if self.consumer is not None:
            try:
                async with self.lock:
                    for partition in sorted(self.mergers):
                        if self.since_checkpoint.get(partition):
                            await asyncio.wait_for(self._checkpoint(partition), timeout=10)
            except Exception as error:
                log.warning("merge stage: no final checkpoint (%s)", error)
            await self.consumer.stop()
            self.consumer = None
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None
