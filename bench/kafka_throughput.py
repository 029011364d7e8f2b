"""Kafka path throughput and alert latency, beside raw aiokafka consumption of the same topics.

    PYTHON=.venv/bin/python scripts/kafka.sh start
    python bench/kafka_throughput.py [--bootstrap 127.0.0.1:9092] [--copies 1] [--rates 1000,4000]

One run, fresh topics named for it:

1. the demo stream (82k records, all incidents; ``--copies N`` repeats it N times with shifted
   times and request ids) is published to the three input topics, keyed by model;
2. raw: a plain aiokafka consumer reads those topics end to end with ``getmany`` (no processing);
3. worker: ``tripwire worker`` (all detectors on) reads the same topics; events/s is its own count
   of processed records over first-to-last record, with checkpoints every 5 s, then again with a
   checkpoint after every batch (the checkpoint cost);
4. latency: a worker is started on empty topics, then the stream is published at each of
   ``--rates`` records/s; latency is the wall time from producing the first drifted record (and the record
   that closes the window which fires) to the drift alert appearing on the alerts topic.

Not a test: it prints figures. Stops every worker it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from tripwire.config import load_config
from tripwire.engine import Engine
from tripwire.events import Rejection, decode
from tripwire.reference import save_reference
from tripwire.streams import demo
from tripwire.streams.kafka_cli import DEMO_CONFIG
from tripwire.streams.publish import publish, route
from tripwire.streams.topics import ensure_topics, kafka_settings, partitions_for, read_topic

COVARIATE = demo.INCIDENTS[2]  # weight +700 lb, horsepower +30 on fuel-efficiency


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
                event = decode(record)
            except orjson.JSONDecodeError:
                out.append(record)
                continue
            if type(event) is Rejection or not isinstance(obj, dict):
                out.append(record)
                continue
            from tripwire.events import format_ts

            obj["ts"] = format_ts(event.ts + copy * span)
            obj["request_id"] = f"{obj['request_id']}-{copy}"
            out.append(orjson.dumps(obj))
    return out


def write_config(directory: Path, name: str, bootstrap: str, prefix: str, **worker) -> Path:
    text = DEMO_CONFIG.replace('bootstrap_servers = "127.0.0.1:9092"', f'bootstrap_servers = "{bootstrap}"')
    text = text.replace('app_id = "tripwire-demo"', f'app_id = "bench-{prefix}-{name}"')
    text += "".join(f"{k} = {orjson.dumps(v).decode()}\n" for k, v in worker.items())
    roles = ("predictions", "features", "labels", "alerts", "deadletter", "metrics", "checkpoints")
    text += "\n[kafka.topics]\n" + "".join(
        f'{r} = "{prefix}.{r}"\n' if r in ("predictions", "features", "labels") else f'{r} = "{prefix}.{name}.{r}"\n'
        for r in roles)
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


async def raw_consume(settings, topics: list[str]) -> tuple[int, float]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**settings.client_kwargs(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in await partitions_for(consumer, t)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        count = 0
        started = time.perf_counter()
        remaining = {tp for tp in tps if end[tp]}
        while remaining:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, messages in batch.items():
                count += len(messages)
                if messages and messages[-1].offset >= end[tp] - 1:
                    remaining.discard(tp)
        return count, time.perf_counter() - started
    finally:
        await consumer.stop()


class Worker:
    def __init__(self, config: Path, name: str) -> None:
        self.log = config.with_name(f"{name}.log")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tripwire.streams.cli", "worker", "--config", str(config), "--loglevel", "warning"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "TRIPWIRE_WORKER_ID": name})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_worker_to_end(config: Path, name: str, total: int, timeout: float = 900) -> dict:
    """Run a worker until its utilization samples say it processed ``total`` records; its last sample."""
    settings = kafka_settings(load_config(config))
    worker = Worker(config, name)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                raise SystemExit(f"worker {name} exited: {worker.log.read_text()[-2000:]}")
            time.sleep(1.0)
            try:
                messages = asyncio.run(read_topic(settings, settings.topics["metrics"]))
                samples = [orjson.loads(m.value) for m in messages]
            except Exception:
                continue
            if samples and samples[-1]["records"] >= total and samples[-1]["first_record"]:
                return samples[-1]
        raise SystemExit(f"worker {name} did not finish in {timeout:.0f} s")
    finally:
        worker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("TRIPWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--copies", type=int, default=1, help="the demo stream this many times (default 1: 82k)")
    parser.add_argument("--rates", default="1000,4000", help="records/s of the latency runs (default 1000,4000)")
    parser.add_argument("--latency-only", action="store_true", help="skip the throughput runs")
    args = parser.parse_args()

    prefix = f"bench{uuid.uuid4().hex[:6]}"
    directory = Path(tempfile.mkdtemp(prefix="tripwire-bench-"))
    for name, reference in demo.training_references(7).items():
        save_reference(reference, directory / f"{name}.json")
    records, first_index = demo.generate(7)
    records = copies_of(records, args.copies)
    config_path = write_config(directory, "batch5s", args.bootstrap, prefix, utilization_seconds=1.0)
    config = load_config(config_path)
    settings = kafka_settings(config)
    print(f"tripwire Kafka benchmark: {len(records):,} records, broker {args.bootstrap}, {os.cpu_count()} cores, "
          f"topics {prefix}.*")

    rates = [float(r) for r in args.rates.split(",") if r]
    if args.latency_only:
        for rate in rates:
            latency(args, directory, records, first_index, f"{prefix}r{rate:.0f}", rate)
        return 0
    asyncio.run(ensure_topics(settings, settings.inputs))
    started = time.perf_counter()
    asyncio.run(publish(settings, records))
    produce_seconds = time.perf_counter() - started
    print(f"  produce (aiokafka, acks=all, keyed by model)   {len(records) / produce_seconds:>10,.0f} records/s")

    count, seconds = asyncio.run(raw_consume(settings, settings.inputs))
    raw_rate = count / seconds
    print(f"  raw aiokafka getmany, no processing             {raw_rate:>10,.0f} records/s  "
          f"({count:,} in {seconds:.2f} s)")

    # In-process engine on the same records, for reference (decode + all detectors, no Kafka).
    engine = Engine(config)
    started = time.perf_counter()
    for record in records:
        event = decode(record)
        engine.reject(event) if type(event) is Rejection else engine.process(event)
    engine_rate = len(records) / (time.perf_counter() - started)
    print(f"  engine alone (decode + detectors, in-process)   {engine_rate:>10,.0f} records/s")

    results = {}
    for name, extra in (("batch5s", {}), ("every-batch", {"checkpoint_seconds": 0})):
        path = config_path if name == "batch5s" else write_config(directory, name, args.bootstrap, prefix,
                                                                  utilization_seconds=1.0, **extra)
        sample = run_worker_to_end(path, name, len(records))
        seconds = sample["last_record"] - sample["first_record"]
        results[name] = sample
        label = "checkpoint every 5 s" if name == "batch5s" else "checkpoint every batch"
        print(f"  tripwire worker, all detectors, {label:<22} {sample['records'] / seconds:>7,.0f} records/s  "
              f"({sample['records']:,} in {seconds:.2f} s; {sample['checkpoints']} checkpoints, "
              f"{sample['checkpoint_ms_mean']:.1f} ms and "
              f"{sample['checkpoint_bytes'] / max(1, sample['checkpoints']) / 1024:.0f} KiB each)")
    five = results["batch5s"]
    worker_rate = five["records"] / (five["last_record"] - five["first_record"])
    print(f"  worker / raw consumption                        {worker_rate / raw_rate:>10.1%}")

    for rate in rates:
        latency(args, directory, records, first_index, f"{prefix}r{rate:.0f}", rate)
    print(f"  (configs and worker logs in {directory})")
    return 0


def latency(args, directory: Path, records: list[bytes], first_index: dict[str, int], prefix: str,
            rate: float) -> None:
    """Wall time from producing the drift to the drift alert on the topic, at a live rate."""
    path = write_config(directory, f"live{rate:.0f}", args.bootstrap, prefix, utilization_seconds=1.0)
    config = load_config(path)
    settings = kafka_settings(config)
    # Which record makes the engine fire the first fuel-efficiency data_drift alert (file replay).
    engine = Engine(config)
    fires_at = None
    for index, record in enumerate(records[:len(records)], 1):
        event = decode(record)
        found = engine.reject(event) if type(event) is Rejection else engine.process(event)
        if index >= first_index[COVARIATE.name] and any(demo.is_catch(COVARIATE, a) for a in found):
            fires_at = index
            break
    drift_at = first_index[COVARIATE.name]
    # Only as much stream as needed: from shortly before the drift to the firing record.
    asyncio.run(ensure_topics(settings, settings.inputs + [settings.topics[r] for r in
                                                           ("alerts", "deadletter", "metrics")]
                              + [settings.topics["checkpoints"]], compacted=[settings.topics["checkpoints"]]))
    worker = Worker(path, f"live{rate:.0f}")
    try:
        asyncio.run(_latency(settings, records[:fires_at + 2000], drift_at, fires_at, rate, worker))
    finally:
        worker.stop()


async def _latency(settings, records, drift_at: int, fires_at: int, rate: float, worker: Worker) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    # Wait for the worker to own its partitions (first utilization sample with partitions).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            samples = [orjson.loads(m.value) for m in await read_topic(settings, settings.topics["metrics"])]
        except Exception:
            samples = []
        if any(s["partitions"] for s in samples):
            break
        await asyncio.sleep(0.5)
    alerts = AIOKafkaConsumer(**settings.client_kwargs(), group_id=None, fetch_max_wait_ms=20)
    await alerts.start()
    topic = settings.topics["alerts"]
    tps = [TopicPartition(topic, p) for p in await partitions_for(alerts, topic)]
    alerts.assign(tps)
    await alerts.seek_to_end(*tps)
    seen: dict[str, float] = {}

    async def watch() -> None:
        while True:
            for messages in (await alerts.getmany(timeout_ms=100)).values():
                now = time.time()
                for message in messages:
                    alert = orjson.loads(message.value)
                    if demo.is_catch(COVARIATE, alert) and "alert" not in seen:
                        seen["alert"] = now
                        seen["published"] = message.timestamp / 1000.0  # CreateTime: the worker's send

    watcher = asyncio.create_task(watch())
    producer = AIOKafkaProducer(**settings.client_kwargs(), acks="all", linger_ms=5)
    await producer.start()
    sent: dict[int, float] = {}
    started = time.monotonic()
    last_ts = None
    for index, record in enumerate(records, 1):
        role, key, ts = route(record)
        last_ts = ts if ts is not None else last_ts
        future = await producer.send(settings.topics[role], record, key=key,
                                     timestamp_ms=None if last_ts is None else round(last_ts * 1000))
        if index in (drift_at, fires_at):
            await future
            sent[index] = time.time()
        if index % 50 == 0:
            ahead = started + index / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
    await producer.flush()
    deadline = time.monotonic() + 30
    while "alert" not in seen and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    watcher.cancel()
    await producer.stop()
    await alerts.stop()
    if "alert" not in seen:
        print("  latency: no drift alert within 30 s of the last record")
        return
    print(f"  alert latency at {rate:,.0f} records/s: first drifted record produced -> drift alert on the topic "
          f"{seen['alert'] - sent[drift_at]:.2f} s ({fires_at - drift_at:,} records later, the window that fires);")
    print(f"    record that closes the firing window produced -> alert on the topic "
          f"{1000 * (seen['alert'] - sent[fires_at]):.0f} ms (the worker sent it after "
          f"{1000 * (seen['published'] - sent[fires_at]):.0f} ms)")


if __name__ == "__main__":
    sys.exit(main())
