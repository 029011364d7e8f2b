"""``tripwire compute runs`` and ``tripwire compute sample``: compute of training runs and serving replicas."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tripwire.cli.common import BROKER_HELP, EXIT_USAGE, kafka_error

if TYPE_CHECKING:
    from tripwire.compute.settings import CapacitySettings


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {value}")
    return number


def add_parser(commands: Any) -> None:
    compute = commands.add_parser("compute", help="compute of training runs and serving replicas, with scale advice")
    sub = compute.add_subparsers(dest="compute_command", required=True)

    runs = sub.add_parser("runs", help="summarise the system metrics of an MLflow experiment's runs and advise")
    runs.add_argument("--experiment", required=True, help="MLflow experiment name")
    runs.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    runs.add_argument("--config", type=Path, help="take [capacity] (target, tolerance, marks) from this config")
    runs.add_argument("--cpus", type=_positive_int,
                      help="CPUs each run had (default: the run's tripwire.cpu_count tag or cpu_count param)")
    runs.add_argument("--tag", action="store_true", help="write the advice back to each run as tags")
    runs.add_argument("--alerts", type=Path, metavar="FILE", help="also write the advice as infrastructure alerts (JSONL)")
    runs.add_argument("--json", action="store_true", help="print one JSON document per run instead of the table")
    runs.set_defaults(run=run_runs)

    sample = sub.add_parser("sample", help="publish utilization samples of one serving replica to the metrics topic")
    sample.add_argument("--service", required=True, help="service name (the model name, to join its serving stats)")
    sample.add_argument("--replica", required=True, help="replica id (e.g. the pod name)")
    sample.add_argument("--broker", help=BROKER_HELP)
    sample.add_argument("--config", type=Path, help="take the broker, security and topic names from this config")
    sample.add_argument("--interval", type=_positive_float, default=5.0, help="seconds between samples (default 5)")
    sample.add_argument("--pid", type=_positive_int, help="sample this process and its children (default: the host)")
    sample.add_argument("--cpus", type=_positive_float, help="CPUs of the replica, e.g. its CPU request "
                                                            "(default: the CPUs it may run on)")
    sample.add_argument("--count", type=_positive_int, help="stop after this many samples (default: run until stopped)")
    sample.set_defaults(run=run_sample)


def _settings(args: argparse.Namespace) -> tuple[Any, CapacitySettings]:
    from tripwire.compute.settings import CapacitySettings, capacity_settings
    from tripwire.config import load_config

    if args.config is None:
        return None, CapacitySettings()
    config = load_config(args.config)
    return config, capacity_settings(config.capacity, str(args.config))


def run_runs(args: argparse.Namespace) -> int:
    import orjson
    from mlflow.exceptions import MlflowException

    from tripwire.alerts import encode_alert
    from tripwire.compute.runs import UnknownExperiment, render, run_alerts, tag_runs, training_runs

    _config, settings = _settings(args)
    try:
        reports = training_runs(args.experiment, tracking_uri=args.tracking_uri, settings=settings, cpus=args.cpus)
    except UnknownExperiment as error:
        print(f"tripwire compute runs: {error}", file=sys.stderr)
        return EXIT_USAGE
    except MlflowException as error:
        print(f"tripwire compute runs: MLflow refused: {error.message}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        for report in reports:
            print(orjson.dumps(report.as_dict()).decode())
    elif not reports:
        print(f"no run of {args.experiment} logged system metrics (start runs with "
              "mlflow.start_run(log_system_metrics=True))")
    else:
        print(render(reports, settings))
    if args.tag:
        tag_runs(reports, tracking_uri=args.tracking_uri)
    if args.alerts:
        alerts = run_alerts(reports, args.experiment)
        args.alerts.parent.mkdir(parents=True, exist_ok=True)
        args.alerts.write_bytes(b"".join(encode_alert(alert) + b"\n" for alert in alerts))
        if not args.json:
            print(f"alerts: {args.alerts} ({len(alerts)})")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    import psutil
    from aiokafka.errors import KafkaError

    from tripwire.compute.sampler import ReplicaSampler, run_sampler
    from tripwire.streams.topics import kafka_settings

    config, _capacity = _settings(args)
    settings = kafka_settings(config, broker=args.broker)
    try:
        sampler = ReplicaSampler(args.service, args.replica, pid=args.pid, cpus=args.cpus)
    except psutil.NoSuchProcess:
        print(f"tripwire compute sample: no process {args.pid}", file=sys.stderr)
        return EXIT_USAGE
    print(f"tripwire compute sample: {args.service}/{args.replica} ({sampler.cpus:g} CPUs"
          f"{f', process {args.pid}' if args.pid else ', the host'}{', GPUs via NVML' if sampler.gpus.handles else ''})"
          f" -> {settings.topics['metrics']} on {settings.bootstrap_servers} every {args.interval:g} s", flush=True)
    try:
        asyncio.run(run_sampler(settings, sampler, interval=args.interval, count=args.count))
    except KafkaError as error:
        return kafka_error(error, settings)
    except ProcessLookupError as error:
        print(f"tripwire compute sample: {error}", file=sys.stderr)
        return 1
    return 0
