"""The Faust app of ``tripwire worker``: the consuming task, the timers, the web pages.

Thin on purpose: the task runs :meth:`~.worker.MonitorWorker.run`, which fetches batches of the
input topic, runs the engine, publishes alerts and dead letters, and checkpoints.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable

from tripwire.config import MonitorConfig
from tripwire.streams.topics import CHECKPOINT_MAX_BYTES, KafkaSettings, ensure_topics, worker_settings
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
        producer_max_request_size=CHECKPOINT_MAX_BYTES + (1 << 20),
        web_enabled=settings["web_port"] > 0,
        web_port=settings["web_port"] or 6066,
        datadir=str(datadir),
        store="memory://",
    )
    # Faust runs the app, its timers and its web server; the worker consumes the input topic itself,
    # so Faust's own consumer (and its per-message stream dispatch) is never started.
    app.producer_only = True
    worker = MonitorWorker(config, kafka, references, on_window)

    @app.task
    async def consume() -> None:
        try:
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # cannot go on: stop the worker, a restart resumes from the checkpoints
            await app.crash(error)

    @app.timer(settings["utilization_seconds"])
    async def utilization() -> None:
        await worker.sample_utilization()

    @app.timer(5.0)
    async def aliases() -> None:
        await worker.check_aliases()

    @app.task
    async def loop_lag() -> None:
        await worker.measure_loop_lag()

    if settings["web_port"]:
        from tripwire.streams.metrics import CONTENT_TYPE
        from tripwire.streams.status import PAGE

        @app.page("/metrics")
        async def metrics(view: Any, _request: Any) -> Any:
            # In the headers: aiohttp refuses a content_type argument with a charset.
            return view.bytes(worker.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

        @app.page("/status")
        async def status(view: Any, _request: Any) -> Any:
            return view.html(PAGE)

        @app.page("/status.json")
        async def status_json(view: Any, _request: Any) -> Any:
            return view.json(worker.status.snapshot(worker.open_alerts()))

    return app, worker


def run_worker(config: MonitorConfig, kafka: KafkaSettings, *, loglevel: str = "info") -> int:
    """Create the topics, resolve the references, run the Faust worker until it is stopped."""
    import faust

    from tripwire.tracking import AliasWatcher, MlflowReporter, resolve_config

    roles = ("events", "alerts", "deadletter", "metrics", "checkpoints")
    created = asyncio.run(ensure_topics(kafka, [kafka.topics[r] for r in roles], compacted=[kafka.topics["checkpoints"]]))
    if created:
        log.warning("created topics %s (%d partitions)", ", ".join(created), kafka.partitions)
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
          f"input {kafka.events} -> alerts {kafka.topics['alerts']}", flush=True)
    try:
        faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    except SystemExit as stop:
        return int(stop.code or 0)
    finally:
        if reporter is not None:
            reporter.close()
    return 0
