"""Kafka path: the worker's throughput beside raw aiokafka consumption of the same topic, and alert latency.

    PYTHON=.venv/bin/python scripts/kafka.sh start
    python -m bench.kafka_throughput [--bootstrap 127.0.0.1:9092] [--copies 4] [--rate 1000] [--json out.json]

One run, fresh topics named for it:

1. throughput: the demo stream (82k records, all incidents; ``--copies N`` repeats it N times with
   shifted times and request ids) is published to the input topic, keyed by model. Then, on that
   same topic: raw aiokafka ``getmany`` with the worker's fetch sizes (no processing); the engine
   alone in-process (``Engine.process_records``, no Kafka); ``tripwire worker`` with all detectors
   and the default checkpointing (every 5 s), then with a checkpoint after every batch. A worker's
   rate is its own count of processed records over the wall time from its first to its last
   processed record, from its utilization samples: start-up and the group join are not in it;
2. latency: a worker is started on an empty topic with ``resolve_windows = 1`` and
   ``cooldown_windows = 0``; a fuel-efficiency stream whose feature drift toggles every data window
   (weight +700 lb, horsepower +30 in every other window) is produced at ``--rate`` records/s, so
   every window close fires or resolves an alert. A replay of the same records (the engine in
   process) says which record closes each alerting window; latency is the wall time from the
   broker's acknowledgement of that record to the first alert of that window on the alerts topic.

Not a test: it prints figures (and writes them as JSON with ``--json``). Stops every worker it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson

from tripwire import demo
from tripwire.config import MonitorConfig, load_config
from tripwire.demo import write_demo_config
from tripwire.engine import Engine
from tripwire.events import Rejection, decode, format_ts
from tripwire.streams.publish import publish, route
from tripwire.streams.topics import KafkaSettings, ensure_topics, kafka_settings, partitions_for, running

ROLES = ("alerts", "deadletter", "metrics", "checkpoints")
LATENCY_MODEL = "fuel-efficiency"
# The worker's fetch sizes (tripwire/streams/worker.py), so that raw and worker fetch alike.
FETCH = {"max_partition_fetch_bytes": 4 << 20, "fetch_max_bytes": 64 << 20}


# -- streams ---------------------------------------------------------------------------------------
def copies_of(records: list[bytes], copies: int) -> list[bytes]:
    """The stream ``copies`` times in a row: times shifted by its span, request ids made unique."""
    if copies == 1:
        return records
    span = demo.DURATION_MINUTES * 60 + 3600.0
    out = []
    for copy in range(copies):
        for record in records:
            try:
                obj = orjson.loads(record)
            except orjson.JSONDecodeError:
                out.append(record)
                continue
            event = decode(record)
            if type(event) is Rejection or not isinstance(obj, dict):
                out.append(record)
                continue
            obj["ts"] = format_ts(event.ts + copy * span)
            obj["request_id"] = f"{obj['request_id']}-{copy}"
            out.append(orjson.dumps(obj))
    return out


def toggling_drift(windows: int, window_events: int, seed: int = 7) -> tuple[list[bytes], list[int]]:
    """Fuel-efficiency predictions, ``windows`` data windows, the odd ones drifted (weight +700 lb,
    horsepower +30): every window close after the first changes the drift verdict.

    Returns the records and the index of the first record of each drifted window.
    """
    rng = np.random.default_rng(seed)
    n = windows * window_events
    normal, drifted = demo.cars(rng, n), demo.cars(rng, n, drifted=True)
    is_drifted = (np.arange(n) // window_events) % 2 == 1
    car = {k: np.where(is_drifted, drifted[k], normal[k]) for k in normal}
    mpg = demo.mpg_model(car)
    latency = rng.lognormal(np.log(12), 0.35, n)
    records = [orjson.dumps({
        "type": "prediction", "schema": 1, "request_id": f"t-{i:06d}", "model": LATENCY_MODEL, "model_version": "7",
        "ts": format_ts(demo.START + i * 0.01), "features": {k: v[i].item() for k, v in car.items()},
        "prediction": round(float(mpg[i]), 2), "score": None, "latency_ms": round(float(latency[i]), 2)})
        for i in range(n)]
    return records, [w * window_events for w in range(1, windows, 2)]


# -- configs and topics ----------------------------------------------------------------------------
def write_config(directory: Path, name: str, events: str, *, defaults: dict[str, Any] | None = None,
                 **worker: Any) -> Path:
    """The demo config (references and broker from ``directory/monitor.toml``) for one run: its own
    app id and output topics, the input topic ``events``, extra ``[defaults]`` and ``[worker]`` keys."""
    text = (directory / "monitor.toml").read_text()
    text = text.replace('app_id = "tripwire-demo"', f'app_id = "bench-{events}-{name}"')
    text = text.replace("[defaults]\n", "[defaults]\n" + toml_lines(defaults or {}))
    text += toml_lines(worker)
    text += f'\n[kafka.topics]\nevents = "{events}"\n' + "".join(f'{r} = "{events}.{name}.{r}"\n' for r in ROLES)
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


def toml_lines(values: dict[str, Any]) -> str:
    return "".join(f"{key} = {orjson.dumps(value).decode()}\n" for key, value in values.items())


def create_topics(settings: KafkaSettings) -> None:
    """The run's topics, as the worker creates them (so nothing races the worker's start)."""
    asyncio.run(ensure_topics(settings, [settings.events] + [settings.topics[r] for r in ROLES],
                              compacted=[settings.topics["checkpoints"]]))


# -- raw consumption and the engine alone ----------------------------------------------------------
async def raw_consume(settings: KafkaSettings) -> tuple[int, float]:
    """Read the input topic end to end with ``getmany`` (no processing): records and seconds."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**settings.client_kwargs(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", **FETCH)
    async with running(consumer):
        tps = [TopicPartition(settings.events, p) for p in await partitions_for(consumer, settings.events)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        count = 0
        started = time.perf_counter()
        remaining = {tp for tp in tps if end[tp]}
        while remaining:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, messages in batch.items():
                count += len(messages)
                if messages and messages[-1].offset >= end[tp] - 1:
                    remaining.discard(tp)
        return count, time.perf_counter() - started


def engine_alone(config: MonitorConfig, records: list[bytes]) -> float:
    """Records/s of decode + all detectors in this process, one batch, no Kafka."""
    engine = Engine(config)
    started = time.perf_counter()
    engine.process_records(records)
    return len(records) / (time.perf_counter() - started)


# -- workers ---------------------------------------------------------------------------------------
class Worker:
    """``tripwire worker`` in a child process, its output in ``<name>.log`` beside its config."""

    def __init__(self, config: Path, name: str) -> None:
        self.log = config.with_name(f"{name}.log")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tripwire.cli", "worker", "--config", str(config), "--loglevel", "warning"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "TRIPWIRE_WORKER_ID": name})

    def check(self) -> None:
        if self.process.poll() is not None:
            raise SystemExit(f"worker exited ({self.process.returncode}): {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def wait_for_sample(settings: KafkaSettings, worker: Worker, done: Callable[[dict[str, Any]], bool],
                          timeout: float) -> dict[str, Any]:
    """Tail the metrics topic until a utilization sample of the worker satisfies ``done``; that sample."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(settings.topics["metrics"], **settings.client_kwargs(), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    async with running(consumer):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            worker.check()
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for message in messages:
                    sample = orjson.loads(message.value)
                    if done(sample):
                        return sample
    raise SystemExit(f"no utilization sample of the worker met the condition within {timeout:.0f} s")


def worker_throughput(config: Path, name: str, total: int, timeout: float = 900) -> dict[str, Any]:
    """Run a worker over the input topic until it has processed ``total`` records; its last sample."""
    settings = kafka_settings(load_config(config))
    create_topics(settings)
    worker = Worker(config, name)
    try:
        return asyncio.run(wait_for_sample(settings, worker, lambda s: s["records"] >= total, timeout))
    finally:
        worker.stop()


def sample_rate(sample: dict[str, Any]) -> float:
    """Records/s from the worker's first to its last processed record (its own clock)."""
    return sample["records"] / (sample["last_record"] - sample["first_record"])


# -- alert latency ---------------------------------------------------------------------------------
def closing_records(config: MonitorConfig, records: list[bytes]) -> dict[str, int]:
    """Replay in process: ``ts`` of each alerting window's alerts -> index of the record that closed it."""
    engine = Engine(config)
    closing: dict[str, int] = {}
    for index, record in enumerate(records):
        for alert in engine.handle(decode(record)):
            if alert["model"] == LATENCY_MODEL:
                closing.setdefault(alert["ts"], index)
    return closing


async def produce_paced(settings: KafkaSettings, records: list[bytes], rate: float,
                        timed: set[int]) -> dict[int, float]:
    """Produce ``records`` at ``rate``/s; wall time of the broker's acknowledgement of each ``timed`` index."""
    from aiokafka import AIOKafkaProducer

    acknowledged: dict[int, float] = {}
    producer = AIOKafkaProducer(**settings.client_kwargs(), acks="all", linger_ms=5)
    async with running(producer):
        started = time.monotonic()
        for index, record in enumerate(records):
            key, ts = route(record)
            future = await producer.send(settings.events, record, key=key, timestamp_ms=round(ts * 1000))
            if index in timed:
                await future
                acknowledged[index] = time.time()
            ahead = started + (index + 1) / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    return acknowledged


async def watch_alerts(consumer: Any, received: dict[str, tuple[float, float]]) -> None:
    """Task: the first alert of each window (by ``ts``): its receive time and the worker's send time."""
    while True:
        for messages in (await consumer.getmany(timeout_ms=100)).values():
            now = time.time()
            for message in messages:
                alert = orjson.loads(message.value)
                if alert["model"] == LATENCY_MODEL and alert["ts"] not in received:
                    received[alert["ts"]] = (now, message.timestamp / 1000.0)  # CreateTime: the worker's send


async def live_run(settings: KafkaSettings, worker: Worker, records: list[bytes], rate: float, timed: set[int],
                   expected: int) -> tuple[dict[int, float], dict[str, tuple[float, float]]]:
    """Once the worker owns its partitions: produce at ``rate``, collect alerts until ``expected`` windows alerted."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    await wait_for_sample(settings, worker, lambda s: bool(s["partitions"]), timeout=120)
    consumer = AIOKafkaConsumer(**settings.client_kwargs(), group_id=None, enable_auto_commit=False)
    received: dict[str, tuple[float, float]] = {}
    async with running(consumer):
        topic = settings.topics["alerts"]
        tps = [TopicPartition(topic, p) for p in await partitions_for(consumer, topic)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        watcher = asyncio.create_task(watch_alerts(consumer, received))
        try:
            acknowledged = await produce_paced(settings, records, rate, timed)
            deadline = time.monotonic() + 30
            while len(received) < expected and time.monotonic() < deadline:
                worker.check()
                await asyncio.sleep(0.1)
        finally:
            watcher.cancel()
    return acknowledged, received


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)), "n": len(values)}


def latency(directory: Path, prefix: str, rate: float, windows: int) -> dict[str, Any]:
    """Alert latency at ``rate`` records/s over the alerting windows of the toggling-drift stream."""
    path = write_config(directory, "latency", f"{prefix}.live", defaults={"resolve_windows": 1, "cooldown_windows": 0})
    config = load_config(path)
    settings = kafka_settings(config)
    window_events = next(m.window_events for m in config.models if m.name == LATENCY_MODEL)
    records, drift_starts = toggling_drift(windows, window_events)
    closing = closing_records(config, records)
    firing_of = {start: min(index for index in closing.values() if index > start) for start in drift_starts}
    create_topics(settings)
    worker = Worker(path, "latency")
    try:
        acknowledged, received = asyncio.run(live_run(settings, worker, records, rate,
                                                      set(closing.values()) | set(drift_starts), len(closing)))
    finally:
        worker.stop()
    arrived = sorted((index, received[ts]) for ts, index in closing.items() if ts in received)
    if not arrived:
        raise SystemExit(f"none of the {len(closing)} windows' alerts arrived within 30 s of the last record "
                         f"(worker log: {worker.log})")
    to_alert = [1000 * (got - acknowledged[index]) for index, (got, _sent) in arrived]
    to_worker_send = [1000 * (sent - acknowledged[index]) for index, (_got, sent) in arrived]
    ts_of = {index: ts for ts, index in closing.items()}
    first_drifted_to_firing = [received[ts_of[fires]][0] - acknowledged[start] for start, fires in firing_of.items()
                               if ts_of[fires] in received]
    return {"rate": rate, "windows": windows, "alerting_windows": len(closing), "arrived": len(arrived),
            "close_to_alert_ms": percentiles(to_alert), "close_to_alert_ms_each": [round(v, 1) for v in to_alert],
            "close_to_worker_send_ms": percentiles(to_worker_send),
            "first_drifted_to_firing_s": percentiles(first_drifted_to_firing)}


# -- the run ---------------------------------------------------------------------------------------
def throughput(directory: Path, prefix: str, copies: int) -> dict[str, Any]:
    """Produce the stream, then raw consumption, the engine alone and the two workers over it."""
    records = copies_of(demo.generate(7)[0], copies)
    events = f"{prefix}.events"
    config_path = write_config(directory, "every-5s", events)
    config = load_config(config_path)
    settings = kafka_settings(config)
    print(f"  throughput: {len(records):,} records (the demo stream x {copies}) on {events}, "
          f"{settings.partitions} partitions, keyed by model", flush=True)
    asyncio.run(ensure_topics(settings, [events]))
    started = time.perf_counter()
    asyncio.run(publish(settings, records))
    rates = {"produce (acks=all)": len(records) / (time.perf_counter() - started)}
    count, seconds = asyncio.run(raw_consume(settings))
    rates["raw aiokafka getmany"] = count / seconds
    rates["engine alone"] = engine_alone(config, records)
    every_batch = write_config(directory, "every-batch", events, checkpoint_seconds=0)
    samples = {"every 5 s": worker_throughput(config_path, "every-5s", len(records)),
               "every batch": worker_throughput(every_batch, "every-batch", len(records))}
    for label, sample in samples.items():
        rates[f"worker, checkpoint {label}"] = sample_rate(sample)
    return {"records": len(records), "copies": copies, "partitions": settings.partitions, "rates": rates,
            "worker_over_raw": rates["worker, checkpoint every 5 s"] / rates["raw aiokafka getmany"],
            "worker_every_batch_over_raw": rates["worker, checkpoint every batch"] / rates["raw aiokafka getmany"],
            "workers": {label: {k: sample[k] for k in ("records", "checkpoints", "checkpoint_ms_mean",
                                                       "checkpoint_bytes", "first_record", "last_record")}
                        for label, sample in samples.items()}}


def report(figures: dict[str, Any]) -> str:
    t, lat = figures["throughput"], figures["latency"]
    lines = [f"tripwire Kafka benchmark: broker {figures['broker']}, {os.cpu_count()} cores, load average "
             f"{', '.join(f'{x:.2f}' for x in figures['load_average'])}, topics {figures['prefix']}.*",
             f"  {t['records']:,} records (the demo stream x {t['copies']}), {t['partitions']} partitions, keyed by model"]
    notes = {"raw aiokafka getmany": "no processing, the worker's fetch sizes",
             "engine alone": "Engine.process_records in process, no Kafka"}
    for label, rate in t["rates"].items():
        note = notes.get(label, "")
        for which, sample in t["workers"].items():
            if label.endswith(which):
                note = (f"{sample['records']:,} in {sample['last_record'] - sample['first_record']:.2f} s, first to last "
                        f"record; {sample['checkpoints']} checkpoints, {sample['checkpoint_ms_mean'] or 0:.1f} ms and "
                        f"{sample['checkpoint_bytes'] / max(1, sample['checkpoints']) / 1024:.0f} KiB each")
        lines.append(f"  {label:<36} {rate:>10,.0f} records/s  {note}".rstrip())
    lines.append(f"  worker / raw, checkpoint every 5 s   {t['worker_over_raw']:>10.3f}  (target >= 0.25, aim 0.5); "
                 f"every batch {t['worker_every_batch_over_raw']:.3f}")
    close, sent, first = lat["close_to_alert_ms"], lat["close_to_worker_send_ms"], lat["first_drifted_to_firing_s"]
    lines += [f"  alert latency at {lat['rate']:,.0f} records/s, {close['n']} of {lat['alerting_windows']} alerting windows "
              f"(drift toggles every window; resolve_windows 1, cooldown 0; worker at its defaults):",
              f"    record that closes the window acknowledged -> first alert on the topic  "
              f"p50 {close['p50']:.0f} ms, p99 {close['p99']:.0f} ms (worker sent it: p50 {sent['p50']:.0f} ms, "
              f"p99 {sent['p99']:.0f} ms)",
              f"    first drifted record acknowledged -> firing alert on the topic  p50 {first['p50']:.2f} s, "
              f"p99 {first['p99']:.2f} s ({first['n']} drifted windows)"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("TRIPWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--copies", type=int, default=4, help="the demo stream this many times (default 4: 328k records)")
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s of the latency run (default 1000)")
    parser.add_argument("--windows", type=int, default=25, help="data windows of the latency run (default 25)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    prefix = f"bench{uuid.uuid4().hex[:6]}"
    directory = Path(tempfile.mkdtemp(prefix="tripwire-bench-"))
    write_demo_config(directory, broker=args.bootstrap)
    print(f"tripwire Kafka benchmark on {args.bootstrap}: configs and worker logs in {directory}", flush=True)
    figures = {"broker": args.bootstrap, "prefix": prefix, "load_average": os.getloadavg(),
               "throughput": throughput(directory, prefix, args.copies),
               "latency": latency(directory, prefix, args.rate, args.windows)}
    text = report(figures)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({**figures, "report": text}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
