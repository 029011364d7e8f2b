"""Replay throughput: tripwire's decode + engine against bare ``orjson.loads`` over the same lines.

    python -m bench.replay_throughput                 # 1,000,000 events, timing + peak memory
    python -m bench.replay_throughput --profile       # also cProfile a 200k-event prefix

The events file (a binary classifier with 12 numeric and 3 categorical features, a calibrated
score, a sensitive attribute, labels for 30 % of the requests arriving 5-120 s later) is generated
once into ``.cache/bench/`` and reused. The stream has incidents in it (covariate drift at 50 %,
a fairness gap at 60 %, concept drift at 75 %) so the alert path runs too. The monitor uses the
engine's defaults: every detector family on (drift, quality, change on the error stream with
ADWIN, performance, fairness, estimated performance, serving).

Both timings read the same ``list[bytes]`` already in memory, so file I/O is in neither; the
ratio is from one run. Peak memory is measured in a child process that runs the real
``replay_file`` (streaming from disk, writing alerts) and reports its ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("TRIPWIRE_CACHE", REPO / ".cache")) / "bench"
GENERATOR_VERSION = 1  # bump when the generator changes: cached files are keyed by it
MODEL = "bench-credit"
START = 1_795_824_000.0  # 2026-11-28T00:00:00Z
RATE = 200.0  # predictions per second of event time
LABEL_FRACTION = 0.3
NUMERIC = [f"f{i:02d}" for i in range(12)]
CATEGORICAL = {
    "channel": (("web", "app", "store", "partner"), (0.5, 0.3, 0.15, 0.05)),
    "region": (("north", "south", "east", "west", "central"), (0.25, 0.2, 0.2, 0.2, 0.15)),
    "plan": (("basic", "plus", "pro"), (0.5, 0.35, 0.15)),
}


# -- data -----------------------------------------------------------------------------------
def rows(rng: np.random.Generator, n: int, covariate_drift: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``n`` requests; where ``covariate_drift`` is true, f03 shifts by +0.5 sd and f07 doubles its spread."""
    drift = np.zeros(n, dtype=bool) if covariate_drift is None else covariate_drift
    out: dict[str, np.ndarray] = {
        "f00": rng.normal(0, 1, n),
        "f01": rng.normal(50, 10, n),
        "f02": rng.lognormal(3, 0.5, n),
        "f03": rng.normal(0, 1, n) + 0.5 * drift,
        "f04": rng.uniform(0, 1, n),
        "f05": rng.poisson(3, n),
        "f06": rng.normal(100, 25, n),
        "f07": rng.normal(0, 1, n) * np.where(drift, 2.0, 1.0),
        "f08": rng.exponential(2, n),
        "f09": rng.beta(2, 5, n),
        "f10": rng.integers(18, 81, n),
        "f11": rng.normal(-5, 3, n),
    }
    for name in NUMERIC:
        if out[name].dtype.kind == "f":
            out[name] = np.round(out[name], 4)
    for name, (values, p) in CATEGORICAL.items():
        out[name] = np.array(values)[rng.choice(len(values), size=n, p=p)]
    out["group"] = np.where(rng.random(n) < 0.7, "A", "B")
    return out


def true_probability(r: dict[str, np.ndarray]) -> np.ndarray:
    z = (0.8 * r["f00"] - 0.05 * (r["f01"] - 50) + 0.6 * r["f03"] + 0.9 * (r["f04"] - 0.5)
         + 0.01 * (r["f06"] - 100) - 0.3 * r["f07"] + 0.5 * (r["channel"] == "app")
         - 0.4 * (r["plan"] == "basic") + 0.2)
    return 1 / (1 + np.exp(-z))


def reference_frame(seed: int, n: int = 20_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 1)
    r = rows(rng, n)
    frame = pd.DataFrame(r)
    frame["score"] = np.round(true_probability(r), 4)
    frame["prediction"] = (frame["score"] >= 0.5).astype(int)
    frame["label"] = (rng.random(n) < frame["score"]).astype(int)
    return frame


def build_bench_reference(seed: int = 11) -> dict[str, Any]:
    from tripwire.reference import build_reference

    return build_reference(reference_frame(seed), model=MODEL, task="classification", target="label",
                           prediction="prediction", score="score", categorical=list(CATEGORICAL),
                           attributes=["group"], positive_class=1)


def iso_ms(epoch_seconds: np.ndarray) -> list[str]:
    millis = np.round(epoch_seconds * 1000).astype("int64").astype("datetime64[ms]")
    return [s + "Z" for s in np.datetime_as_string(millis, unit="ms").tolist()]


def iter_lines(n_lines: int, seed: int = 11) -> Iterator[bytes]:
    """``n_lines`` records (predictions and the labels of 30 % of them) in event-time order.

    Records are encoded one at a time as they are yielded: a list of a million ``orjson.dumps``
    results fragments the heap to several GB, far more than the bytes themselves.
    """
    rng = np.random.default_rng(seed)
    n_pred = round(n_lines / (1 + LABEL_FRACTION))
    n_label = n_lines - n_pred
    ts = START + np.cumsum(rng.exponential(1 / RATE, n_pred))
    position = np.arange(n_pred) / n_pred
    r = rows(rng, n_pred, covariate_drift=position >= 0.5)
    p_true = true_probability(r)
    score = p_true.copy()
    unfair = (position >= 0.6) & (r["group"] == "B")
    score[unfair] = np.clip(score[unfair] - 0.15, 0, 1)
    score = np.round(score, 4)
    prediction = (score >= 0.5).astype(int)
    p_label = np.where(position >= 0.75, p_true * 0.6, p_true)
    label = (rng.random(n_pred) < p_label).astype(int)
    latency = np.round(rng.lognormal(np.log(20), 0.3, n_pred), 2)

    labelled = np.sort(rng.choice(n_pred, size=n_label, replace=False))
    label_ts = ts[labelled] + rng.uniform(5, 120, n_label)
    pred_stamp, label_stamp = iso_ms(ts), iso_ms(label_ts)

    columns = {name: r[name].tolist() for name in [*NUMERIC, *CATEGORICAL]}
    names = list(columns)
    group, score_l, pred_l, lat_l = r["group"].tolist(), score.tolist(), prediction.tolist(), latency.tolist()
    label_l, labelled_l = label.tolist(), labelled.tolist()
    dumps = orjson.dumps
    # Event-time order; a label can never precede its prediction (lag >= 5 s).
    order = np.argsort(np.concatenate([ts, label_ts]), kind="stable").tolist()
    for position_in_order in order:
        if position_in_order < n_pred:
            i = position_in_order
            yield dumps({"type": "prediction", "schema": 1, "request_id": f"r-{i:07d}", "model": MODEL,
                         "model_version": "1", "ts": pred_stamp[i], "features": {k: columns[k][i] for k in names},
                         "prediction": pred_l[i], "score": score_l[i], "latency_ms": lat_l[i],
                         "attributes": {"group": group[i]}})
        else:
            k = position_in_order - n_pred
            i = labelled_l[k]
            yield dumps({"type": "label", "schema": 1, "request_id": f"r-{i:07d}", "model": MODEL,
                         "ts": label_stamp[k], "label": label_l[i]})


def dataset(n_lines: int = 1_000_000, seed: int = 11, quiet: bool = False) -> tuple[Path, Path, dict[str, Any]]:
    """The cached events file, reference file and config dict (generated when missing)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    stem = f"replay_v{GENERATOR_VERSION}_s{seed}_{n_lines}"
    events = CACHE / f"{stem}.jsonl"
    reference = CACHE / f"{stem}.reference.json"
    if not reference.exists():
        from tripwire.reference import save_reference

        save_reference(build_bench_reference(seed), reference)
    if not events.exists():
        started = time.perf_counter()
        if not quiet:
            print(f"generating {n_lines:,} events into {events} ...", file=sys.stderr, flush=True)
        partial = events.with_suffix(".partial")
        with partial.open("wb") as handle:
            for line in iter_lines(n_lines, seed):
                handle.write(line)
                handle.write(b"\n")
        partial.replace(events)
        if not quiet:
            print(f"  done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    config = {"models": [{"name": MODEL, "reference": str(reference)}]}
    toml = CACHE / f"{stem}.monitor.toml"
    if not toml.exists():
        toml.write_text(f'[[models]]\nname = "{MODEL}"\nreference = "{reference.name}"\n')
    return events, reference, config


def read_lines(path: Path, limit: int | None = None) -> list[bytes]:
    lines = path.read_bytes().split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines[:limit] if limit else lines


def make_engine(config: dict[str, Any], reference_path: Path):
    from tripwire.config import parse_config
    from tripwire.engine import Engine
    from tripwire.reference import load_reference

    return Engine(parse_config(config), references={MODEL: load_reference(reference_path)})


# -- measurements ---------------------------------------------------------------------------
def time_orjson(lines: list[bytes], repeat: int = 3) -> tuple[float, float]:
    """Best wall time and best CPU time of a bare ``orjson.loads`` loop over the lines."""
    loads = orjson.loads
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        for line in lines:
            loads(line)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - started_cpu)
    return best, best_cpu


def time_replay(lines: list[bytes], config: dict[str, Any], reference_path: Path,
                one_at_a_time: bool = False) -> tuple[float, float, dict[str, Any]]:
    """Wall and CPU time of decode + engine over the lines, alerts collected in a list.

    The batch path (``run_records``: ``Engine.process_records`` on batches of lines), or with
    ``one_at_a_time`` the record-by-record path (``engine.handle(decode(line))``) for comparison.
    """
    from tripwire.events import decode
    from tripwire.replay import Summary, run_records

    engine = make_engine(config, reference_path)
    alerts: list[dict[str, Any]] = []
    gc.collect()
    started, started_cpu = time.perf_counter(), time.process_time()
    if one_at_a_time:
        for line in lines:
            alerts += engine.handle(decode(line))
        summary = Summary(events=engine.events, rejected=engine.rejected)
    else:
        summary = run_records(engine, lines, lambda alert, _i: alerts.append(alert), lambda *_: None)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    firing: dict[str, int] = {}
    for alert in alerts:
        if alert["status"] == "firing" and alert.get("incident_id", alert["alert_id"]) == alert["alert_id"]:
            firing[alert["kind"]] = firing.get(alert["kind"], 0) + 1
    return seconds, cpu_seconds, {"events": summary.events, "rejected": summary.rejected, "alerts": len(alerts),
                                  "firing_by_kind": dict(sorted(firing.items()))}


def vm_hwm_bytes() -> int:
    """This process's peak resident set (``VmHWM``): unlike ``ru_maxrss`` it is not inherited across exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(events: Path, reference: Path) -> dict[str, Any]:
    """Run in a fresh process: the real file replay, and the process's peak resident memory."""
    import psutil

    from tripwire.replay import replay_file

    config = {"models": [{"name": MODEL, "reference": str(reference)}]}
    engine = make_engine(config, reference)
    before = psutil.Process().memory_info().rss
    with tempfile.TemporaryDirectory() as tmp:
        summary = replay_file(engine, events, Path(tmp) / "alerts.jsonl", progress=False)
    peak = vm_hwm_bytes()
    return {"records": summary.records, "seconds": summary.seconds, "events_per_s": summary.records_per_second,
            "rss_before_bytes": before, "peak_rss_bytes": peak, "peak_increase_bytes": max(peak - before, 0),
            "alerts": summary.alerts, "pending_in_label_join": sum(m.join.pending for m in engine.monitors.values())}


def measure_memory(events: Path, reference: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.replay_throughput", "--memory-child", str(events), str(reference)],
                         cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def profile_replay(lines: list[bytes], config: dict[str, Any], reference_path: Path, top: int = 15) -> str:
    from tripwire.replay import run_records

    engine = make_engine(config, reference_path)
    profiler = cProfile.Profile()
    profiler.enable()
    run_records(engine, lines, lambda *_: None, lambda *_: None)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    text.write("\n--- by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(top)
    return text.getvalue()


def run(n_lines: int = 1_000_000, repeat: int = 3, memory: bool = True, quiet: bool = False,
        replay_repeat: int = 2, one_at_a_time: bool = False) -> dict[str, Any]:
    """Best of ``repeat`` bare-orjson loops and best of ``replay_repeat`` replays (a fresh engine each).

    Both are timed in wall-clock and in this process's CPU time: on a shared machine the CPU-time
    ratio is the steadier one.
    """
    events, reference, config = dataset(n_lines, quiet=quiet)
    lines = read_lines(events)
    orjson_s, orjson_cpu = time_orjson(lines, repeat)
    runs = [time_replay(lines, config, reference) for _ in range(replay_repeat)]
    replay_s, replay_cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    result: dict[str, Any] = {
        "events": len(lines),
        "file_bytes": events.stat().st_size,
        "orjson_seconds": orjson_s,
        "orjson_events_per_s": len(lines) / orjson_s,
        "replay_seconds": replay_s,
        "replay_events_per_s": len(lines) / replay_s,
        "ratio": orjson_s / replay_s,
        "orjson_cpu_seconds": orjson_cpu,
        "replay_cpu_seconds": replay_cpu,
        "ratio_cpu": orjson_cpu / replay_cpu,
        "outcome": runs[0][2],
        "orjson_repeat": repeat,
        "replay_repeat": replay_repeat,
    }
    if one_at_a_time:
        single_s, single_cpu, single_outcome = time_replay(lines, config, reference, one_at_a_time=True)
        assert single_outcome == result["outcome"], (single_outcome, result["outcome"])
        result["one_at_a_time"] = {"seconds": single_s, "events_per_s": len(lines) / single_s,
                                   "ratio": orjson_s / single_s, "ratio_cpu": orjson_cpu / single_cpu}
    del lines
    gc.collect()
    if memory:
        result["file_replay"] = measure_memory(events, reference)
    return result


def render(result: dict[str, Any]) -> str:
    lines = [
        f"replay throughput, {result['events']:,} events ({result['file_bytes'] / 1e6:.0f} MB JSONL), 1 process",
        f"  bare orjson.loads     {result['orjson_events_per_s']:>12,.0f} events/s  (best of {result['orjson_repeat']})",
        f"  tripwire replay       {result['replay_events_per_s']:>12,.0f} events/s  (batch path: decode + engine, "
        f"all detectors; best of {result.get('replay_repeat', 1)})",
        f"  ratio                 {result['ratio']:>12.3f}  wall clock (target >= 0.33); "
        f"{result.get('ratio_cpu', float('nan')):.3f} in CPU time",
    ]
    if "one_at_a_time" in result:
        single = result["one_at_a_time"]
        lines.append(f"  one record at a time  {single['events_per_s']:>12,.0f} events/s  (handle(decode(line))); "
                     f"ratio {single['ratio']:.3f} wall, {single['ratio_cpu']:.3f} CPU")
    lines.append(f"  alerts {result['outcome']['alerts']}  incidents opened by kind {result['outcome']['firing_by_kind']}")
    if "file_replay" in result:
        f = result["file_replay"]
        lines.append(f"  replay_file from disk {f['events_per_s']:>12,.0f} events/s; peak RSS {f['peak_rss_bytes'] / 2**20:,.0f} MiB "
                     f"(+{f['peak_increase_bytes'] / 2**20:,.0f} MiB during the replay; "
                     f"{f['pending_in_label_join']:,} predictions still waiting for a label at the end)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the generated file")
    parser.add_argument("--repeat", type=int, default=3, help="best-of repeats of the bare orjson loop")
    parser.add_argument("--replay-repeat", type=int, default=2, help="best-of repeats of the replay")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child process")
    parser.add_argument("--one-at-a-time", action="store_true",
                        help="also time the record-by-record path (handle(decode(line))) for comparison")
    parser.add_argument("--profile", action="store_true", help="cProfile the replay of a 200k-event prefix")
    parser.add_argument("--profile-events", type=int, default=200_000)
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--memory-child", nargs=2, metavar=("EVENTS", "REFERENCE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(Path(args.memory_child[0]), Path(args.memory_child[1]))))
        return 0
    result = run(args.events, args.repeat, memory=not args.no_memory, replay_repeat=args.replay_repeat,
                 one_at_a_time=args.one_at_a_time)
    print(render(result))
    if args.profile:
        events, reference, config = dataset(args.events)
        text = profile_replay(read_lines(events, args.profile_events), config, reference)
        out = REPO / "bench" / "results" / "replay_profile.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(text)
        print(f"profile written to {out}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
