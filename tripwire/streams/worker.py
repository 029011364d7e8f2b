"""The worker's logic: fetched batches in, alerts and dead letters out, checkpoints, utilization.

:mod:`tripwire.streams.app` keeps the Faust app (its timers and web server) a few lines long and
runs :meth:`MonitorWorker.run` as a task. How the worker reads, and why the alerts it publishes are
a function of the input topic's contents alone:

* the input topic is consumed with aiokafka's group consumer in batches (``getmany``): one
  consumer group (the app id), partitions spread over the workers, moved on rebalances. Faust's
  per-message stream dispatch cost more than the whole engine (see the README's figures);
* every owned partition has a :class:`~.partition.PartitionRunner` that feeds the batch to its
  engine in offset order. No merge, no idle timeout, no wall clock decides what the engine sees;
* every output is sent and its delivery awaited before a checkpoint may cover it; a failed send is
  kept and retried, never dropped (:mod:`.outbox`);
* a checkpoint is the engine state and the input offset it covers; the new owner of a partition
  restores it and seeks past its offset, so the state continues exactly (:mod:`.checkpoints`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import orjson

from tripwire.alerts import AlertPolicy, Finding, encode_alert
from tripwire.collector import streaming_collector
from tripwire.config import MonitorConfig, Threshold
from tripwire.detectors.river_state import river_drift
from tripwire.engine import Engine
from tripwire.streams.checkpoints import Checkpoints
from tripwire.streams.metrics import WorkerMetrics
from tripwire.streams.outbox import Outbox, Outgoing
from tripwire.streams.partition import PartitionRunner
from tripwire.streams.publish import route
from tripwire.streams.sightings import Sighting, SplitModelDetector, sight
from tripwire.streams.status import StatusBoard
from tripwire.streams.topics import MAX_REQUEST_BYTES, KafkaSettings
from tripwire.streams.utilization import Sampler, UtilizationMonitor, default_worker_id

if TYPE_CHECKING:  # the tracking package imports MLflow: only a worker with a models:/ alias needs it
    from tripwire.tracking import AliasWatcher

log = logging.getLogger("tripwire.worker")



class Stats:
    def __init__(self) -> None:
        self.records = 0
        self.alerts = 0
        self.deadletters = 0
        self.duplicates = 0
        self.checkpoints = 0
        self.checkpoint_bytes = 0
        self.checkpoint_seconds = 0.0
        self.publish_failures = 0
        self.checkpoints_refused = 0
        self.misrouted = 0
        self.first_record: float | None = None  # wall clock of the first and the last processed record
        self.last_record: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "alerts": self.alerts, "deadletters": self.deadletters,
                "duplicates_skipped": self.duplicates, "checkpoints": self.checkpoints,
                "checkpoint_bytes": self.checkpoint_bytes,
                "checkpoint_ms_mean": 1000 * self.checkpoint_seconds / self.checkpoints if self.checkpoints else None,
                "publish_failures": self.publish_failures, "checkpoints_refused": self.checkpoints_refused,
                "misrouted": self.misrouted,
                "first_record": self.first_record, "last_record": self.last_record}


class MonitorWorker:
    """Everything the consuming task, the timers and the rebalance listener of one worker do."""

    def __init__(self, config: MonitorConfig, kafka: KafkaSettings,
                 references: dict[str, dict[str, Any]] | None = None,
                 on_window: Callable[[dict[str, Any]], None] | None = None,
                 on_alert: Callable[[dict[str, Any]], None] | None = None,
                 watcher: AliasWatcher | None = None) -> None:
        self.config = config
        self.kafka = kafka
        self.settings = config.worker
        self.topics = kafka.topics
        self.references = references
        self.on_alert: list[Callable[[dict[str, Any]], None]] = [] if on_alert is None else [on_alert]
        self.worker_id = self.settings.worker_id or default_worker_id()  # default: host-pid
        # What the web port serves: Prometheus metrics at /metrics, the status board at /status.
        self.metrics = WorkerMetrics()
        self.status = StatusBoard(self.worker_id)
        self._window_sinks: list[Callable[[dict[str, Any]], None]] = [self.metrics.observe_window,
                                                                      self.status.observe_window]
        if on_window is not None:
            self._window_sinks.append(on_window)
        self.app_id = self.settings.app_id
        self.runners: dict[int, PartitionRunner] = {}
        self.assigned: set[int] = set()
        self.outbox = Outbox(self)
        self.checkpoints = Checkpoints(self)
        self.lock = asyncio.Lock()
        self.stats = Stats()
        self.utilization = UtilizationMonitor(self.worker_id,
                                              window_seconds=self.settings.utilization_window_seconds,
                                              thresholds=self.settings.thresholds)
        self.refusals = AlertPolicy(min_samples=1)  # one-off alerts of this worker: refused checkpoints, routing
        # A sharded model is keyed by request_id and sits on every partition (see tripwire.shard): its records
        # are not misrouted, and it is not "split"; a merge stage (in the workers whose [worker] stages
        # include "merge") judges its windows.
        self.sharded = {model.name.encode() for model in config.models if model.sharded}
        self.models = {model.name.encode() for model in config.models} - self.sharded
        # Keys a record may carry: its model's name, or "*" for a record that names none (it is rejected).
        self.keys = self.models | {b"*"}
        self.merge_stage: Any = None
        self._merging: asyncio.Task[None] | None = None
        # [worker] stages: "input" (the input consumer and its partition runners), "merge" (the merge stage).
        self.stages = self.settings.stages
        if self.sharded and "merge" in self.stages:
            from tripwire.shard.stage import MergeStage

            self.merge_stage = MergeStage(self)
        self.split_models = SplitModelDetector(kafka.events)
        self.sampler: Sampler | None = None
        self.loop_lag_ms = 0.0
        self.consumer: Any = None
        self.producer: Any = None
        self._checkpoint_partitions: int | None = None
        self.followed: dict[str, list[Callable[[bytes], Awaitable[None]]]] = defaultdict(list)
        self.watcher = watcher  # set when a reference is a models:/NAME@ALIAS
        # Every worker's samples, sightings included, are on one partition of the metrics topic.
        self.follow(self.topics["metrics"], self._on_metrics_record)

    # -- the consuming task ----------------------------------------------------------------------
    def follow(self, topic: str, handler: Callable[[bytes], Awaitable[None]]) -> None:
        """Also consume ``topic`` live (from its end when assigned): each record's value to ``handler``.

        For live views such as capacity advice; no checkpoint covers these records.
        """
        self.followed[topic].append(handler)

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        self.producer = AIOKafkaProducer(**self.kafka.client_kwargs(), acks="all", linger_ms=5,
                                         max_request_size=MAX_REQUEST_BYTES, max_batch_size=1 << 20)
        await self.producer.start()
        if "input" not in self.stages:
            return  # a merge-only worker: no input consumer, the events topic is another worker's
        session = self.settings.session_timeout_seconds
        self.consumer = AIOKafkaConsumer(
            **self.kafka.client_kwargs(), group_id=self.app_id, enable_auto_commit=False,
            auto_offset_reset=self.settings.auto_offset_reset, max_partition_fetch_bytes=4 << 20,
            fetch_max_bytes=64 << 20, session_timeout_ms=int(session * 1000),
            heartbeat_interval_ms=int(min(3.0, session / 4) * 1000),
            rebalance_timeout_ms=max(60_000, int(session * 2000)))
        from aiokafka import ConsumerRebalanceListener

        worker = self

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await worker.on_partitions_revoked(revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await worker.on_partitions_assigned(assigned)

        self.consumer.subscribe([self.kafka.events, *self.followed], listener=Listener())
        await self.consumer.start()

    async def run(self) -> None:
        """Fetch, process, publish, checkpoint, until cancelled (the app stops)."""
        if any(model.change_streams for model in self.config.models):
            # A change detector imports river.drift at its first value (a replay's start need not wait
            # for it); a worker would stall its stream for a second there, so it imports it now.
            river_drift()
        await self.start()
        if self.merge_stage is not None:
            self._merging = asyncio.create_task(self.merge_stage.run())
        # What exists once the worker runs (modules, references, clients) lives as long as it does.
        with streaming_collector():
            await self._consume()

    async def _consume(self) -> None:
        try:
            if self.consumer is None:  # merge only: the merge stage is the work; its error stops the worker
                assert self._merging is not None, "a merge-only worker needs a sharded model"
                await self._merging  # runs until cancelled
                return
            timeout_ms = int(self.settings.batch_seconds * 1000)
            while True:
                batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.settings.batch_size)
                if self._merging is not None and self._merging.done():
                    self._merging.result()  # the merge stage failed: stop with its error (a restart resumes)
                async with self.lock:
                    for tp in sorted(batches, key=lambda tp: (tp.topic, tp.partition)):
                        if tp.topic == self.kafka.events:
                            await self._process(tp.partition, batches[tp])
                        else:
                            for message in batches[tp]:
                                for handler in self.followed[tp.topic]:
                                    await handler(message.value or b"")
                    await self._maintain()
                await self.checkpoints.commit()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # cannot go on: stop, a restart resumes from the last checkpoint
            log.exception("worker %s cannot go on (%s); stopping so that a restart resumes from the last "
                          "checkpoint", self.worker_id, error)
            raise
        finally:
            await self.stop()

    async def _process(self, partition: int, messages: list[Any]) -> None:
        runner = self.runners.get(partition)
        if runner is None:
            return  # revoked while fetched; the new owner reads it from its checkpoint
        output = runner.process([m.offset for m in messages], [m.value for m in messages])
        self.stats.duplicates += output.duplicates
        await self.outbox.publish(partition, output)
        await self._check_keys(runner, messages[output.duplicates:])

    async def _check_keys(self, runner: PartitionRunner, messages: list[Any]) -> None:
        """The partitioning contract: a record is keyed by its model, so a model lives on one partition.

        A record keyed otherwise (by request id, or not at all) may sit on any partition: a
        data-quality alert with the evidence, and a metric. The first record of each model on the
        partition is a sighting (see :mod:`.sightings`): the worker that reads every worker's samples
        raises ``split_model`` when a model is on two partitions, on one worker or across several.
        """
        if not messages:
            return
        partition = runner.partition
        keys = {m.key for m in messages}
        if keys <= self.keys and all(k.decode() in runner.sightings for k in keys - {b"*"}):
            return
        misrouted = [m for m in messages if m.key not in self.keys
                     and not (self.sharded and route(m.value or b"")[0] in self.sharded)]
        if misrouted:
            self.stats.misrouted += len(misrouted)
            self.metrics.misrouted.inc(len(misrouted))
            examples = sorted({repr(m.key)[:60] for m in misrouted})[:5]
            await self._one_off(partition, "partitioning", "misrouted_records", float(len(misrouted)), {
                "partition": partition, "records": len(misrouted), "keys": examples,
                "first_offset": misrouted[0].offset},
                f"{len(misrouted)} records on partition {partition} of {self.kafka.events} are not keyed by a "
                f"monitored model (keys {', '.join(examples)}); key every record by its model, or a model's "
                "windows are split across partitions")
        sight(runner.sightings, runner.partition, self.models, messages)

    async def _on_metrics_record(self, value: bytes) -> None:
        """A record of the metrics topic: a worker's utilization sample lists its sightings."""
        try:
            sample = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if not isinstance(sample, dict) or sample.get("type") != "utilization" or sample.get("app_id") != self.app_id:
            return
        entries = sample.get("sightings")
        sightings = [s for s in map(Sighting.from_dict, entries if isinstance(entries, list) else []) if s]
        for finding in self.split_models.observe(sightings):
            # Window and ts from the sightings: whichever worker raises it, the same evidence gives the same id.
            alert = self.refusals.evaluate(finding, model_version=None, reference=None, ts=finding.window_end)
            if alert is not None:
                log.warning("split model: %s", finding.message)  # its own template: tripwire.logs collapses by template
                await self.send_now(self.topics["alerts"], b"*", encode_alert(alert))
                self._observe_alert(alert)

    async def _maintain(self) -> None:
        """After each fetch: retry failed sends, write due checkpoints, pause or resume on backpressure."""
        now = time.monotonic()
        for partition in sorted(self.runners):
            await self.outbox.retry(partition)
            runner = self.runners[partition]
            if self.checkpoints.due(partition, runner, now):
                await self.checkpoints.write(partition)
            self.outbox.backpressure(partition)
        self.metrics.unpublished.set(self.outbox.waiting())

    async def _one_off(self, partition: int, signal: str, detector: str, value: float, evidence: dict[str, Any],
                       message: str, kind: str = "data_quality") -> None:
        """A stream-wide alert of this worker that fires once (refused checkpoint, broken partitioning)."""
        now = time.time()
        finding = Finding(model="*", kind=kind, signal=signal, detector=detector, value=value,
                          threshold=Threshold(None, 1), window_start=now, window_end=now, n=1, evidence=evidence,
                          message=message)
        alert = self.refusals.evaluate(finding, model_version=None, reference=None, ts=now)
        if alert is not None:
            log.warning("%s", message)
            await self.outbox.send(partition, Outgoing(self.topics["alerts"], b"*", encode_alert(alert)))
            self._observe_alert(alert)

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
        if self.merge_stage is not None:
            found += self.merge_stage.open_alerts()
        return found + self.utilization.policy.open_alerts() + self.refusals.open_alerts()

    def _new_runner(self, partition: int) -> PartitionRunner:
        engine = Engine(self.config, references=self.references, on_window=self._on_window)
        return PartitionRunner(partition, self.kafka.events, engine)

    # -- rebalances --------------------------------------------------------------------------------
    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Write a last checkpoint of every revoked partition while this worker still owns it."""
        async with self.lock:
            for tp in sorted(revoked, key=lambda tp: tp.partition):
                partition = tp.partition
                runner = self.runners.get(partition)
                if runner is None:
                    continue
                try:
                    if runner.since_checkpoint:
                        await asyncio.wait_for(self.checkpoints.write(partition), timeout=10)
                except Exception as error:
                    log.warning("partition %d: no checkpoint at revocation (%s)", partition, error)
            self.assigned -= {tp.partition for tp in revoked}

    async def on_partitions_assigned(self, assigned: Any) -> None:
        """Continue every assigned partition from the newest of its runner and its checkpoint."""
        async with self.lock:
            owned = {tp.partition for tp in assigned if tp.topic == self.kafka.events}
            for partition in sorted(set(self.runners) - owned):
                self._forget(partition)
            for tp in sorted(assigned, key=lambda tp: (tp.topic, tp.partition)):
                if tp.topic != self.kafka.events:
                    await self.consumer.seek_to_end(tp)  # a followed topic is a live view
                    continue
                kept = self.runners.get(tp.partition)
                runner = await self.checkpoints.open(tp.partition)
                if kept is not None and kept.done >= runner.done:
                    runner = kept  # ours is as new as any checkpoint: same state, keep it
                self.runners[tp.partition] = runner
                self.checkpoints.last_checkpoint.setdefault(tp.partition, time.monotonic())
                if runner.done >= 0:
                    self.consumer.seek(tp, runner.done + 1)
                elif self.settings.auto_offset_reset == "earliest":
                    await self.consumer.seek_to_beginning(tp)
                else:
                    await self.consumer.seek_to_end(tp)
            self.assigned = owned
            self.outbox.paused &= owned
            log.info("worker %s owns partitions %s", self.worker_id, sorted(owned))

    def _forget(self, partition: int) -> None:
        self.runners.pop(partition, None)
        self.checkpoints.forget(partition)
        self.outbox.forget(partition)

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
        """Summed over the owned partitions: highwater minus the next offset the engine will process,
        and highwater minus the fetch position (records fetched but not processed yet count in the first).
        """
        from aiokafka import TopicPartition

        if self.consumer is None:
            return None, None
        lag = fetch_lag = 0
        known = False
        for partition in sorted(self.assigned):
            tp = TopicPartition(self.kafka.events, partition)
            try:
                highwater = self.consumer.highwater(tp)
                position = await self.consumer.position(tp)
            except Exception:  # not assigned any more, or no fetch yet
                continue
            if highwater is None:
                continue
            known = True
            runner = self.runners.get(partition)
            processed = runner.done + 1 if runner is not None and runner.done >= 0 else position
            lag += max(0, highwater - processed)
            fetch_lag += max(0, highwater - position)
        return (lag, fetch_lag) if known else (None, None)

    async def sample_utilization(self) -> None:
        """Timer: one utilization sample to the metrics topic; infrastructure alerts to the alerts topic."""
        if self.sampler is None:
            self.sampler = Sampler(self.worker_id)
            return  # the first CPU reading only starts the interval
        if self.producer is None:
            return
        loop_lag, self.loop_lag_ms = self.loop_lag_ms, 0.0
        lag, fetch_lag = await self.consumer_lag()
        unpublished = self.outbox.waiting()
        sightings = [s.as_dict() for p in sorted(self.runners) for s in self.runners[p].sightings.values()]
        sample = self.sampler.sample(event_loop_lag_ms=round(loop_lag, 3), consumer_lag=lag, fetch_lag=fetch_lag,
                                     app_id=self.app_id, partitions=sorted(self.assigned), unpublished=unpublished,
                                     sightings=sightings, **self.stats.as_dict(),
                                     **({"merge_windows_waiting": self.merge_stage.waiting()} if self.merge_stage else {}))
        # Keyed by the app: every worker's samples on one partition, so one capacity view sees them all.
        await self.send_now(self.topics["metrics"], self.app_id.encode(), orjson.dumps(sample))
        for alert in self.utilization.update(sample):
            await self.send_now(self.topics["alerts"], b"*", encode_alert(alert))
            self._observe_alert(alert)
            log.warning("%s %s: %s", alert["status"], alert["severity"], alert["message"])
        self.metrics.sample_process()
        self.metrics.observe_open_alerts(self.open_alerts())
        self.status.health = {key: sample[key] for key in ("cpu_percent", "memory_percent", "event_loop_lag_ms",
                                                           "consumer_lag", "records") if sample.get(key) is not None}

    async def send_now(self, topic: str, key: bytes, value: bytes) -> None:
        """Output no checkpoint covers (samples, worker alerts, live views): a failure is logged only."""
        try:
            await (await self.producer.send(topic, value, key=key))
        except Exception as error:
            self.metrics.publish_failures.labels(topic=topic).inc()
            log.warning("could not publish to %s (%s: %s)", topic, type(error).__name__, error)

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
                        await self.send_now(self.topics["alerts"], event["model"].encode(), encode_alert(event))
                        self._observe_alert(event)

    async def stop(self) -> None:
        """Checkpoint what was processed, leave the group, close the clients."""
        if self._merging is not None:  # the merge stage checkpoints and leaves its group first (it uses the producer)
            self._merging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._merging  # runs until cancelled
                return
            self._merging = None
        if self.consumer is not None:
            try:
                async with self.lock:
                    for partition in sorted(self.runners):
                        if self.runners[partition].since_checkpoint:
                            await asyncio.wait_for(self.checkpoints.write(partition), timeout=10)
            except Exception as error:
                log.warning("no final checkpoint (%s)", error)
            await self.consumer.stop()
            self.consumer = None
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
        await self.checkpoints.close()
        log.info("worker %s stopping: %s", self.worker_id, self.stats.as_dict())
