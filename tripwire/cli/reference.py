"""``tripwire reference build`` and ``tripwire reference log``: profile training data into a reference."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tripwire.cli.common import EXIT_STOPPED, EXIT_USAGE
from tripwire.paths import check_output


def add_parser(commands: Any) -> None:
    reference = commands.add_parser("reference", help="build a reference profile from training / validation data")
    reference_commands = reference.add_subparsers(dest="reference_command", required=True)
    build = reference_commands.add_parser("build", help="profile DATA (CSV or Parquet) into a reference JSON file")
    _data_arguments(build)
    build.add_argument("-o", "--output", type=Path, required=True, help="reference JSON to write")
    build.set_defaults(run=run_build)
    log = reference_commands.add_parser("log", help="profile DATA and log it (and baseline metrics) to an MLflow run")
    log.add_argument("--run-id", required=True, help="MLflow run to log the reference to")
    log.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    _data_arguments(log)
    log.set_defaults(run=run_log)


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="CSV (.csv, .csv.gz) or Parquet file with features, target, prediction")
    parser.add_argument("--model", required=True, help="model name, as in the events")
    parser.add_argument("--task", required=True, choices=("regression", "classification"))
    parser.add_argument("--target", required=True, help="column with the true label / value")
    parser.add_argument("--prediction", required=True, help="column with the model's prediction")
    parser.add_argument("--score", help="column with the positive-class probability (classification)")
    parser.add_argument("--scores", type=_csv, default=[],
                        help="multi-class: one probability column per class (COL1,COL2 or CLASS=COL; a bare column "
                             "is the class its name ends with)")
    parser.add_argument("--scores-prefix", help="multi-class: the probability columns are named PREFIX<class>")
    parser.add_argument("--positive-class", help="positive class (default: 1 / true when the classes are binary; "
                                                 "multi-class: the class fairness looks at, one-vs-rest)")
    parser.add_argument("--categorical", type=_csv, default=[], help="columns to treat as categorical (C1,C2)")
    parser.add_argument("--attributes", type=_csv, default=[], help="sensitive / segment attribute columns (A1,A2)")
    parser.add_argument("--features", type=_csv, help="feature columns (default: all other columns)")
    parser.add_argument("--bins", type=int, default=10, help="quantile bins per numeric feature (default 10)")


def reference_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from tripwire.reference import build_reference, read_table

    # The positive class as typed ("1") maps onto the class set's spelling (1): see tripwire.classes.
    return build_reference(
        read_table(args.data), model=args.model, task=args.task, target=args.target, prediction=args.prediction,
        score=args.score, class_scores=args.scores, class_scores_prefix=args.scores_prefix,
        categorical=args.categorical, attributes=args.attributes, features=args.features,
        positive_class=args.positive_class, bins=args.bins,
    )


def _described(reference: dict[str, Any]) -> str:
    baseline = ", ".join(f"{k}={v:.4g}" for k, v in reference["baseline"].items() if v is not None)
    return f"{len(reference['features'])} features, {reference['n']} rows, baseline {baseline}"


def run_build(args: argparse.Namespace) -> int:
    from tripwire.reference import save_reference

    check_output("--output", args.output, [("the data", args.data)])
    reference = reference_from_args(args)
    try:
        save_reference(reference, args.output)
    except OSError as error:
        print(f"tripwire: {args.output}: cannot write the reference: {error.strerror or error}", file=sys.stderr)
        return EXIT_STOPPED
    print(f"wrote {args.output}: {_described(reference)}")
    return 0


def run_log(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from tripwire.tracking import log_reference

    reference = reference_from_args(args)
    try:
        uri = log_reference(reference, args.run_id, tracking_uri=args.tracking_uri)
    except MlflowException as error:
        print(f"tripwire: MLflow refused the reference for run {args.run_id}: {error.message}", file=sys.stderr)
        return EXIT_USAGE
    print(f"logged {uri}: {_described(reference)}")
    return 0
