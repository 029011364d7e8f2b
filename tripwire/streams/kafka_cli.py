"""The Kafka side of the command line: ``worker``, ``tail``, ``replay --topic``, ``demo --broker``.

:mod:`tripwire.streams.cli` owns the parser; :func:`add_arguments` adds these commands and
options to it, and :func:`dispatch` runs them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from tripwire.config import ConfigError, MonitorConfig, load_config

DEMO_CONFIG = """\
# Written by `tripwire demo --write-config`: the demo's three models, for `tripwire worker`.
[defaults]
performance_window = 1000

[[models]]
name = "fuel-efficiency"
reference = "fuel-efficiency.json"

[[models]]
name = "credit"
reference = "credit.json"

[[models]]
name = "triage"
reference = "triage.json"

[kafka]
bootstrap_servers = "127.0.0.1:9092"   # or TRIPWIRE_KAFKA_BOOTSTRAP

[worker]
app_id = "tripwire-demo"
"""


def add_arguments(commands: Any, parsers: dict[str, argparse.ArgumentParser]) -> None:
    demo, replay = parsers["demo"], parsers["replay"]
    demo.add_argument("--broker", help="publish the demo stream to the input topics of this broker (host:port) "
                                       "instead of running the monitor in-process")
    demo.add_argument("--config", type=Path, help="with --broker: topic names and security from this config")
    demo.add_argument("--topic", help="with --broker: publish every record to this one topic")
    demo.add_argument("--rate", type=float, default=0.0, help="with --broker: records per second (default: flat out)")
    demo.add_argument("--write-config", type=Path, metavar="DIR",
                      help="write the demo's references and a monitor.toml for `tripwire worker` into DIR")

    replay.add_argument("--topic", action="append", help="replay this Kafka topic (repeat to merge several topics)")
    replay.add_argument("--from", dest="start", metavar="TS|OFFSET", help="start of the range (inclusive)")
    replay.add_argument("--to", dest="end", metavar="TS|OFFSET", help="end of the range (exclusive; default: "
                                                                      "the end of the topic when the replay starts)")
    replay.add_argument("--alerts-topic", help="also publish the alerts to this topic (never the live alerts topic)")
    replay.add_argument("--broker", help="host:port[,host:port] (default: [kafka] of the config, or the environment)")

    worker = commands.add_parser("worker", help="run the Faust worker: monitor the input topics, publish alerts")
    worker.add_argument("--config", type=Path, required=True, help="monitor configuration (TOML)")
    worker.add_argument("--broker", help="host:port[,host:port] (default: [kafka] of the config, or the environment)")
    worker.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))

    tail = commands.add_parser("tail", help="print the alerts topic, one line per alert")
    tail.add_argument("--broker", help="host:port[,host:port] (default: [kafka] of the config, or the environment)")
    tail.add_argument("--config", type=Path, help="take the broker, security and topic names from this config")
    tail.add_argument("--topic", help="topic to print (default: the alerts topic)")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest alert, not the newest")
    tail.add_argument("--idle-exit", type=float, metavar="SECONDS", help="stop after this long without an alert")


def handles(args: argparse.Namespace) -> bool:
    if args.command in ("worker", "tail"):
        return True
    if args.command == "demo":
        return bool(args.broker or args.write_config)
    if args.command == "replay":
        return bool(args.topic) or args.out is None
    return False


def dispatch(args: argparse.Namespace) -> int:
    try:
        if args.command == "worker":
            return cmd_worker(args)
        if args.command == "tail":
            return cmd_tail(args)
        if args.command == "demo":
            return cmd_demo_kafka(args)
        if args.command == "replay":
            return cmd_replay_topic(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tripwire tail | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except (OSError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        print(f"tripwire: {error}", file=sys.stderr)
        return 2
    return 2


def _settings(args: argparse.Namespace, config: MonitorConfig | None) -> Any:
    from tripwire.logs import add_secrets
    from tripwire.streams.topics import kafka_settings

    settings = kafka_settings(config, broker=getattr(args, "broker", None))
    add_secrets(settings.sasl_password, settings.ssl_password)  # also when they came from the config file
    return settings


def _kafka_error(error: Exception, settings: Any) -> int:
    if settings.security_protocol == "PLAINTEXT":
        hint = "start one with `scripts/kafka.sh start`, or set --broker / TRIPWIRE_KAFKA_BOOTSTRAP"
    else:  # the broker's reason (certificate, authentication) is in aiokafka's log line above
        keys = (["kafka.ssl_cafile"] if settings.uses_ssl else []) + (
            ["kafka.sasl_username", "kafka.sasl_password"] if settings.uses_sasl else [])
        hint = (f"kafka.security_protocol = {settings.security_protocol}: the reason is in the line above; "
                f"check {', '.join(keys)}")
    print(f"tripwire: cannot reach Kafka at {settings.bootstrap_servers}: {type(error).__name__}: {error} ({hint})",
          file=sys.stderr)
    return 3


def cmd_worker(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from tripwire.streams.app import run_worker

    config = load_config(args.config)
    settings = _settings(args, config)
    try:
        return run_worker(config, settings, loglevel=args.loglevel)
    except KafkaError as error:
        return _kafka_error(error, settings)


def cmd_tail(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from tripwire.streams.tail import tail

    config = load_config(args.config) if args.config else None
    settings = _settings(args, config)
    topic = args.topic or settings.topics["alerts"]
    try:
        asyncio.run(tail(settings, topic, from_beginning=args.from_beginning, idle_exit=args.idle_exit,
                         out=lambda line: print(line, flush=True)))
    except KafkaError as error:
        return _kafka_error(error, settings)
    return 0


def write_demo_config(directory: Path, seed: int = 7, broker: str | None = None) -> Path:
    from tripwire.reference import save_reference
    from tripwire.streams import demo

    directory.mkdir(parents=True, exist_ok=True)
    for name, reference in demo.training_references(seed).items():
        save_reference(reference, directory / f"{name}.json")
    path = directory / "monitor.toml"
    text = DEMO_CONFIG if not broker else DEMO_CONFIG.replace('"127.0.0.1:9092"', f'"{broker}"')
    path.write_text(text, encoding="utf-8")
    return path


def cmd_demo_kafka(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from tripwire.streams import demo
    from tripwire.streams.publish import publish
    from tripwire.streams.topics import ensure_topics

    if args.write_config:
        path = write_demo_config(args.write_config, args.seed, args.broker)
        print(f"wrote {path} and the references of {', '.join(m['name'] for m in demo.demo_config()['models'])}; "
              f"run: tripwire worker --config {path}")
        if not args.broker:
            return 0
    config = load_config(args.config) if args.config else None
    settings = _settings(args, config)
    records, _first = demo.generate(args.seed)
    names = [args.topic] if args.topic else [settings.events]

    async def run() -> dict[str, int]:
        created = await ensure_topics(settings, names)
        if created:
            print(f"created {', '.join(created)} ({settings.partitions} partitions)")
        return await publish(settings, records, topic=args.topic, rate=args.rate)

    pace = f" at {args.rate:,.0f} records/s" if args.rate else ""
    print(f"tripwire demo: publishing {len(records):,} records (seed {args.seed}) to {settings.bootstrap_servers}"
          f"{pace}, keyed by model ...", flush=True)
    try:
        counts = asyncio.run(run())
    except KafkaError as error:
        return _kafka_error(error, settings)
    for name, count in counts.items():
        print(f"  {name:<32} {count:>7,}")
    return 0


def cmd_replay_topic(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from tripwire.alerts import encode_alert
    from tripwire.engine import Engine
    from tripwire.streams.replay import check_outputs, config_inputs, deadletter_line, deadletter_path
    from tripwire.streams.topic_replay import describe_position, parse_position, replay_topics
    from tripwire.tracking import resolve_config

    if not args.topic:
        print("tripwire replay: --out is required for a file replay", file=sys.stderr)
        return 2
    if args.out is None and args.alerts_topic is None:
        print("tripwire replay: give --out FILE and/or --alerts-topic NAME", file=sys.stderr)
        return 2
    config = load_config(args.config)
    if args.out:
        check_outputs(args.out, config_inputs(args.config, config))  # before any work
    settings = _settings(args, config)
    if args.alerts_topic and args.alerts_topic == settings.topics["alerts"]:
        print(f"tripwire replay: {args.alerts_topic} is the live alerts topic; a backtest writes elsewhere",
              file=sys.stderr)
        return 2
    start, end = parse_position(args.start), parse_position(args.end)
    resolved = resolve_config(config)
    engine = Engine(config, references={name: r.reference for name, r in resolved.items()})
    alerts: list[bytes] = []
    dead: list[bytes] = []

    def on_alert(alert: dict[str, Any], _origin: dict[str, Any]) -> None:
        alerts.append(encode_alert(alert))

    def on_reject(rejection: Any, record: bytes, origin: dict[str, Any]) -> None:
        dead.append(deadletter_line(rejection, record, origin))

    async def run() -> Any:
        summary = await replay_topics(settings, args.topic, lambda _p: engine, start=start, end=end,
                                      on_alert=on_alert, on_reject=on_reject)
        if args.alerts_topic:
            await _produce(settings, args.alerts_topic, alerts)
        return summary

    try:
        summary = asyncio.run(run())
    except KafkaError as error:
        return _kafka_error(error, settings)
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
