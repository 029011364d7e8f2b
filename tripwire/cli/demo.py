"""``tripwire demo``: the built-in stream with injected incidents, in-process (scored), or published to Kafka.

In-process (the default) the monitor runs on the stream and each incident is scored caught or
missed; ``--broker`` publishes the stream to the input topics instead; ``--write-config`` writes
the references and a ``monitor.toml`` for ``tripwire worker``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tripwire.cli.common import EXIT_STOPPED, kafka_command, kafka_error, kafka_settings, window_log, write_report
from tripwire.config import load_config, parse_config
from tripwire.paths import check_output

if TYPE_CHECKING:
    from tripwire.events import Rejection


def add_parser(commands: Any) -> None:
    demo = commands.add_parser("demo", help="run the monitor on a built-in stream with injected incidents (no broker)")
    demo.add_argument("--out", type=Path, help="also write the alerts as JSONL here")
    demo.add_argument("--seed", type=int, default=7, help="seed of the generated stream (default 7)")
    demo.add_argument("--quiet", action="store_true", help="print only the final table")
    demo.add_argument("--report", type=Path, help="also write the HTML report (timelines, histograms, alerts) here")
    demo.add_argument("--broker", help="publish the demo stream to the events topic of this broker (host:port) "
                                       "instead of running the monitor in-process")
    demo.add_argument("--config", type=Path, help="with --broker: topic names and security from this config")
    demo.add_argument("--topic", help="with --broker: publish every record to this one topic")
    demo.add_argument("--rate", type=float, default=0.0, help="with --broker: records per second (default: flat out)")
    demo.add_argument("--write-config", type=Path, metavar="DIR",
                      help="write the demo's references and a monitor.toml for `tripwire worker` into DIR")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.broker or args.write_config:
        return run_on_kafka(args)
    return run_in_process(args)


def run_in_process(args: argparse.Namespace) -> int:
    """Monitor the stream here and score every incident: exit 1 when one is missed or an alert comes early."""
    from tripwire import demo
    from tripwire.alerts import encode_alert
    from tripwire.engine import Engine
    from tripwire.sinks import fan_out

    for role, path in (("--out", args.out), ("--report", args.report)):
        if path is not None:  # before any work
            check_output(role, path, [("--out", args.out)] if role == "--report" and args.out else [])
    print(f"tripwire demo: generating {demo.DURATION_MINUTES} minutes of traffic for fuel-efficiency, credit and triage "
          f"(seed {args.seed}) ...", flush=True)
    stream, first_index = demo.generate(args.seed)
    config = parse_config(demo.demo_config(), where="demo")
    log = window_log(args, config)
    from tripwire.compute import demo as capacity_demo  # replica samples beside the stream, advised afterwards

    capacity = capacity_demo.CapacityDemo(args.seed)
    engine = Engine(config, references=demo.training_references(args.seed),
                    on_window=fan_out(log, capacity.observe_window))
    alerts: list[tuple[int, dict[str, Any]]] = []
    from tripwire.replay import LineFile, OutputError, run_records

    out = LineFile(args.out) if args.out else None

    def on_alert(alert: dict[str, Any], index: int) -> None:
        alerts.append((index, alert))
        if out:
            out.write(encode_alert(alert) + b"\n")
            out.flush()  # as raised: nothing is lost when the disk fills
        if not args.quiet:
            print(f"  #{index:<7} {alert['ts']}  {alert['status']:<8} {alert['severity']:<8} {alert['kind']:<21} "
                  f"{alert['model']:<15} {alert['message']}")

    def on_reject(_rejection: Rejection, _index: int, _record: bytes) -> None:
        pass  # counted by the engine; the demo's malformed burst is itself an incident

    try:
        summary = run_records(engine, stream, on_alert, on_reject)
    except OutputError as error:
        print(f"tripwire demo: {error}", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        if out:
            out.close()
    caught, early = demo.score_incidents(alerts, first_index)
    print()
    print(summary.render())
    print()
    print(f"{'incident':<66} {'at record':>9} {'caught':>6} {'records late':>12}  by")
    for row in caught:
        by = f"{row.alert['kind']} {row.alert['signal']} {row.alert['detector']}" if row.alert else "-"
        late = "-" if row.events_late is None else f"{row.events_late:,}"
        print(f"{row.incident.name:<66} {row.injected_index:>9,} {'yes' if row.alert else 'NO':>6} {late:>12}  {by}")
    advice = capacity.advise()
    if not args.quiet:
        print("\ncapacity advice (replica samples of fuel-efficiency, the HPA rule of [capacity]):")
        for event in advice:
            print(f"  {event['ts']}  {event['action']:<10} {event['message']}")
        print()
    scored = capacity_demo.score(advice, stream)
    for incident, injected, advised, index in scored:
        by = f"capacity {advised['action']} {advised['current_replicas']} -> {advised['desired_replicas']}" if advised else "-"
        late = "-" if index is None else f"{index - injected:,}"
        print(f"{incident.name:<66} {injected:>9,} {'yes' if advised else 'NO':>6} {late:>12}  {by}")
    print(f"alerts before the first incident: {early}")
    if log is not None and not write_report(
            args.report, engine, log, [alert for _index, alert in alerts], "tripwire demo report",
            [("stream", f"built-in demo, seed {args.seed}"), ("records", summary.records),
             ("rejected", summary.rejected)]):
        return EXIT_STOPPED
    missed = sum(1 for row in caught if row.alert is None) + sum(1 for row in scored if row[2] is None)
    return 1 if missed or early else 0


def _request_id_key(sharded: set[bytes]) -> Any:
    import orjson

    def key(record: bytes, model: bytes) -> bytes:
        if model in sharded:
            try:
                request_id = orjson.loads(record).get("request_id")
            except (orjson.JSONDecodeError, AttributeError):
                request_id = None
            if isinstance(request_id, str):
                return request_id.encode()
        return model
    return key


@kafka_command
def run_on_kafka(args: argparse.Namespace) -> int:
    """``--write-config`` and / or ``--broker``: set up a worker, publish the stream to its input topic."""
    from aiokafka.errors import KafkaError

    from tripwire import demo
    from tripwire.streams.publish import publish
    from tripwire.streams.topics import ensure_topics

    if args.write_config:
        path = demo.write_demo_config(args.write_config, args.seed, args.broker)
        print(f"wrote {path} and the references of {', '.join(m['name'] for m in demo.demo_config()['models'])}; "
              f"run: tripwire worker --config {path}")
        if not args.broker:
            return 0
    config = load_config(args.config) if args.config else None
    settings = kafka_settings(args, config)
    records, _first = demo.generate(args.seed)
    names = [args.topic] if args.topic else [settings.events]

    async def publish_all() -> dict[str, int]:
        created = await ensure_topics(settings, names)
        if created:
            print(f"created {', '.join(created)} ({settings.partitions} partitions)")
        return await publish(settings, records, topic=args.topic, rate=args.rate, key=key)

    # The config's sharded models are keyed by request_id (they spread over the partitions), the others by model.
    sharded = {m.name.encode() for m in config.models if m.sharded} if config else set()
    key = _request_id_key(sharded) if sharded else None
    pace = f" at {args.rate:,.0f} records/s" if args.rate else ""
    print(f"tripwire demo: publishing {len(records):,} records (seed {args.seed}) to {settings.bootstrap_servers}"
          f"{pace}, keyed by model{' (sharded models by request_id)' if sharded else ''} ...", flush=True)
    try:
        counts = asyncio.run(publish_all())
    except KafkaError as error:
        return kafka_error(error, settings)
    for name, count in counts.items():
        print(f"  {name:<32} {count:>7,}")
    return 0
