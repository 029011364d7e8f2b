"""The Faust app of ``tripwire worker``: one agent over the input topics, three timers, a probe.

Thin on purpose: the agent takes batches and hands them to :class:`~.worker.MonitorWorker`, which
decodes, merges, runs the engine, publishes alerts and dead letters, and checkpoints.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable

from tripwire.config import MonitorConfig
from tripwire.streams import web
from tripwire.streams.topics import (CHECKPOINT_MAX_BYTES, KafkaSettings, copartitioned, ensure_topics,
                                     worker_settings)
from tripwire.streams.worker import MonitorWorker

log = logging.getLogger("tripwire.worker")


# The checkpoint reader re-assigns a partition per restore; aiokafka logs each at INFO.
logging.getLogger("aiokafka.consumer.subscription_state").setLevel(logging.WARNING)


def create_app(config: MonitorConfig, kafka: KafkaSettings, references: dict[str, dict[str, Any]] | None = None,
               on_window: Callable[[dict[str, Any]], None] | None = None) -> tuple[Any, MonitorWorker]:
    import faust

    settings = config.worker
    datadir = Path(tempfile.gettempdir()) / "tripwire-faust" / settings["app_id"]
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    app = faust.App(
        settings["app_id"],
        broker=kafka.faust_broker(),
        broker_credentials=kafka.faust_credentials(),
        broker_client_id=kafka.client_id,
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        topic_disable_leader=True,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset=settings["auto_offset_reset"],
        producer_max_request_size=CHECKPOINT_MAX_BYTES + (1 << 20),
        stream_wait_empty=False,  # events wait for a checkpoint before they are acked
        broker_session_timeout=settings["session_timeout_seconds"],
        broker_heartbeat_interval=min(3.0, settings["session_timeout_seconds"] / 4),
        datadir=str(datadir),
        store="memory://",
        **web.app_options(settings),  # 127.0.0.1 unless web_bind says otherwise; TLS and basic auth
    )
    worker = MonitorWorker(app, config, kafka, references, on_window)
    inputs = app.topic(*kafka.inputs, key_serializer="raw", value_serializer="raw")

    @app.agent(inputs, name="tripwire.monitor")
    async def monitor(stream: Any) -> None:
        async for events in stream.noack_take(settings["batch_size"], within=settings["batch_seconds"]):
            await worker.on_batch(stream, events)

    @app.task
    async def merge_and_checkpoint() -> None:  # a loop, not a timer: a long release is not "overlapping"
        interval = max(0.05, min(0.25, settings["merge_idle_ms"] / 4000))
        while not app.should_stop:
            await asyncio.sleep(interval)
            await worker.tick()

    @app.timer(settings["utilization_seconds"])
    async def utilization() -> None:
        await worker.sample_utilization()

    @app.timer(5.0)
    async def aliases() -> None:
        await worker.check_aliases()

    @app.task
    async def loop_lag() -> None:
        await worker.measure_loop_lag()

    web.install_pages(app, worker, settings)

    async def revoked(_app: Any, revoked: set[Any], **_kwargs: Any) -> None:
        await worker.on_partitions_revoked(revoked)

    async def assigned(_app: Any, assigned: set[Any], **_kwargs: Any) -> None:
        await worker.on_partitions_assigned(assigned)

    app.on_partitions_revoked.connect(revoked, weak=False)
    app.on_partitions_assigned.connect(assigned, weak=False)

    @app.on_before_shutdown.connect(weak=False)
    def before_shutdown(_app: Any, **_kwargs: Any) -> None:
        asyncio.ensure_future(worker.close())

    return app, worker


def run_worker(config: MonitorConfig, kafka: KafkaSettings, *, loglevel: str = "info") -> int:
    """Create the topics, resolve the references, run the Faust worker until it is stopped."""
    import faust

    from tripwire.tracking import AliasWatcher, MlflowReporter, resolve_config

    roles = ("predictions", "features", "labels", "alerts", "deadletter", "metrics")
    created = asyncio.run(ensure_topics(kafka, [kafka.topics[r] for r in roles] + [kafka.topics["checkpoints"]],
                                        compacted=[kafka.topics["checkpoints"]]))
    if created:
        log.warning("created topics %s (%d partitions)", ", ".join(created), kafka.partitions)
    kafka.partitions = asyncio.run(copartitioned(kafka, kafka.inputs))  # Faust's topic_partitions must match
    asyncio.set_event_loop(asyncio.new_event_loop())
    config.worker = worker_settings(config)  # TRIPWIRE_WORKER_<KEY> wins over the file
    resolved = resolve_config(config)
    reporter = MlflowReporter.from_config(config)
    app, worker = create_app(config, kafka, {name: r.reference for name, r in resolved.items()},
                             reporter.on_window if reporter else None)
    worker.watcher = AliasWatcher.for_config(config, resolved)
    if reporter is not None:
        worker.on_alert = reporter.on_alert
    print(f"tripwire worker {worker.worker_id}: app {worker.app_id} on {kafka.bootstrap_servers}, "
          f"inputs {', '.join(kafka.inputs)} -> alerts {kafka.topics['alerts']}", flush=True)
    try:
        faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    except SystemExit as stop:
        return int(stop.code or 0)
    finally:
        if reporter is not None:
            reporter.close()
    return 0
