"""One sharded model: events/s with 1 and 2 workers, the merge stage's cost per window, a summary's size.

    PYTHON=.venv/bin/python scripts/kafka.sh start
    python -m bench.shard [--bootstrap 127.0.0.1:9092] [--events 200000] [--json out.json]

One binary classifier with 12 numeric features, a score, a latency and labels for half of its
predictions, ``sharded = true`` with 60 s windows, its records keyed by ``request_id`` over an
8-partition input topic (200 predictions per second of event time).

1. in process: the size of one window summary (JSON, as on the summaries topic) and the merge
   stage's cost per window: :meth:`ShardMerger.add` of a window's 8 summaries (merge and judge);
2. on the broker: ``tripwire worker`` x 1, then x 2 (one consumer group), each on an input topic of
   its own: once the workers share its partitions, the records are published (one producer) and
   the run's rate is its records over the wall time from the first worker's first to the last
   worker's last processed record, from their utilization samples. The producer's rate is shown
   beside it: a worker cannot be faster than its input arrives.

Not a test: it prints figures (and writes them as JSON with ``--json``). Stops every worker it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from bench.kafka_throughput import Worker
from tripwire.config import load_config, parse_config
from tripwire.events import format_ts
from tripwire.reference import build_reference, save_reference
from tripwire.shard.merge import ShardMerger
from tripwire.shard.replay import PartitionedReplay
from tripwire.streams.publish import publish
from tripwire.streams.topics import ensure_topics, kafka_settings, running

MODEL = "hot"
FEATURES = [f"f{i}" for i in range(12)]
PARTITIONS = 8
RATE = 200.0  # predictions per second of event time
WINDOW = 60.0
START = 1_795_824_000.0


def frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    data = pd.DataFrame({name: rng.normal(i, 1 + i / 10, n) for i, name in enumerate(FEATURES)})
    data["score"] = 1 / (1 + np.exp(-(data["f0"] - 0 + 0.5 * (data["f1"] - 1))))
    data["prediction"] = (data["score"] >= 0.5).astype(int)
    data["label"] = (rng.random(n) < data["score"]).astype(int)
    return data


def events(n: int, seed: int = 7) -> list[bytes]:
    """``n`` predictions of the hot model (and a label for every other one, 30 s later), in time order."""
    rng = np.random.default_rng(seed)
    data = frame(rng, n)
    ts = START + np.arange(n) / RATE
    latency = rng.lognormal(np.log(20), 0.4, n)
    records: list[tuple[float, bytes]] = []
    columns = {name: data[name].round(4).tolist() for name in FEATURES}
    for i in range(n):
        request_id = f"r-{i:08d}"
        records.append((ts[i], orjson.dumps({
            "type": "prediction", "schema": 1, "request_id": request_id, "model": MODEL, "ts": format_ts(ts[i]),
            "features": {name: columns[name][i] for name in FEATURES}, "prediction": int(data["prediction"][i]),
            "score": round(float(data["score"][i]), 4), "latency_ms": round(float(latency[i]), 2)})))
        if i % 2 == 0:
            records.append((ts[i] + 30, orjson.dumps({
                "type": "label", "schema": 1, "request_id": request_id, "model": MODEL,
                "ts": format_ts(ts[i] + 30), "label": int(data["label"][i])})))
    records.sort(key=lambda item: item[0])
    return [record for _ts, record in records]


def config_text(reference: Path, bootstrap: str, prefix: str, name: str) -> str:
    topics = "".join(f'{role} = "{prefix}.{name}.{role}"\n'
                     for role in ("alerts", "deadletter", "metrics", "checkpoints", "summaries"))
    return (f'[defaults]\nwindow_seconds = {WINDOW}\nsharded = true\n\n[[models]]\nname = "{MODEL}"\n'
            f'reference = "{reference}"\n\n[kafka]\nbootstrap_servers = "{bootstrap}"\npartitions = {PARTITIONS}\n\n'
            f'[kafka.topics]\nevents = "{prefix}.events"\n{topics}\n[worker]\napp_id = "{prefix}-{name}"\n'
            f'utilization_seconds = 1.0\n')


def in_process(reference: dict[str, Any], records: list[bytes]) -> dict[str, Any]:
    """A summary's size and the merge cost per window, from a partitioned replay of ``records``."""
    config = parse_config({"defaults": {"window_seconds": WINDOW, "sharded": True},
                           "models": [{"name": MODEL, "reference": "given"}]})
    replay = PartitionedReplay(config, PARTITIONS, {MODEL: reference})
    summaries: list[dict[str, Any]] = []
    for partition, engine in enumerate(replay.engines):
        engine.monitors[MODEL].on_summary = lambda s, p=partition: summaries.append({**s, "partition": p})
    started = time.perf_counter()
    for first in range(0, len(records), 1000):
        replay.process(records[first:first + 1000])
    fold_seconds = time.perf_counter() - started
    sizes = [len(orjson.dumps(s)) for s in summaries]
    merger = ShardMerger(config, PARTITIONS, {MODEL: reference})
    per_window = []  # the add that completes a window merges and judges it; the others only file a summary
    for summary in summaries:
        judged, started = merger.windows_judged, time.perf_counter()
        merger.add(summary)
        if merger.windows_judged > judged:
            per_window.append((time.perf_counter() - started) / (merger.windows_judged - judged))
    # (the first window also imports river for the error stream's ADWIN: the median leaves it out)
    return {"records": len(records), "summaries": len(summaries), "windows": merger.windows_judged,
            "summary_bytes_median": float(np.median(sizes)), "summary_bytes_max": max(sizes),
            "merge_ms_per_window": float(np.median(per_window)) * 1000,
            "replay_records_per_s": len(records) / fold_seconds}


async def run_workers(config: Path, count: int, records: list[bytes], timeout: float = 900) -> dict[str, Any]:
    """Start ``count`` workers on an empty input; once they share its partitions, publish ``records`` and
    wait until their samples add up to all of them; the run's rate."""
    from aiokafka import AIOKafkaConsumer

    settings = kafka_settings(load_config(config))
    await ensure_topics(settings, [settings.events, settings.topics["metrics"]])
    workers = [Worker(config, f"{config.stem}-{i}") for i in range(count)]
    latest: dict[str, dict[str, Any]] = {}
    total = len(records)
    try:
        consumer = AIOKafkaConsumer(settings.topics["metrics"], **settings.client_kwargs(), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        async with running(consumer):
            deadline = time.monotonic() + timeout
            published = False
            while sum(s["records"] for s in latest.values()) < total:
                owned = [p for s in latest.values() for p in s["partitions"]]
                if not published and len(latest) == count and sorted(owned) == list(range(PARTITIONS)):
                    started = time.perf_counter()
                    await publish(settings, records, key=lambda record, _model: orjson.loads(record)["request_id"].encode())
                    produce_rate = total / (time.perf_counter() - started)
                    published = True
                if time.monotonic() > deadline:
                    raise SystemExit(f"{count} worker(s) did not process {total:,} records in {timeout:.0f} s")
                for worker in workers:
                    worker.check()
                for messages in (await consumer.getmany(timeout_ms=1000)).values():
                    for message in messages:
                        sample = orjson.loads(message.value)
                        if sample.get("type") == "utilization":
                            latest[sample["worker"]] = sample
    finally:
        for worker in workers:
            worker.stop()
    first = min(s["first_record"] for s in latest.values() if s["first_record"])
    last = max(s["last_record"] for s in latest.values())
    return {"workers": count, "records": total, "seconds": last - first, "records_per_s": total / (last - first),
            "produce_records_per_s": produce_rate,
            "per_worker": {w: s["records"] for w, s in sorted(latest.items())}}


def report(figures: dict[str, Any]) -> str:
    p = figures["in_process"]
    lines = [f"sharded model benchmark: one model, {len(FEATURES)} features, {PARTITIONS} partitions keyed by "
             f"request_id, {WINDOW:g} s windows, {os.cpu_count()} cores, load average "
             f"{', '.join(f'{x:.2f}' for x in figures['load_average'])}",
             f"  window summary on the summaries topic: median {p['summary_bytes_median']:,.0f} B, "
             f"largest {p['summary_bytes_max']:,} B (JSON, uncompressed)",
             f"  merge stage: {p['merge_ms_per_window']:.2f} ms per window (median) ({PARTITIONS} summaries merged and judged; "
             f"{p['windows']} windows)",
             f"  in process, {PARTITIONS} simulated partitions: {p['replay_records_per_s']:,.0f} records/s"]
    for run in figures.get("kafka", []):
        lines.append(f"  tripwire worker x {run['workers']}: {run['records_per_s']:,.0f} records/s "
                     f"({run['records']:,} records in {run['seconds']:.2f} s, first to last record; per worker "
                     f"{', '.join(f'{n:,}' for n in run['per_worker'].values())}; published meanwhile at "
                     f"{run['produce_records_per_s']:,.0f} records/s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("TRIPWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--events", type=int, default=200_000, help="predictions (labels for half of them come too)")
    parser.add_argument("--no-kafka", action="store_true", help="only the in-process figures")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    directory = Path(tempfile.mkdtemp(prefix="tripwire-bench-shard-"))
    reference = build_reference(frame(np.random.default_rng(1), 20_000), model=MODEL, task="classification",
                                target="label", prediction="prediction", score="score", positive_class=1)
    save_reference(reference, directory / "hot.json")
    records = events(args.events)
    figures: dict[str, Any] = {"load_average": os.getloadavg(), "in_process": in_process(reference, records)}
    if not args.no_kafka:
        prefix = f"benchshard{uuid.uuid4().hex[:6]}"
        figures["kafka"] = []
        for count in (1, 2):
            path = directory / f"workers{count}.toml"
            path.write_text(config_text(directory / "hot.json", args.bootstrap, f"{prefix}.w{count}", "out"))
            figures["kafka"].append(asyncio.run(run_workers(path, count, records)))
    text = report(figures)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({**figures, "report": text}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
