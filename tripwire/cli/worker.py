"""``tripwire worker``: the Faust worker on Kafka (monitor the input topics, publish alerts)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tripwire.cli.common import BROKER_HELP, kafka_command, kafka_error, kafka_settings
from tripwire.config import load_config


def add_parser(commands: Any) -> None:
    worker = commands.add_parser("worker", help="run the Faust worker: monitor the input topics, publish alerts")
    worker.add_argument("--config", type=Path, required=True, help="monitor configuration (TOML)")
    worker.add_argument("--broker", help=BROKER_HELP)
    worker.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    worker.set_defaults(run=run)


@kafka_command
def run(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from tripwire.streams.app import run_worker

    config = load_config(args.config)
    settings = kafka_settings(args, config)
    try:
        return run_worker(config, settings, loglevel=args.loglevel)
    except KafkaError as error:
        return kafka_error(error, settings)
