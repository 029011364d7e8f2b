"""The ``tripwire`` command line: one module per command, each adding its parser and its ``run``.

Each command imports what it needs when it runs (numpy, pandas, river, MLflow, Kafka clients take
seconds to import), so ``tripwire --help`` and a small replay start at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from tripwire.cli import compute, demo, reference, replay, tail, worker
from tripwire.config import ConfigError
from tripwire.paths import PathError

COMMANDS = (demo, replay, reference, worker, tail, compute)  # in the order of `tripwire --help`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tripwire", description="Real-time monitoring for ML models in production.")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)  # each sets its `run` as the parser's default
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from tripwire import logs

    logs.install()  # every logger, every level: no secret in the log, no flood of one repeated error
    args = build_parser().parse_args(argv)
    from tripwire.reference import ReferenceError

    try:
        status: int = args.run(args)
        return status
    except (ConfigError, ReferenceError, PathError, FileNotFoundError) as error:
        print(f"tripwire: {error}", file=sys.stderr)
        return 2
