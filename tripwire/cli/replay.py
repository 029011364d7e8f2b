"""``tripwire replay``: a backtest on recorded events, from a JSONL file or from a Kafka topic range.

``replay EVENTS --out FILE`` reads a file (``--report``, ``--sinks`` and a progress bar go with it);
``replay --topic NAME`` reads topics between ``--from`` and ``--to`` into ``--out`` and / or
``--alerts-topic``. Both resolve the references (files, ``runs:/``, ``models:/``) before any work.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tripwire.cli.common import (
    BROKER_HELP,
    EXIT_ALL_REJECTED,
    EXIT_STOPPED,
    EXIT_USAGE,
    kafka_command,
    kafka_error,
    kafka_settings,
    window_log,
    write_report,
)
from tripwire.config import MonitorConfig, load_config

if TYPE_CHECKING:
    from tripwire.engine import Engine

SINK_CLOSE_SECONDS = 120.0  # how long `replay --sinks` waits for its deliveries before it gives up


def add_parser(commands: Any) -> None:
    replay = commands.add_parser("replay", help="replay recorded events (a JSONL file, or a Kafka topic range)")
    replay.add_argument("events", nargs="?", type=Path, help="JSONL or JSONL.gz file of events in event-time order")
    replay.add_argument("--config", type=Path, required=True, help="monitor configuration (TOML)")
    replay.add_argument("--out", type=Path, help="alerts JSONL to write (dead letters go beside it)")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    replay.add_argument("--report", type=Path,
                        help="also write a self-contained HTML backtest report (timelines, histograms, alerts) here")
    replay.add_argument("--sinks", action="store_true",
                        help="also route the alerts to the config's [sinks] and run its [retrain] trigger (file replay)")
    replay.add_argument("--partitions", type=int, metavar="N",
                        help="simulate an input topic of N partitions (needed when a model is sharded): records "
                             "go where Kafka's default partitioner puts their key, one engine per partition")
    replay.add_argument("--topic", action="append", help="replay this Kafka topic (repeat to merge several topics)")
    replay.add_argument("--from", dest="start", metavar="TS|OFFSET", help="start of the range (inclusive)")
    replay.add_argument("--to", dest="end", metavar="TS|OFFSET", help="end of the range (exclusive; default: "
                                                                      "the end of the topic when the replay starts)")
    replay.add_argument("--alerts-topic", help="also publish the alerts to this topic (never the live alerts topic)")
    replay.add_argument("--broker", help=BROKER_HELP)
    replay.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.topic:
        if args.sinks:
            print("tripwire replay: --sinks works with a file replay (a worker routes what it reads from topics)",
                  file=sys.stderr)
            return EXIT_USAGE
        return replay_topic(args)
    if args.out is None:
        print("tripwire replay: --out is required for a file replay", file=sys.stderr)
        return EXIT_USAGE
    if args.events is None:
        print("tripwire replay: give an EVENTS file (topic replay needs --topic)", file=sys.stderr)
        return EXIT_USAGE
    return replay_file(args)


def _engine(config: MonitorConfig, on_window: Any = None) -> Engine:
    """The engine of ``config`` with its references resolved first (files, ``runs:/``, ``models:/``)."""
    from tripwire.engine import Engine
    from tripwire.tracking import resolve_config

    resolved = resolve_config(config)  # MLflow URIs via [mlflow] tracking_uri; the engine never reaches MLflow
    return Engine(config, references={name: r.reference for name, r in resolved.items()}, on_window=on_window)


def replay_file(args: argparse.Namespace) -> int:
    import orjson

    from tripwire.replay import check_paths, config_inputs, deadletter_path
    from tripwire.replay import replay_file as replay_events
    from tripwire.sinks import fan_out
    from tripwire.tracking import MlflowReporter

    config = load_config(args.config)
    check_paths(args.events, args.out, config_inputs(args.config, config), args.report)  # before any work
    sharded = [m.name for m in config.models if m.sharded]
    if args.partitions is not None or sharded:
        return _replay_partitioned(args, config, sharded)
    reporter = MlflowReporter.from_config(config)  # None unless [mlflow] report = true
    log = window_log(args, config)
    sinks, trigger = _actions(args, config)
    engine = _engine(config, fan_out(reporter.on_window if reporter else None, log,
                                     trigger.on_window if trigger else None))
    engine.on_alert = fan_out(sinks.submit if sinks else None, trigger.on_alert if trigger else None)
    delivered = True
    try:
        summary = replay_events(engine, args.events, args.out, progress=False if args.no_progress else None)
    finally:
        for closing in (sinks, trigger):  # a backtest waits for its deliveries: nothing is lost unseen
            if closing is not None:
                delivered = closing.close(timeout=SINK_CLOSE_SECONDS) and delivered
    if sinks:
        print(f"sinks: {sinks.summary()}")
    if trigger:
        print(f"retrain: {len(trigger.requests)} request(s) to {trigger.topic}")
    print(summary.render())
    print(f"alerts: {args.out}   dead letters: {deadletter_path(args.out)} ({summary.rejected})")
    if summary.stopped:
        print(f"tripwire replay: {summary.stopped}", file=sys.stderr)
        return EXIT_STOPPED
    if log is not None:
        alerts = [orjson.loads(line) for line in args.out.read_bytes().splitlines() if line]
        if not write_report(args.report, engine, log, alerts, "tripwire backtest report",
                            [("events", args.events.name), ("config", args.config.name),
                             ("records", summary.records), ("rejected", summary.rejected)]):
            return EXIT_STOPPED
    if reporter:
        for line in args.out.read_bytes().splitlines():
            reporter.on_alert(orjson.loads(line))
        reporter.close()
        print(reporter.summary())
    if not delivered:
        print(f"tripwire replay: the sinks or the retrain trigger did not deliver everything within "
              f"{SINK_CLOSE_SECONDS:.0f} s (see their summary above)", file=sys.stderr)
        return 1
    if summary.all_rejected:
        print(f"tripwire replay: every record of {args.events} was rejected: is it tripwire's event contract?",
              file=sys.stderr)
        return EXIT_ALL_REJECTED
    return 0


def _replay_partitioned(args: argparse.Namespace, config: MonitorConfig, sharded: list[str]) -> int:
    """A file replay over simulated partitions (see :mod:`tripwire.shard.replay`)."""
    from tripwire.replay import deadletter_path
    from tripwire.shard.replay import PartitionedReplay, replay_partitioned
    from tripwire.tracking import resolve_config

    if args.partitions is None:
        print(f"tripwire replay: model(s) {', '.join(sharded)} are sharded (sharded = true): give --partitions N, "
              f"the input topic's partition count, so the backtest folds and merges windows as the live run",
              file=sys.stderr)
        return EXIT_USAGE
    if args.partitions < 1:
        print(f"tripwire replay: --partitions must be at least 1, got {args.partitions}", file=sys.stderr)
        return EXIT_USAGE
    if args.report or args.sinks:
        print("tripwire replay: --report and --sinks do not work with --partitions yet", file=sys.stderr)
        return EXIT_USAGE
    references = {name: r.reference for name, r in resolve_config(config).items()}
    replay = PartitionedReplay(config, args.partitions, references)
    summary = replay_partitioned(replay, args.events, args.out)
    print(summary.render())
    print(replay.describe())
    print(f"alerts: {args.out}   dead letters: {deadletter_path(args.out)} ({summary.rejected})")
    if summary.stopped:
        print(f"tripwire replay: {summary.stopped}", file=sys.stderr)
        return EXIT_STOPPED
    if summary.all_rejected:
        print(f"tripwire replay: every record of {args.events} was rejected: is it tripwire's event contract?",
              file=sys.stderr)
        return EXIT_ALL_REJECTED
    return 0


def _actions(args: argparse.Namespace, config: MonitorConfig) -> tuple[Any, Any]:
    """With ``--sinks``: the config's alert sinks and retrain trigger (either may be None)."""
    if not args.sinks:
        return None, None
    from tripwire.sinks import start_sinks
    from tripwire.sinks.actions import RetrainTrigger
    from tripwire.streams.topics import kafka_settings as settings_of

    return start_sinks(config.sinks), RetrainTrigger.from_config(config, settings_of(config))


@kafka_command
def replay_topic(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from tripwire.alerts import encode_alert
    from tripwire.replay import check_outputs, config_inputs, deadletter_line, deadletter_path
    from tripwire.streams.topic_replay import describe_position, parse_position, replay_topics

    if args.out is None and args.alerts_topic is None:
        print("tripwire replay: give --out FILE and/or --alerts-topic NAME", file=sys.stderr)
        return EXIT_USAGE
    config = load_config(args.config)
    if args.out:
        check_outputs(args.out, config_inputs(args.config, config))  # before any work
    settings = kafka_settings(args, config)
    if args.alerts_topic and args.alerts_topic == settings.topics["alerts"]:
        print(f"tripwire replay: {args.alerts_topic} is the live alerts topic; a backtest writes elsewhere",
              file=sys.stderr)
        return EXIT_USAGE
    start, end = parse_position(args.start), parse_position(args.end)
    engine = _engine(config)
    alerts: list[bytes] = []
    dead: list[bytes] = []

    def on_alert(alert: dict[str, Any], _origin: dict[str, Any]) -> None:
        alerts.append(encode_alert(alert))

    def on_reject(rejection: Any, record: bytes, origin: dict[str, Any]) -> None:
        dead.append(deadletter_line(rejection, record, origin))

    async def replay_and_publish() -> Any:
        summary = await replay_topics(settings, args.topic, lambda _p: engine, start=start, end=end,
                                      on_alert=on_alert, on_reject=on_reject)
        if args.alerts_topic:
            await _produce(settings, args.alerts_topic, alerts)
        return summary

    try:
        summary = asyncio.run(replay_and_publish())
    except KafkaError as error:
        return kafka_error(error, settings)
    print(f"replayed {', '.join(args.topic)} from {describe_position(start)} to {describe_position(end)}")
    print(summary.render())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(b"".join(a + b"\n" for a in alerts))
        deadletter_path(args.out).write_bytes(b"".join(d + b"\n" for d in dead))
        print(f"alerts: {args.out}   dead letters: {deadletter_path(args.out)} ({len(dead)})")
    if args.alerts_topic:
        print(f"alerts: topic {args.alerts_topic} ({len(alerts)})")
    return 0


async def _produce(settings: Any, topic: str, alerts: list[bytes]) -> None:
    import orjson
    from aiokafka import AIOKafkaProducer

    from tripwire.streams.topics import ensure_topics, running

    await ensure_topics(settings, [topic])
    async with running(AIOKafkaProducer(**settings.client_kwargs(), acks="all", linger_ms=20)) as producer:
        for alert in alerts:
            await producer.send(topic, alert, key=orjson.loads(alert)["model"].encode())
        await producer.flush()
