"""``tripwire tail``: print the alerts topic, one line per alert."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from tripwire.cli.common import BROKER_HELP, kafka_command, kafka_error, kafka_settings
from tripwire.config import load_config


def add_parser(commands: Any) -> None:
    tail = commands.add_parser("tail", help="print the alerts topic, one line per alert")
    tail.add_argument("--broker", help=BROKER_HELP)
    tail.add_argument("--config", type=Path, help="take the broker, security and topic names from this config")
    tail.add_argument("--topic", help="topic to print (default: the alerts topic)")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest alert, not the newest")
    tail.add_argument("--idle-exit", type=float, metavar="SECONDS", help="stop after this long without an alert")
    tail.add_argument("--limit", type=int, metavar="N", help="stop after N alerts")
    tail.set_defaults(run=run)


@kafka_command
def run(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from tripwire.streams.tail import tail

    config = load_config(args.config) if args.config else None
    settings = kafka_settings(args, config)
    topic = args.topic or settings.topics["alerts"]
    try:
        asyncio.run(tail(settings, topic, from_beginning=args.from_beginning, idle_exit=args.idle_exit,
                         out=lambda line: print(line, flush=True), limit=args.limit))
    except KafkaError as error:
        return kafka_error(error, settings)
    return 0
