"""The Faust app of ``tripwire worker``: the consuming task, the timers, the web pages.

Thin on purpose: the task runs :meth:`~.worker.MonitorWorker.run`, which fetches batches of the
input topic, runs the engine, publishes alerts and dead letters, and checkpoints.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tripwire.config import ConfigError, MonitorConfig
from tripwire.streams import web
from tripwire.streams.topics import CHECKPOINT_MAX_BYTES, KafkaSettings, ensure_topics, worker_settings
from tripwire.streams.worker import MonitorWorker

if TYPE_CHECKING:
    from tripwire.tracking import AliasWatcher

log = logging.getLogger("tripwire.worker")


# The checkpoint reader re-assigns a partition per restore; aiokafka logs each at INFO.
logging.getLogger("aiokafka.consumer.subscription_state").setLevel(logging.WARNING)


def create_app(config: MonitorConfig, kafka: KafkaSettings, references: dict[str, dict[str, Any]] | None = None,
               on_window: Callable[[dict[str, Any]], None] | None = None,
               watcher: AliasWatcher | None = None) -> tuple[Any, MonitorWorker]:
    import faust

    settings = config.worker
    datadir = Path(tempfile.gettempdir()) / "tripwire-faust" / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    app = faust.App(
        settings.app_id,
        broker=kafka.faust_broker(),
        broker_credentials=kafka.faust_credentials(),
        broker_client_id=kafka.client_id,
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        topic_disable_leader=True,
        key_serializer="raw",
        value_serializer="raw",
        producer_max_request_size=CHECKPOINT_MAX_BYTES + (1 << 20),
        datadir=str(datadir),
        store="memory://",
        **web.app_options(settings),  # 127.0.0.1 unless web_bind says otherwise; TLS and basic auth
    )
    # Faust runs the app, its timers and its web server; the worker consumes the input topic itself,
    # so Faust's own consumer (and its per-message stream dispatch) is never started.
    app.producer_only = True
    from tripwire.compute.agent import CapacityAgent  # capacity view of services and workers (metrics topic)

    capacity = CapacityAgent(config, kafka)
    worker = MonitorWorker(config, kafka, references, capacity.window_sink(on_window), watcher=watcher)
    capacity.attach(worker)

    @app.task
    async def consume() -> None:
        try:
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # cannot go on: stop the worker, a restart resumes from the checkpoints
            await app.crash(error)

    @app.timer(settings.utilization_seconds)
    async def utilization() -> None:
        await worker.sample_utilization()

    @app.timer(5.0)
    async def aliases() -> None:
        await worker.check_aliases()

    @app.task
    async def loop_lag() -> None:
        await worker.measure_loop_lag()

    web.install_pages(app, worker, settings)

    return app, worker


def run_worker(config: MonitorConfig, kafka: KafkaSettings, *, loglevel: str = "info") -> int:
    """Create the topics, resolve the references, run the Faust worker until it is stopped."""
    import faust

    from tripwire.sinks import fan_out, start_sinks
    from tripwire.sinks.actions import RetrainTrigger
    from tripwire.tracking import AliasWatcher, MlflowReporter, resolve_config

    config.worker = worker_settings(config)  # TRIPWIRE_WORKER_<KEY> wins over the file
    if "input" not in config.worker.stages and not any(m.sharded for m in config.models):
        raise ConfigError("worker.stages = [\"merge\"] runs only the merge stage of sharded models, and no model "
                          "is sharded: nothing to run")
    roles = ("events", "alerts", "deadletter", "metrics", "checkpoints") + (
        ("summaries",) if any(m.sharded for m in config.models) else ())
    created = asyncio.run(ensure_topics(kafka, [kafka.topics[r] for r in roles], compacted=[kafka.topics["checkpoints"]]))
    if created:
        log.warning("created topics %s (%d partitions)", ", ".join(created), kafka.partitions)
    asyncio.set_event_loop(asyncio.new_event_loop())
    resolved = resolve_config(config)
    reporter = MlflowReporter.from_config(config)
    sinks = start_sinks(config.sinks)  # [sinks]: Alertmanager, webhooks
    trigger = RetrainTrigger.from_config(config, kafka, recover=True)  # [retrain]: requests to the actions topic
    app, worker = create_app(config, kafka, {name: r.reference for name, r in resolved.items()},
                             fan_out(reporter.on_window if reporter else None, trigger.on_window if trigger else None),
                             AliasWatcher.for_config(config, resolved))
    worker.on_alert += [sink for sink in (reporter and reporter.on_alert, sinks and sinks.submit,
                                          trigger and trigger.on_alert) if sink]
    print(f"tripwire worker {worker.worker_id}: app {worker.app_id} on {kafka.bootstrap_servers}, "
          f"input {kafka.events} -> alerts {kafka.topics['alerts']}", flush=True)
    try:
        faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    except SystemExit as stop:
        return int(stop.code or 0)
    finally:
        for closing in (reporter, sinks, trigger):
            if closing is not None:
                closing.close()
    return 0
