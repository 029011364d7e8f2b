"""The Faust worker's logic: batches in, alerts and dead letters out, checkpoints, utilization.

:mod:`tripwire.streams.app` keeps the Faust app and its agents a few lines long and calls into
:class:`MonitorWorker`. How state survives a crash:

* every input partition number ``p`` has a :class:`~.partition.PartitionRunner` (engine + event-time
  merge of ``predictions[p]``, ``features[p]``, ``labels[p]`` + processed offsets);
* a checkpoint of a runner is one record in the compacted checkpoints topic (key ``<app id>/<p>``,
  partition ``p``): the engine state and the offsets it covers. Before writing it the worker flushes
  the producer, so every alert and dead letter of the covered records is on the broker first;
* events are acked to Faust (so the consumer group may commit them) only once a checkpoint covers
  them. After a SIGKILL the group resumes at or before the checkpoint, the runner restores it and
  skips what it covers: the state continues exactly, and alerts re-emitted for records after the
  checkpoint carry the same deterministic ids, which consumers deduplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from typing import Any, Callable, Iterable

import orjson

from tripwire.alerts import encode_alert
from tripwire.config import MonitorConfig
from tripwire.engine import Engine
from tripwire.streams.metrics import WorkerMetrics
from tripwire.streams.partition import Output, PartitionRunner, decode_checkpoint
from tripwire.streams.status import StatusBoard
from tripwire.streams.topics import CHECKPOINT_MAX_BYTES, KafkaSettings
from tripwire.streams.utilization import Sampler, UtilizationMonitor, default_worker_id

log = logging.getLogger("tripwire.worker")

# A source with no record for this long (and none buffered) counts as idle even when its highwater
# says otherwise (transaction markers leave the highwater one past the last record).
STALE_IDLE_FACTOR = 20


class Stats:
    def __init__(self) -> None:
        self.records = 0
        self.alerts = 0
        self.deadletters = 0
        self.duplicates = 0
        self.misrouted = 0
        self.checkpoints = 0
        self.checkpoint_bytes = 0
        self.checkpoint_seconds = 0.0
        self.first_record: float | None = None  # wall clock of the first and the last processed record
        self.last_record: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "alerts": self.alerts, "deadletters": self.deadletters,
                "duplicates_skipped": self.duplicates, "misrouted": self.misrouted, "checkpoints": self.checkpoints,
                "checkpoint_bytes": self.checkpoint_bytes,
                "checkpoint_ms_mean": 1000 * self.checkpoint_seconds / self.checkpoints if self.checkpoints else None,
                "first_record": self.first_record, "last_record": self.last_record}


class MonitorWorker:
    """Everything the agent, the timers and the rebalance signals of one worker do."""

    def __init__(self, app: Any, config: MonitorConfig, kafka: KafkaSettings,
                 references: dict[str, dict[str, Any]] | None = None,
                 on_window: Callable[[dict[str, Any]], None] | None = None,
                 on_alert: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.app = app
        self.config = config
        self.kafka = kafka
        self.settings = config.worker
        self.topics = kafka.topics
        self.inputs = kafka.inputs
        self.references = references
        self.on_alert: list[Callable[[dict[str, Any]], None]] = [] if on_alert is None else [on_alert]
        self.worker_id = self.settings.get("worker_id") or default_worker_id()  # default: host-pid
        # What the web port serves: Prometheus metrics at /metrics, the status board at /status.
        self.metrics = WorkerMetrics()
        self.status = StatusBoard(self.worker_id)
        self._window_sinks = [self.metrics.observe_window, self.status.observe_window]
        if on_window is not None:
            self._window_sinks.append(on_window)
        self.app_id = self.settings["app_id"]
        self.runners: dict[int, PartitionRunner] = {}
        self.assigned: set[int] = set()
        self.checkpointed: dict[int, dict[str, int]] = {}
        self.pending: dict[tuple[str, int], deque[tuple[int, Any]]] = defaultdict(deque)
        self.last_checkpoint: dict[int, float] = {}
        self.last_delivery: dict[tuple[str, int], float] = {}
        self.idle_since: dict[tuple[str, int], float] = {}
        self.stream: Any = None
        self.lock = asyncio.Lock()
        self.stats = Stats()
        self.utilization = UtilizationMonitor(self.worker_id,
                                              window_seconds=self.settings["utilization_window_seconds"],
                                              thresholds=self.settings["thresholds"])
        self.sampler: Sampler | None = None
        self.loop_lag_ms = 0.0
        self._reader: Any = None
        self._checkpoint_partitions: int | None = None
        self.watcher: Any = None  # tracking.AliasWatcher when a reference is a models:/NAME@ALIAS

    # -- the agent -----------------------------------------------------------------------------
    async def on_batch(self, stream: Any, events: Iterable[Any]) -> None:
        self.stream = stream
        try:
            await self._take(events)
        except Exception as error:  # cannot publish or checkpoint: stop; a restart resumes from the checkpoint
            await self._crash(error)

    async def _crash(self, error: Exception) -> None:
        log.exception("worker %s cannot go on (%s); stopping so that a restart resumes from the last checkpoint",
                      self.worker_id, error)
        await self.app.crash(error)

    async def _take(self, events: Iterable[Any]) -> None:
        now = time.monotonic()
        async with self.lock:
            touched: set[int] = set()
            for event in events:
                message = event.message
                partition = message.partition
                if partition not in self.assigned:
                    continue  # revoked while buffered; the new owner reads it from the group offsets
                runner = self.runners.get(partition) or await self._open(partition)
                tp = (message.topic, partition)
                self.pending[tp].append((message.offset, event))
                self.last_delivery[tp] = now
                timestamp = message.timestamp
                misrouted = runner.misrouted
                if not runner.offer(message.topic, message.offset,
                                    None if timestamp is None else round(timestamp * 1000), message.value,
                                    message.key):
                    self.stats.duplicates += 1
                if runner.misrouted > misrouted and not self.stats.misrouted:
                    log.warning("%s[%d] offset %d: record keyed %r is for another model; producers must key every "
                                "record by its model, or a model's windows are split across partitions",
                                message.topic, partition, message.offset, message.key)
                self.stats.misrouted += runner.misrouted - misrouted
                touched.add(partition)
            await self._advance(touched)

    async def tick(self) -> None:
        """Timer: release what waited on a source that turned out idle; checkpoint when due."""
        if not self.runners or self.lock.locked():
            return  # the agent is at it; it advances every partition it touches
        try:
            async with self.lock:
                await self._advance(self.runners)
        except Exception as error:
            await self._crash(error)

    async def _advance(self, partitions: Iterable[int]) -> None:
        now = time.monotonic()
        for partition in sorted(partitions):
            runner = self.runners.get(partition)
            if runner is None:
                continue
            output = runner.release(self._idle(partition, runner, now))
            await self._publish(output)
            if self._checkpoint_due(partition, runner, now):
                await self._checkpoint(partition)
            await self._ack(partition)

    def _idle(self, partition: int, runner: PartitionRunner, now: float) -> set[str]:
        """Input topics of ``partition`` with nothing buffered and nothing more on the broker (for a while)."""
        idle = set()
        grace = self.settings["merge_idle_ms"] / 1000.0
        for topic in self.inputs:
            tp = (topic, partition)
            if runner.merge.pending(topic):
                self.idle_since.pop(tp, None)
                continue
            highwater = self._highwater(topic, partition)
            caught_up = highwater is not None and runner.seen[topic] + 1 >= highwater
            if not caught_up:
                last = self.last_delivery.get(tp)
                caught_up = last is not None and now - last > max(5.0, STALE_IDLE_FACTOR * grace)
            if not caught_up:
                self.idle_since.pop(tp, None)
                continue
            since = self.idle_since.setdefault(tp, now)
            if now - since >= grace:
                idle.add(topic)
        return idle

    def _highwater(self, topic: str, partition: int) -> int | None:
        from faust.types import TP

        try:
            return self.app.consumer.highwater(TP(topic, partition))
        except Exception:  # not assigned (any more), or no fetch yet
            return None

    async def _publish(self, output: Output) -> None:
        if not (output.alerts or output.deadletters or output.records):
            return
        producer = self.app.producer
        for alert in output.alerts:
            await producer.send(self.topics["alerts"], alert["model"].encode(), encode_alert(alert), None, None, None)
            self._observe_alert(alert)
        for key, entry in output.deadletters:
            await producer.send(self.topics["deadletter"], key, entry, None, None, None)
        for topic, count in output.by_topic.items():
            self.metrics.observe_records(topic, count)
        if output.deadletters:
            self.metrics.rejected.inc(len(output.deadletters))
        if output.last_ts is not None:
            self.metrics.observe_event_time(output.last_ts)
        if output.records:
            self.stats.last_record = time.time()
            if self.stats.first_record is None:
                self.stats.first_record = self.stats.last_record
        self.stats.records += output.records
        self.stats.alerts += len(output.alerts)
        self.stats.deadletters += len(output.deadletters)

    # -- checkpoints -----------------------------------------------------------------------------
    def _checkpoint_due(self, partition: int, runner: PartitionRunner, now: float) -> bool:
        if runner.since_checkpoint == 0:
            return False
        every = self.settings["checkpoint_records"]
        if every and runner.since_checkpoint >= every:
            return True
        return now - self.last_checkpoint.get(partition, 0.0) >= self.settings["checkpoint_seconds"]

    def checkpoint_key(self, partition: int) -> bytes:
        return f"{self.app_id}/{partition}".encode()

    async def _checkpoint(self, partition: int) -> None:
        runner = self.runners[partition]
        started = time.perf_counter()
        # Snapshot first, then flush: everything the snapshot covers was queued before the flush.
        blob, offsets = runner.checkpoint(worker=self.worker_id, written=time.time())
        if len(blob) > CHECKPOINT_MAX_BYTES:
            log.error("partition %d: checkpoint of %d bytes exceeds %d; not written (the state will be rebuilt "
                      "from the last one that fit)", partition, len(blob), CHECKPOINT_MAX_BYTES)
            return
        producer = self.app.producer
        await producer.flush()
        sent = await producer.send(self.topics["checkpoints"], self.checkpoint_key(partition), blob,
                                   partition % await self._checkpoint_topic_partitions(), None, None)
        await sent
        self.checkpointed[partition] = offsets
        self.last_checkpoint[partition] = time.monotonic()
        self.stats.checkpoints += 1
        self.stats.checkpoint_bytes += len(blob)
        self.stats.checkpoint_seconds += time.perf_counter() - started

    async def _ack(self, partition: int) -> None:
        """Ack to Faust every event a durable checkpoint covers, so the group may commit past it."""
        covered = self.checkpointed.get(partition)
        if covered is None or self.stream is None:
            return
        for topic in self.inputs:
            queue = self.pending.get((topic, partition))
            limit = covered.get(topic, -1)
            while queue and queue[0][0] <= limit:
                _offset, event = queue.popleft()
                await self.stream.ack(event)

    async def _open(self, partition: int) -> PartitionRunner:
        """A runner for a newly owned partition, restored from its checkpoint when there is one."""
        runner = self._new_runner(partition)
        document = await self.read_checkpoint(partition)
        if document is not None:
            try:
                runner.restore(document, warn=log.warning)
            except Exception:
                log.exception("partition %d: cannot restore the checkpoint; starting fresh detectors after "
                              "its offsets", partition)
                runner = self._new_runner(partition)
                for topic in runner.inputs:
                    runner.seen[topic] = runner.done[topic] = document["offsets"].get(topic, -1)
            self.checkpointed[partition] = dict(runner.done)
            log.info("partition %d: restored the checkpoint of %s (offsets %s, %d records)", partition,
                     document.get("worker"), runner.done, document.get("records", 0))
        else:
            log.info("partition %d: no checkpoint, starting from the group's position", partition)
        self.runners[partition] = runner
        self.last_checkpoint[partition] = time.monotonic()
        return runner

    def _on_window(self, window: dict[str, Any]) -> None:
        for sink in self._window_sinks:
            sink(window)

    def _observe_alert(self, alert: dict[str, Any]) -> None:
        if alert.get("type") == "alert":  # not reference_changed
            self.metrics.observe_alert(alert)
            self.status.observe_alert(alert)
        for sink in self.on_alert:  # MLflow reporter, alert sinks, retrain trigger: each only buffers
            sink(alert)

    def open_alerts(self) -> list[dict[str, Any]]:
        found = [a for runner in self.runners.values() for a in runner.engine.open_alerts()]
        return found + self.utilization.policy.open_alerts()

    def _new_runner(self, partition: int) -> PartitionRunner:
        engine = Engine(self.config, references=self.references, on_window=self._on_window)
        return PartitionRunner(partition, self.inputs, engine, max_buffered=self.settings["merge_max_buffer"])

    async def _checkpoint_reader(self) -> Any:
        if self._reader is None:
            from aiokafka import AIOKafkaConsumer

            self._reader = AIOKafkaConsumer(**self.kafka.client_kwargs(), group_id=None, enable_auto_commit=False,
                                            fetch_max_wait_ms=50,
                                            max_partition_fetch_bytes=CHECKPOINT_MAX_BYTES + (1 << 20),
                                            fetch_max_bytes=CHECKPOINT_MAX_BYTES + (1 << 20))
            await self._reader.start()
        return self._reader

    async def _checkpoint_topic_partitions(self) -> int:
        if self._checkpoint_partitions is None:
            from tripwire.streams.topics import partitions_for

            reader = await self._checkpoint_reader()
            self._checkpoint_partitions = len(await partitions_for(reader, self.topics["checkpoints"]))
        return self._checkpoint_partitions

    async def read_checkpoint(self, partition: int) -> dict[str, Any] | None:
        """The newest checkpoint of ``partition`` for this app id: read the topic backwards in steps."""
        from aiokafka import TopicPartition

        reader = await self._checkpoint_reader()
        tp = TopicPartition(self.topics["checkpoints"], partition % await self._checkpoint_topic_partitions())
        reader.assign([tp])
        begin = (await reader.beginning_offsets([tp]))[tp]
        stop = (await reader.end_offsets([tp]))[tp]
        key = self.checkpoint_key(partition)
        step = 4
        while stop > begin:
            start = max(begin, stop - step)
            reader.seek(tp, start)
            found = None
            deadline = time.monotonic() + 30
            while await reader.position(tp) < stop:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading checkpoints from {tp} took more than 30 s")
                batch = await reader.getmany(tp, timeout_ms=500)
                for message in batch.get(tp, []):
                    if message.offset < stop and message.key == key:
                        found = message.value
            if found is not None:
                return decode_checkpoint(found)
            stop, step = start, step * 8
        return None

    # -- rebalances --------------------------------------------------------------------------------
    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        """Write a last checkpoint of every partition while this worker still owns it."""
        async with self.lock:
            for partition in sorted(self.runners):
                try:
                    if self.runners[partition].since_checkpoint:
                        await asyncio.wait_for(self._checkpoint(partition), timeout=10)
                    await self._ack(partition)
                except Exception as error:
                    log.warning("partition %d: no checkpoint at revocation (%s)", partition, error)
            self.assigned = set()

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        """Keep the runners of partitions this worker still owns; forget the rest."""
        async with self.lock:
            owned = {tp.partition for tp in assigned if tp.topic in self.inputs}
            for partition in sorted(set(self.runners) - owned):
                del self.runners[partition]
                self.checkpointed.pop(partition, None)
                self.last_checkpoint.pop(partition, None)
                for topic in self.inputs:
                    self.pending.pop((topic, partition), None)
                    self.idle_since.pop((topic, partition), None)
                    self.last_delivery.pop((topic, partition), None)
            self.assigned = owned
            log.info("worker %s owns partitions %s", self.worker_id, sorted(owned))

    # -- utilization -----------------------------------------------------------------------------
    async def measure_loop_lag(self, interval: float = 0.25) -> None:
        """Task: how late a timer fires is how long something blocked the event loop."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(interval)
            lag = (loop.time() - started - interval) * 1000.0
            self.loop_lag_ms = max(self.loop_lag_ms, lag)

    async def consumer_lag(self) -> tuple[int | None, int | None]:
        """Summed over the input partitions this worker owns: highwater minus the monitor's position
        (the next record the engine has yet to process), and highwater minus the fetch position.

        The first is the lag that matters: records fetched but still queued in Faust's buffers or
        held by the merge are not monitored yet, and under load that queue is seconds long.
        """
        from faust.types import TP

        lag = fetch_lag = 0
        known = False
        for partition in sorted(self.assigned):
            runner = self.runners.get(partition)
            for topic in self.inputs:
                highwater = self._highwater(topic, partition)
                try:
                    position = await self.app.consumer.position(TP(topic, partition))
                except Exception:
                    position = None
                if highwater is None or position is None:
                    continue
                known = True
                fetch_lag += max(0, highwater - position)
                processed = runner.done[topic] + 1 if runner is not None else position
                lag += max(0, highwater - max(processed, 0))
        return (lag, fetch_lag) if known else (None, None)

    async def sample_utilization(self) -> None:
        """Timer: one utilization sample to the metrics topic; infrastructure alerts to the alerts topic."""
        if self.sampler is None:
            self.sampler = Sampler(self.worker_id)
            return  # the first CPU reading only starts the interval
        loop_lag, self.loop_lag_ms = self.loop_lag_ms, 0.0
        lag, fetch_lag = await self.consumer_lag()
        sample = self.sampler.sample(event_loop_lag_ms=round(loop_lag, 3), consumer_lag=lag, fetch_lag=fetch_lag,
                                     app_id=self.app_id, partitions=sorted(self.assigned), **self.stats.as_dict())
        producer = self.app.producer
        await producer.send(self.topics["metrics"], self.worker_id.encode(), orjson.dumps(sample), None, None, None)
        for alert in self.utilization.update(sample):
            await producer.send(self.topics["alerts"], b"*", encode_alert(alert), None, None, None)
            self._observe_alert(alert)
            log.warning("%s %s: %s", alert["status"], alert["severity"], alert["message"])
        self.metrics.sample_process()
        self.metrics.observe_open_alerts(self.open_alerts())
        self.status.health = {key: sample[key] for key in ("cpu_percent", "memory_percent", "event_loop_lag_ms",
                                                           "consumer_lag", "records") if sample.get(key) is not None}

    async def check_aliases(self) -> None:
        """Timer: a models:/NAME@ALIAS reference moved -> swap it into every partition's engine."""
        if self.watcher is None or not self.watcher.due():
            return
        changes = await asyncio.get_running_loop().run_in_executor(None, self.watcher.check)
        if not changes:
            return
        async with self.lock:
            for change in changes:
                self.references = {**(self.references or {}), change.model: change.reference}
            for runner in self.runners.values():
                for event in self.watcher.apply(runner.engine, changes):
                    # Every partition's engine has a monitor per model; only one has seen its events.
                    if event.get("previous_version") is not None or event.get("closed_alerts"):
                        await self.app.producer.send(self.topics["alerts"], event["model"].encode(),
                                                     encode_alert(event), None, None, None)
                        self._observe_alert(event)

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None
        log.info("worker %s stopping: %s", self.worker_id, self.stats.as_dict())
