"""Every tripwire benchmark in one command: ``python -m bench.run`` (``make bench``).

Prints the figures as markdown tables (ready for the README), writes them to
``bench/results/latest.json`` and draws ``bench/results/*.png``. Sections, in this order so that
the timed ones run on an otherwise idle interpreter:

1. speed: replay of 1,000,000 events vs bare ``orjson.loads`` (bench/replay_throughput.py), the
   Kafka path (bench/kafka_throughput.py, when present and a broker can run), one sharded model with
   1 and 2 workers, its merge cost per window and its summary size (bench/shard.py), car-loan rows/s vs
   NannyML and Evidently, engine memory per model and per feature, peak RSS of 10^6 unlabelled
   predictions under the label join's bound (bench/join_memory.py); the serving client's added
   latency per ``log_prediction`` call, broker up and down (bench/client_latency.py);
2. detection quality on streams with known drift points (bench/detection.py) and on the car-loan
   data per feature and window;
3. agreement of every statistic with NannyML, Evidently and scipy on the same windows
   (bench/agreement.py);
4. multi-class: realized and label-free (CBPE) accuracy / macro F1 on NannyML's three-class data,
   tripwire next to NannyML (bench/multiclass.py).

Nothing is typed in: every number printed is measured by this run. Timings depend on the
machine and its load, so they are reported, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

from bench import client_latency, join_memory

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed(name: str, fn: Callable[[], Any], seconds: dict[str, float]) -> Any:
    log(f"{name} ...")
    started = time.perf_counter()
    out = fn()
    seconds[name] = time.perf_counter() - started
    log(f"{name} done in {seconds[name]:.1f} s")
    return out


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) < 10 ** -(digits):
        return f"{v:.1e}"
    return f"{v:.{digits}g}"


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "absent"

    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
        "versions": {n: version(n) for n in ("tripwire", "river", "orjson", "numpy", "scipy", "pandas", "nannyml",
                                             "evidently", "aiokafka", "confluent-kafka")},
        "command": "python -m bench.run " + " ".join(sys.argv[1:]),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# -- rendering --------------------------------------------------------------------------------
def kafka_rows(kafka: dict[str, Any]) -> list[list[str]]:
    """The Kafka path's rows of the speed table (bench/kafka_throughput.py, run by bench/speed.py)."""
    if kafka.get("status") != "ok":
        return [["Kafka path (bench/kafka_throughput.py)", kafka.get("status", "skipped: no broker"), "", ""]]
    t, lat = kafka["figures"]["throughput"], kafka["figures"]["latency"]
    rates = t["rates"]
    close, first = lat["close_to_alert_ms"], lat["first_drifted_to_firing_s"]
    return [
        [f"Kafka worker, all detectors, checkpoint every 5 s (default), {t['records']:,} records",
         f"{rates['worker, checkpoint every 5 s']:,.0f} records/s",
         f"raw aiokafka getmany {rates['raw aiokafka getmany']:,.0f} records/s",
         f"worker / raw = {t['worker_over_raw']:.3f} (target ≥ 0.25)"],
        ["Kafka worker, checkpoint after every batch", f"{rates['worker, checkpoint every batch']:,.0f} records/s",
         f"engine alone in process {rates['engine alone']:,.0f} records/s",
         f"worker / raw = {t['worker_every_batch_over_raw']:.3f}"],
        [f"alert latency at {lat['rate']:,.0f} records/s: record that closes the window → alert on the topic",
         f"p50 {close['p50']:.0f} ms, p99 {close['p99']:.0f} ms ({close['n']} windows)",
         f"first drifted record → firing alert p50 {first['p50']:.2f} s ({first['n']} windows)",
         "drift toggles every window; worker at its defaults"],
    ]


def startup_rows(startup: dict[str, Any]) -> list[list[str]]:
    return [["`tripwire --help`, fresh process", f"{startup['help_seconds']:.2f} s", f"best of {startup['repeat']}",
             "target < 1 s on an idle machine"],
            ["`tripwire replay` of a 10-line file, fresh process", f"{startup['replay_10_lines_seconds']:.2f} s",
             f"best of {startup['repeat']}", "the issue: well under a second"]]


def render_speed(r: dict[str, Any]) -> str:
    replay, car, mem, kafka = r["replay"], r["carloan_speed"], r["memory"], r["kafka"]
    rows = [
        [f"replay {replay['events']:,} events (decode + engine, all detectors)", f"{replay['replay_events_per_s']:,.0f} events/s",
         f"bare orjson.loads {replay['orjson_events_per_s']:,.0f} events/s (best of {replay['orjson_repeat']}; replay best of {replay.get('replay_repeat', 1)})",
         f"ratio {replay['ratio']:.3f} (target ≥ 0.33)"],
    ]
    if "file_replay" in replay:
        f = replay["file_replay"]
        rows.append(["replay_file from disk, same file (alerts written)", f"{f['events_per_s']:,.0f} events/s",
                     f"peak RSS {f['peak_rss_bytes'] / 2**20:,.0f} MiB",
                     f"{f['pending_in_label_join']:,} unlabelled predictions still held by the label join"])
    rows += kafka_rows(kafka)
    rows += startup_rows(r["startup"])
    rows += [
        [f"car loan, {car['rows']:,} rows as {2 * car['rows']:,} events, {car['window_rows']:,}-row windows",
         f"{car['tripwire_rows_per_s']:,.0f} rows/s",
         f"NannyML univariate drift {car['nannyml_rows_per_s']:,.0f} rows/s ({car['nannyml_rows_per_s_with_fit']:,.0f} with fit)",
         f"tripwire / NannyML = {car['tripwire_rows_per_s'] / car['nannyml_rows_per_s']:.3f}"],
        ["", "", f"Evidently DataDriftPreset {car['evidently_rows_per_s']:,.0f} rows/s",
         f"tripwire / Evidently = {car['tripwire_rows_per_s'] / car['evidently_rows_per_s']:.1f}"],
    ]
    for row in mem["rows"]:
        rows.append([f"engine memory, {row['models']} model(s) × {row['features']} features, {row['events']:,} events",
                     f"built {row['built_bytes'] / 1024:,.0f} KiB", f"peak {row['peak_bytes'] / 2**20:.1f} MiB, "
                     f"retained {row['retained_bytes'] / 2**20:.1f} MiB",
                     f"{row['pending_labels']:,} predictions waiting for labels"])
    rows.append(["memory per model / per feature / per waiting prediction",
                 f"{mem['per_model_built_bytes'] / 1024:,.0f} KiB built per model (12 features)",
                 f"{mem['per_feature_built_bytes'] / 1024:.1f} KiB built, {mem['per_feature_peak_bytes'] / 1024:.0f} KiB peak per feature",
                 f"{fmt(mem['per_pending_label_bytes'])} B per prediction in the label join"])
    rows += join_memory.render(r["join_memory"])
    table = md_table(["speed / memory", "tripwire", "anchor", "note"], rows)
    if kafka.get("status") == "ok":
        table += "\n\nbench/kafka_throughput.py, as it printed in this run:\n```\n" + kafka["figures"]["report"] + "\n```"
    return table


def render_detection(d: dict[str, Any]) -> str:
    rows = d["rows"]
    scenarios = [s for s in dict.fromkeys(r["scenario"] for r in rows) if not s.startswith("stationary")]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["scenario"], r["method"]): r for r in rows}
    table = []
    for method in methods:
        line = [method]
        fa, monitored = 0, 0
        for s in scenarios:
            r = by.get((s, method))
            if r is None:
                line.append("")
                continue
            missed = r["drifts"] - r["detected"]
            line.append(f"{fmt(r['mean_delay'], 4)} (missed {missed}/{r['drifts']})")
            fa += r["false_alarms"]
            monitored += r["monitored"]
        stationary = by.get(("stationary 0.15", method))
        line.append(fmt(stationary["false_alarms_per_100k"], 3) if stationary else "")
        line.append(fmt(fa / monitored * 100_000, 3) if monitored else "")
        table.append(line)
    headers = ["method (defaults)", *[f"{s}: mean delay" for s in scenarios],
               "false alarms /100k, stationary 5×100k", "false alarms /100k, before the drift points"]
    return md_table(headers, table)


def render_carloan(c: dict[str, Any]) -> str:
    rows = []
    for r in c["rows"]:
        delays = ", ".join(f"{k} {v}" for k, v in r["first_alarm_delay_windows"].items())
        rows.append([r["method"], ", ".join(r["flagged_features"]) or "none", "yes" if r["exactly_shifted"] else "NO",
                     r["false_alarm_windows"], f"{r['missed_windows']}/{r['shifted_windows']}", delays])
    grid = ["", "per-window verdicts (X = drift) of tripwire at its default windows, truth = shift from row 25,000:", "```"]
    first = c["rows"][0]
    for feature, cells in first["grid"].items():
        grid.append(f"{feature:25s} {cells}")
    grid.append("```")
    return md_table(["car loan: method", "features flagged", "exactly the 4 shifted?", "false-alarm windows",
                     "missed windows", "first alarm after the shift (windows)"], rows) + "\n" + "\n".join(grid)


def render_agreement(a: dict[str, Any]) -> str:
    rows = []
    for r in a["rows"]:
        if not r.get("n"):
            rows.append([r["statistic"], r.get("features", ""), r["anchor"], 0, "", "", "", r["why"]])
            continue
        largest = f"{fmt(r['max_abs_diff'])} at {r['max_at']} ({fmt(r['tripwire_at_max'], 4)} vs {fmt(r['anchor_at_max'], 4)})"
        extra = f"; p ≤ 0.01 decisions agree {r['decisions_agree_at_0.01']}" if "decisions_agree_at_0.01" in r else ""
        rows.append([r["statistic"], r.get("features", ""), r["anchor"], r["n"], fmt(r["mean_abs_diff"]), largest,
                     fmt(r["pearson"], 4), r["why"] + extra])
    return md_table(["statistic", "features", "anchor", "values", "mean abs diff", "largest diff (where; tripwire vs anchor)",
                     "Pearson r", "why they differ"], rows)


def targets(r: dict[str, Any]) -> list[list[str]]:
    out = []
    ratio = r["replay"]["ratio"]
    out.append(["replay ≥ 0.33 × bare orjson.loads", f"{ratio:.3f}", "met" if ratio >= 0.33 else "MISSED"])
    if r["kafka"].get("status") == "ok":
        kafka = r["kafka"]["figures"]
        share = kafka["throughput"]["worker_over_raw"]
        out.append(["Kafka worker ≥ 0.25 × raw aiokafka getmany (default checkpointing)", f"{share:.3f}",
                    "met" if share >= 0.25 else "MISSED"])
        close = kafka["latency"]["close_to_alert_ms"]
        out.append([f"alert latency at {kafka['latency']['rate']:,.0f} records/s no worse than 49 ms (p50)",
                    f"p50 {close['p50']:.0f} ms, p99 {close['p99']:.0f} ms over {close['n']} windows",
                    "met" if close["p50"] <= 49 else "MISSED"])
    help_seconds = r["startup"]["help_seconds"]
    out.append(["`tripwire --help` < 1 s", f"{help_seconds:.2f} s", "met" if help_seconds < 1 else "MISSED"])
    out += client_latency.target_rows(r["client"])
    by = {(x["scenario"], x["method"]): x for x in r["detection"]["rows"]}
    big = by.get(("Bernoulli 0.15->0.35", "tripwire alert: concept_drift (ADWIN on errors)"))
    if big:
        missed = big["drifts"] - big["detected"]
        out.append(["no missed drift on 0.15→0.35 (tripwire concept_drift alert)", f"missed {missed}/{big['drifts']}",
                    "met" if missed == 0 else "MISSED"])
    for method in ("tripwire alert: concept_drift (ADWIN on errors)", "tripwire alert: either"):
        st = by.get(("stationary 0.15", method))
        if st:
            out.append([f"≤ 2 false alarms /100k on stationary ({method})", fmt(st["false_alarms_per_100k"]),
                        "met" if st["false_alarms_per_100k"] <= 2 else "MISSED"])
    default = r["carloan_detection"]["rows"][0]
    ok = default["exactly_shifted"] and default["false_alarm_windows"] == 0
    out.append([f"car loan: exactly the shifted features, only after the shift ({default['method']})",
                f"{', '.join(default['flagged_features'])}; {default['false_alarm_windows']} false windows; "
                f"{default['missed_windows']}/{default['shifted_windows']} shifted windows missed", "met" if ok else "MISSED"])
    return out


def render(r: dict[str, Any]) -> str:
    env = r["environment"]
    head = (f"tripwire benchmarks — {env['date_utc']}, {env['cores']} cores ({env['cpu']}), Python {env['python']}, "
            f"river {env['versions']['river']}, NannyML {env['versions']['nannyml']}, Evidently {env['versions']['evidently']}; "
            f"load average at start {', '.join(f'{x:.2f}' for x in env['load_average_at_start'])}; "
            f"total {r['seconds']['total']:.0f} s")
    parts = [head, "", "### Targets", md_table(["target", "measured", ""], targets(r)), "",
             "### Speed and memory", render_speed(r), "",
             "### Serving client: latency added per `log_prediction` call (bench/client_latency.py)",
             client_latency.render(r["client"]), "",
             "### Detection on streams with known drift points (delay in labelled predictions; defaults everywhere)",
             render_detection(r["detection"]), "",
             "### Car loan (NannyML synthetic data): which windows alarm vs the truth", render_carloan(r["carloan_detection"]),
             "", f"### Agreement on the same {r['agreement']['window_rows']:,}-row windows (car loan)",
             render_agreement(r["agreement"]),
             f"\nengine-published window statistics vs the detectors' values: largest difference "
             f"{fmt(r['agreement']['engine_vs_detectors_max_diff'])}"]
    if r.get("shard", {}).get("status") == "ok":
        parts += ["", "### One hot model over 8 partitions (bench/shard.py)", "```", r["shard"]["figures"]["report"], "```"]
    if "multiclass" in r:
        from bench.multiclass import render as render_multiclass

        parts += ["", "### Multi-class CBPE vs NannyML's", render_multiclass(r["multiclass"])]
    return "\n".join(parts)


def slim(r: dict[str, Any]) -> dict[str, Any]:
    """The JSON written to disk: everything but the raw per-event streams of the plot example."""
    out = dict(r)
    out["detection"] = {"rows": r["detection"]["rows"]}
    car = dict(r["carloan_speed"])
    car.pop("evidently_result", None)
    car.pop("nannyml_result", None)
    out["carloan_speed"] = car
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every tripwire benchmark.")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the replay benchmark")
    parser.add_argument("--no-kafka", action="store_true", help="skip the Kafka path")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for latest.json and the PNGs")
    args = parser.parse_args(argv)

    from bench import agreement, detection, multiclass, plots, replay_throughput, speed, startup

    started = time.perf_counter()
    seconds: dict[str, float] = {}
    r: dict[str, Any] = {"environment": environment(), "seconds": seconds}
    r["replay"] = timed("replay vs orjson", lambda: replay_throughput.run(args.events), seconds)
    r["startup"] = timed("command-line start-up", startup.run, seconds)
    r["kafka"] = ({"status": "skipped: --no-kafka"} if args.no_kafka
                  else timed("kafka path", lambda: speed.kafka(sys.executable), seconds))
    r["shard"] = ({"status": "skipped: --no-kafka"} if args.no_kafka
                  else timed("sharded model", lambda: speed.kafka(sys.executable, module="bench.shard"), seconds))
    r["client"] = timed("client latency", lambda: client_latency.run(start_broker=not args.no_kafka), seconds)
    r["carloan_speed"] = timed("car-loan rows/s", speed.carloan_throughput, seconds)
    r["memory"] = timed("engine memory", speed.memory_table, seconds)
    r["join_memory"] = timed("label join bound, 10^6 unlabelled predictions", join_memory.run, seconds)
    r["detection"] = timed("detection streams", lambda: detection.run(), seconds)
    r["carloan_detection"] = timed("car-loan windows", lambda: detection.carloan(
        r["carloan_speed"]["nannyml_result"], r["carloan_speed"]["evidently_result"]), seconds)
    r["agreement"] = timed("agreement", agreement.run, seconds)
    r["multiclass"] = timed("multi-class CBPE", multiclass.compare, seconds)
    r["environment"]["load_average_at_end"] = os.getloadavg()
    seconds["total"] = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    from tripwire.config import DEFAULT_THRESHOLDS

    psi = DEFAULT_THRESHOLDS["psi"]
    plots.detection_delays(r["detection"], args.out / "detection_delay.png")
    plots.statistic_over_time(r["detection"], r["carloan_detection"], args.out / "statistic_over_time.png",
                              psi.warning, psi.critical)
    bars = [("bare orjson.loads", r["replay"]["orjson_events_per_s"], False),
            ("tripwire replay (in memory)", r["replay"]["replay_events_per_s"], True)]
    if "file_replay" in r["replay"]:
        bars.append(("tripwire replay_file (from disk)", r["replay"]["file_replay"]["events_per_s"], True))
    if r["kafka"].get("status") == "ok":
        for label, value in r["kafka"]["figures"]["throughput"]["rates"].items():
            bars.append((f"kafka: {label}", value, "worker" in label or "engine" in label))
    plots.throughput(bars, args.out / "throughput_events.png", "events per second (1 process)",
                     f"Replay of {r['replay']['events']:,} events")
    car = r["carloan_speed"]
    plots.throughput([("tripwire (JSON events, all detectors)", car["tripwire_rows_per_s"], True),
                      ("NannyML univariate drift (calculate)", car["nannyml_rows_per_s"], False),
                      ("NannyML univariate drift (fit + calculate)", car["nannyml_rows_per_s_with_fit"], False),
                      ("Evidently DataDriftPreset", car["evidently_rows_per_s"], False)],
                     args.out / "throughput_carloan.png", "analysis rows per second",
                     f"Car loan, {car['rows']:,} rows in {car['window_rows']:,}-row windows")
    text = render(r)
    (args.out / "latest.json").write_text(json.dumps(slim(r), indent=1, default=str))
    (args.out / "latest.md").write_text(text + "\n")
    print(text)
    log(f"wrote {args.out / 'latest.json'}, latest.md and PNGs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
