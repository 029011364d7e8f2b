"""A worker's checkpoints: written once their outputs are on the broker, restored on assignment.

A checkpoint is one record in the compacted checkpoints topic (key ``<app id>/<p>``): the engine
state and the offset it covers, compressed JSON. On assignment the new owner restores the newest
checkpoint it can read (an unreadable or tampered one is refused with an alert, and the one
before it is used) and seeks past its offset. The state continues exactly; alerts re-emitted for
records after the checkpoint carry the same ids, so consumers deduplicate on ``alert_id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, AsyncIterator

from tripwire.streams.partition import CheckpointError, PartitionRunner, decode_checkpoint
from tripwire.streams.topics import (
    CHECKPOINT_MAX_BYTES,
    MAX_REQUEST_BYTES,
    keyed_records_newest_first,
    partitions_for,
)

if TYPE_CHECKING:
    from tripwire.streams.worker import MonitorWorker

log = logging.getLogger("tripwire.worker")


class Checkpoints:
    """The checkpoints of a worker's partitions (see the module docstring)."""

    def __init__(self, worker: MonitorWorker) -> None:
        self.worker = worker
        self.checkpointed: dict[int, int] = {}  # the input offset each partition's newest checkpoint covers
        self.last_checkpoint: dict[int, float] = {}
        self._committed: dict[Any, int] | None = None
        self._reader: Any = None
        self._partitions: int | None = None

    def due(self, partition: int, runner: PartitionRunner, now: float) -> bool:
        if runner.since_checkpoint == 0:
            return False
        every = self.worker.settings.checkpoint_records
        if every and runner.since_checkpoint >= every:
            return True
        return now - self.last_checkpoint.get(partition, 0.0) >= self.worker.settings.checkpoint_seconds

    def key(self, partition: int) -> bytes:
        return f"{self.worker.app_id}/{partition}".encode()

    async def write(self, partition: int) -> bool:
        """Write the partition's checkpoint once every output it covers is on the broker."""
        from aiokafka.errors import KafkaError

        if not await self.worker.outbox.settle(partition):
            return False
        runner = self.worker.runners[partition]
        started = time.perf_counter()
        pending = runner.since_checkpoint
        blob, offset = runner.checkpoint(worker=self.worker.worker_id, written=time.time())
        if len(blob) > CHECKPOINT_MAX_BYTES:
            runner.since_checkpoint = pending
            log.warning("partition %d: checkpoint of %d bytes exceeds %d; not written "
                        "(a restart resumes from the last one that fit)", partition, len(blob), CHECKPOINT_MAX_BYTES)
            return False
        try:
            sent = await self.worker.producer.send(self.worker.topics["checkpoints"], blob, key=self.key(partition),
                                                   partition=partition % await self.topic_partitions())
            await sent
        except KafkaError as error:
            runner.since_checkpoint = pending
            self.worker.stats.publish_failures += 1
            self.worker.metrics.publish_failures.labels(topic=self.worker.topics["checkpoints"]).inc()
            log.warning("partition %d: checkpoint not written (%s: %s); retried later",
                        partition, type(error).__name__, error)
            return False
        self.checkpointed[partition] = offset
        self.last_checkpoint[partition] = time.monotonic()
        self.worker.stats.checkpoints += 1
        self.worker.stats.checkpoint_bytes += len(blob)
        self.worker.stats.checkpoint_seconds += time.perf_counter() - started
        return True

    async def open(self, partition: int) -> PartitionRunner:
        """The runner of a newly owned partition: from the newest checkpoint that reads and restores."""
        async for offset, blob in self.candidates(partition):
            runner = self.worker._new_runner(partition)
            try:
                runner.restore(decode_checkpoint(blob), warn=log.warning)
            except Exception as error:  # refused whole: a fresh runner, never a half-restored one
                await self._refuse(partition, offset, error)
                continue
            log.info("partition %d: restored the checkpoint at offset %d (input offset %d)", partition, offset,
                     runner.done)
            self.checkpointed[partition] = runner.done
            return runner
        log.info("partition %d: no checkpoint, starting at the %s offset", partition,
                 self.worker.settings.auto_offset_reset)
        return self.worker._new_runner(partition)

    async def _refuse(self, partition: int, offset: int, error: BaseException) -> None:
        worker = self.worker
        reason = str(error) if isinstance(error, CheckpointError) else f"{type(error).__name__}: {error}"
        worker.stats.checkpoints_refused += 1
        log.error("partition %d: refused the checkpoint record at offset %d of %s: %s; trying the one before it",
                  partition, offset, worker.topics["checkpoints"], reason)
        await worker._one_off(partition, f"checkpoint:{worker.app_id}/{partition}", "checkpoint_refused", 1.0,
                              {"topic": worker.topics["checkpoints"], "offset": offset, "reason": reason[:500],
                               "worker": worker.worker_id},
                              f"worker {worker.worker_id} refused a checkpoint record of partition {partition} "
                              f"({worker.topics['checkpoints']} offset {offset}): {reason[:200]}",
                              kind="infrastructure")

    async def reader(self) -> Any:
        if self._reader is None:
            from aiokafka import AIOKafkaConsumer

            self._reader = AIOKafkaConsumer(**self.worker.kafka.client_kwargs(), group_id=None,
                                            enable_auto_commit=False, fetch_max_wait_ms=50, max_partition_fetch_bytes=MAX_REQUEST_BYTES,
                                            fetch_max_bytes=MAX_REQUEST_BYTES)
            await self._reader.start()
        return self._reader

    async def topic_partitions(self) -> int:
        if self._partitions is None:
            reader = await self.reader()
            self._partitions = len(await partitions_for(reader, self.worker.topics["checkpoints"]))
        return self._partitions

    async def candidates(self, partition: int) -> AsyncIterator[tuple[int, bytes]]:
        """This app's checkpoint records of ``partition``, newest first: ``(offset, value)`` (read lazily:
        further back only when the caller refused every record read so far)."""
        from aiokafka import TopicPartition

        reader = await self.reader()
        tp = TopicPartition(self.worker.topics["checkpoints"], partition % await self.topic_partitions())
        async for candidate in keyed_records_newest_first(reader, tp, self.key(partition)):
            yield candidate

    async def commit(self) -> None:
        """Commit the checkpointed offsets to the group: only for tools that show a group's lag.

        Restores never read them (the checkpoint holds the offset), so a failed commit is harmless.
        """
        from aiokafka import TopicPartition

        offsets = {TopicPartition(self.worker.kafka.events, p): o + 1 for p, o in self.checkpointed.items()
                   if p in self.worker.assigned and o >= 0}
        if not offsets or offsets == self._committed:
            return
        try:
            await asyncio.wait_for(self.worker.consumer.commit(offsets), 5)
            self._committed = offsets
        except Exception as error:
            log.debug("group commit skipped: %s", error)

    def forget(self, partition: int) -> None:
        for table in (self.checkpointed, self.last_checkpoint):
            table.pop(partition, None)

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None
