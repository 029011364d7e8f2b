"""The ``tripwire`` command line: demo, replay, reference build / log, worker, tail.

Each command imports what it needs when it runs (numpy, pandas, river, MLflow, Kafka clients take
seconds to import), so ``tripwire --help`` and a small replay start at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from tripwire.config import ConfigError, load_config, parse_config
from tripwire.paths import PathError, check_output

if TYPE_CHECKING:
    from tripwire.engine import Engine

# Exit codes (README, "Command line"): 0 done; 1 done, but sinks / retrain did not deliver (demo: an
# incident missed); 2 bad configuration, reference, path or option, nothing done; 3 Kafka unreachable;
# 4 stopped part way (input unreadable past a point, an output not writable), what came before kept;
# 5 every record rejected; 130 interrupted.
EXIT_STOPPED = 4
EXIT_ALL_REJECTED = 5
SINK_CLOSE_SECONDS = 120.0  # how long `replay --sinks` waits for its deliveries before it gives up


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tripwire", description="Real-time monitoring for ML models in production.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the monitor on a built-in stream with injected incidents (no broker)")
    demo.add_argument("--out", type=Path, help="also write the alerts as JSONL here")
    demo.add_argument("--seed", type=int, default=7, help="seed of the generated stream (default 7)")
    demo.add_argument("--quiet", action="store_true", help="print only the final table")
    demo.add_argument("--report", type=Path, help="also write the HTML report (timelines, histograms, alerts) here")

    replay = commands.add_parser("replay", help="replay recorded events (a JSONL file, or a Kafka topic range)")
    replay.add_argument("events", nargs="?", type=Path, help="JSONL or JSONL.gz file of events in event-time order")
    replay.add_argument("--config", type=Path, required=True, help="monitor configuration (TOML)")
    replay.add_argument("--out", type=Path, help="alerts JSONL to write (dead letters go beside it)")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    replay.add_argument("--report", type=Path,
                        help="also write a self-contained HTML backtest report (timelines, histograms, alerts) here")
    replay.add_argument("--sinks", action="store_true",
                        help="also route the alerts to the config's [sinks] and run its [retrain] trigger (file replay)")

    reference = commands.add_parser("reference", help="build a reference profile from training / validation data")
    reference_commands = reference.add_subparsers(dest="reference_command", required=True)
    build = reference_commands.add_parser("build", help="profile DATA (CSV or Parquet) into a reference JSON file")
    _reference_arguments(build)
    build.add_argument("-o", "--output", type=Path, required=True, help="reference JSON to write")
    log = reference_commands.add_parser("log", help="profile DATA and log it (and baseline metrics) to an MLflow run")
    log.add_argument("--run-id", required=True, help="MLflow run to log the reference to")
    log.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    _reference_arguments(log)
    from tripwire.streams import kafka_cli  # worker, tail, replay --topic, demo --broker

    kafka_cli.add_arguments(commands, {"demo": demo, "replay": replay})
    from tripwire.compute import cli as compute_cli  # compute runs, compute sample

    compute_cli.add_arguments(commands)
    return parser


def _reference_arguments(parser: argparse.ArgumentParser) -> None:
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


def cmd_reference_build(args: argparse.Namespace) -> int:
    from tripwire.reference import save_reference

    check_output("--output", args.output, [("the data", args.data)])
    reference = reference_from_args(args)
    try:
        save_reference(reference, args.output)
    except OSError as error:
        print(f"tripwire: {args.output}: cannot write the reference: {error.strerror or error}", file=sys.stderr)
        return EXIT_STOPPED
    print(f"wrote {args.output}: {len(reference['features'])} features, {reference['n']} rows, "
          f"baseline {', '.join(f'{k}={v:.4g}' for k, v in reference['baseline'].items() if v is not None)}")
    return 0


def cmd_reference_log(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from tripwire.tracking import log_reference

    reference = reference_from_args(args)
    try:
        uri = log_reference(reference, args.run_id, tracking_uri=args.tracking_uri)
    except MlflowException as error:
        print(f"tripwire: MLflow refused the reference for run {args.run_id}: {error.message}", file=sys.stderr)
        return 2
    print(f"logged {uri}: {len(reference['features'])} features, {reference['n']} rows, "
          f"baseline {', '.join(f'{k}={v:.4g}' for k, v in reference['baseline'].items() if v is not None)}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    import orjson

    from tripwire.engine import Engine
    from tripwire.streams.replay import check_paths, config_inputs, deadletter_path, replay_file

    if args.events is None:
        print("tripwire replay: give an EVENTS file (topic replay needs --topic)", file=sys.stderr)
        return 2
    if args.out is None:
        print("tripwire replay: give --out FILE, the alerts JSONL to write", file=sys.stderr)
        return 2
    config = load_config(args.config)
    check_paths(args.events, args.out, config_inputs(args.config, config), args.report)  # before any work
    from tripwire.tracking import MlflowReporter, resolve_config


    resolved = resolve_config(config)  # runs:/ and models:/ references via [mlflow] tracking_uri
    reporter = MlflowReporter.from_config(config)  # None unless [mlflow] report = true
    window_log = _window_log(args, config)
    sinks, trigger = _actions(args, config)
    engine = Engine(config, references={name: r.reference for name, r in resolved.items()},
                    on_window=_fan_out(reporter.on_window if reporter else None, window_log,
                                       trigger.on_window if trigger else None))
    _route_alerts(engine, [sinks.submit if sinks else None, trigger.on_alert if trigger else None])
    delivered = True
    try:
        summary = replay_file(engine, args.events, args.out, progress=False if args.no_progress else None)
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
    if window_log is not None:
        alerts = [orjson.loads(line) for line in args.out.read_bytes().splitlines() if line]
        if not _write_report(args.report, engine, window_log, alerts, "tripwire backtest report",
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


def _actions(args: argparse.Namespace, config: Any) -> tuple[Any, Any]:
    """With ``--sinks``: the config's alert sinks and retrain trigger (either may be None)."""
    if not getattr(args, "sinks", False):
        return None, None
    from tripwire.sinks import start_sinks
    from tripwire.sinks.actions import RetrainTrigger
    from tripwire.streams.topics import kafka_settings

    return start_sinks(config.sinks), RetrainTrigger.from_config(config, kafka_settings(config))


def _route_alerts(engine: Engine, sinks: list[Any]) -> None:
    """Hand every alert the engine raises to ``sinks`` as it happens, in order with its windows."""
    live = [sink for sink in sinks if sink is not None]
    if live:
        engine.on_alert = _fan_out(*live)


def _window_log(args: argparse.Namespace, config: Any) -> Any:
    """The ``on_window`` sink the report needs, or None without ``--report``."""
    if args.report is None:
        return None
    from tripwire.report import WindowLog

    return WindowLog(config)


def _fan_out(*sinks: Any) -> Any:
    """One sink (of windows or alerts) that feeds every given one (None when there is none)."""
    live = [sink for sink in sinks if sink is not None]
    if len(live) <= 1:
        return live[0] if live else None

    def fan_out(item: dict[str, Any]) -> None:
        for sink in live:
            sink(item)

    return fan_out


def _write_report(path: Path, engine: Engine, window_log: Any, alerts: list[dict[str, Any]], title: str,
                  facts: list[tuple[str, Any]]) -> bool:
    from tripwire.report import render_report

    references = {name: monitor.reference for name, monitor in engine.monitors.items()}
    page = render_report(window_log.windows, alerts, engine.config, references, title=title, facts=facts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        print(f"tripwire: --report {path}: cannot write the report ({error.strerror or error})", file=sys.stderr)
        return False
    print(f"report: {path}")
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    from tripwire.alerts import encode_alert
    from tripwire.engine import Engine
    from tripwire.events import Rejection
    from tripwire.streams import demo

    for role, path in (("--out", args.out), ("--report", args.report)):
        if path is not None:  # before any work
            check_output(role, path, [("--out", args.out)] if role == "--report" and args.out else [])
    print(f"tripwire demo: generating {demo.DURATION_MINUTES} minutes of traffic for fuel-efficiency, credit and triage "
          f"(seed {args.seed}) ...", flush=True)
    stream, first_index = demo.generate(args.seed)
    config = parse_config(demo.demo_config(), where="demo")
    window_log = _window_log(args, config)
    from tripwire.compute import demo as capacity_demo  # replica samples beside the stream, advised afterwards

    capacity = capacity_demo.CapacityDemo(args.seed)
    engine = Engine(config, references=demo.training_references(args.seed),
                    on_window=_fan_out(window_log, capacity.observe_window))
    alerts: list[tuple[int, dict[str, Any]]] = []
    from tripwire.streams.replay import LineFile, OutputError, run_records

    out = LineFile(args.out) if args.out else None

    def on_alert(alert: dict[str, Any], index: int) -> None:
        alerts.append((index, alert))
        if out:
            out.write(encode_alert(alert) + b"\n")
            out.flush()  # as raised: nothing is lost when the disk fills
        if not args.quiet:
            print(f"  #{index:<7} {alert['ts']}  {alert['status']:<8} {alert['severity']:<8} {alert['kind']:<21} "
                  f"{alert['model']:<15} {alert['message']}")

    def on_reject(_rejection: "Rejection", _index: int, _record: bytes) -> None:
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
    for incident, injected, event, index in scored:
        by = f"capacity {event['action']} {event['current_replicas']} -> {event['desired_replicas']}" if event else "-"
        late = "-" if index is None else f"{index - injected:,}"
        print(f"{incident.name:<66} {injected:>9,} {'yes' if event else 'NO':>6} {late:>12}  {by}")
    print(f"alerts before the first incident: {early}")
    if window_log is not None and not _write_report(
            args.report, engine, window_log, [alert for _index, alert in alerts], "tripwire demo report",
            [("stream", f"built-in demo, seed {args.seed}"), ("records", summary.records),
             ("rejected", summary.rejected)]):
        return EXIT_STOPPED
    missed = sum(1 for row in caught if row.alert is None) + sum(1 for row in scored if row[2] is None)
    return 1 if missed or early else 0


def main(argv: Sequence[str] | None = None) -> int:
    from tripwire import logs

    logs.install()  # every logger, every level: no secret in the log, no flood of one repeated error
    args = build_parser().parse_args(argv)
    from tripwire.reference import ReferenceError

    try:
        from tripwire.streams import kafka_cli

        if args.command == "replay" and args.sinks and getattr(args, "topic", None):
            print("tripwire replay: --sinks works with a file replay (a worker routes what it reads from topics)",
                  file=sys.stderr)
            return 2
        if kafka_cli.handles(args):
            return kafka_cli.dispatch(args)
        if args.command == "compute":
            from tripwire.compute.cli import dispatch

            return dispatch(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "replay":
            return cmd_replay(args)
        if args.command == "reference" and args.reference_command == "build":
            return cmd_reference_build(args)
        if args.command == "reference" and args.reference_command == "log":
            return cmd_reference_log(args)
    except (ConfigError, ReferenceError, PathError, FileNotFoundError) as error:
        print(f"tripwire: {error}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
