"""A sharded model on the real broker: 8 partitions keyed by request_id, 1 and 2 workers, each stage killed.

The alerts the workers' merge stages publish must equal ``tripwire replay --partitions 8`` of the
same events byte for byte, whatever the number of workers and after a SIGKILL of a worker (its
partitions' runners and its merge stage die with it) and a restart. Waits are on real conditions:
every input record covered by a checkpoint, then every summary covered by a merge checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from tests.test_kafka import (  # noqa: F401  (broker is a fixture)
    BOOTSTRAP,
    RUN,
    Worker,
    alert_records,
    broker,
    end_offsets,
    model_alerts,
    read,
    run,
    wait_until,
)
from tripwire.cli import main
from tripwire.config import ConfigError, load_config
from tripwire.events import Rejection, decode
from tripwire.reference import save_reference
from tripwire.streams.partition import decode_checkpoint
from tripwire.streams.publish import publish
from tripwire.streams.topics import ensure_topics, kafka_settings, partitions_for

PARTITIONS = 8
MINUTES = 26  # of the demo stream: the latency spike (minute 10) and the covariate drift (minute 20)


def write_config(directory: Path, name: str, events: str, **worker: object) -> Path:
    settings = {"app_id": f"tripwire-shard-{RUN}-{name}", "checkpoint_seconds": 0.5, "utilization_seconds": 1.0,
                "session_timeout_seconds": 6.0, "batch_size": 2000, **worker}
    lines = ["[defaults]", "window_seconds = 120", "sharded = true", "min_samples = 50", "",
             "[[models]]", 'name = "fuel-efficiency"', f'reference = "{directory / "fuel-efficiency.json"}"', "",
             "[[models]]", 'name = "credit"', f'reference = "{directory / "credit.json"}"', "",
             "[kafka]", f'bootstrap_servers = "{BOOTSTRAP}"', f"partitions = {PARTITIONS}", "", "[kafka.topics]",
             f'events = "{events}"']
    lines += [f'{role} = "t{RUN}.shard.{name}.{role}"' for role in
              ("alerts", "deadletter", "metrics", "checkpoints", "summaries")]
    lines += ["", "[worker]"] + [f"{key} = {orjson.dumps(value).decode()}" for key, value in settings.items()]
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def sharded(broker, tmp_path_factory, demo_stream, demo_references):
    """The two shardable demo models' first minutes on an 8-partition topic keyed by request_id; the replay."""
    from tripwire import demo

    directory = tmp_path_factory.mktemp("shard")
    for name in ("fuel-efficiency", "credit"):
        save_reference(demo_references[name], directory / f"{name}.json")
    until = demo.START + MINUTES * 60
    records = []
    for record in demo_stream[0]:
        event = decode(record)  # (the demo's malformed burst has no request_id to key by: left out)
        if type(event) is not Rejection and event.model in ("fuel-efficiency", "credit") and event.ts < until:
            records.append(record)
    events_file = directory / "events.jsonl"
    events_file.write_bytes(b"".join(r + b"\n" for r in records))
    topic = f"t{RUN}.shard.events"
    config = write_config(directory, "inputs", topic)
    settings = kafka_settings(load_config(config))

    produce_by_request_id(settings, records)
    out = directory / "replay.jsonl"
    assert main(["replay", str(events_file), "--config", str(config), "--partitions", str(PARTITIONS),
                 "--out", str(out), "--no-progress"]) == 0
    expected = set(model_alerts([line for line in out.read_bytes().splitlines() if line]))
    assert len(expected) > 10
    return {"dir": directory, "topic": topic, "records": records, "expected": expected}


def produce_by_request_id(settings, records: list[bytes]) -> None:
    async def go():
        await ensure_topics(settings, [settings.events])
        await publish(settings, records, key=lambda record, _model: orjson.loads(record)["request_id"].encode())

    run(go())


def checkpointed(settings, prefix: str) -> dict[int, int]:
    """The newest checkpoint offset per partition, of the checkpoints keyed ``<prefix>/<partition>``."""
    newest: dict[int, int] = {}
    prefix = f"{prefix}/".encode()
    for message in read(settings, settings.topics["checkpoints"]):
        if message.key and message.key.startswith(prefix):
            document = decode_checkpoint(message.value)
            newest[document["partition"]] = max(newest.get(document["partition"], -1), document["offset"])
    return newest


def summary_ends(settings) -> dict[int, int]:
    """The end offset of every partition of the summaries topic that holds any."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def ends():
        consumer = AIOKafkaConsumer(**settings.client_kwargs(), group_id=None)
        await consumer.start()
        try:
            topic = settings.topics["summaries"]
            tps = [TopicPartition(topic, p) for p in await partitions_for(consumer, topic)]
            return {tp.partition: end for tp, end in (await consumer.end_offsets(tps)).items() if end}
        finally:
            await consumer.stop()

    try:
        return run(ends())
    except ConfigError:  # the topic does not exist yet (no worker created it): nothing summarised
        return {}


def merged(settings, app_id: str, inputs: dict[int, int]) -> bool:
    """Every input record checkpointed (so its summaries published), and every summary merged and checkpointed."""
    done = checkpointed(settings, app_id)
    if not all(done.get(p, -1) >= end - 1 for p, end in inputs.items()):
        return False
    ends = summary_ends(settings)
    done = checkpointed(settings, f"{app_id}-merge")
    return bool(ends) and all(done.get(p, -1) >= end - 1 for p, end in ends.items())


def worker_config(sharded, name: str, **worker: object) -> tuple[Path, object]:
    config = write_config(sharded["dir"], name, sharded["topic"], **worker)
    return config, kafka_settings(load_config(config))


def check(settings, expected: set[bytes]) -> None:
    for _attempt in range(10):  # a read of a busy broker can come back short: read again
        values = model_alerts(alert_records(settings))
        if set(values) == expected:
            break
        time.sleep(2)
    assert set(values) == expected
    by_id: dict[str, set[bytes]] = {}
    for value in values:
        by_id.setdefault(orjson.loads(value)["alert_id"], set()).add(value)
    assert all(len(copies) == 1 for copies in by_id.values()), "an alert id was published with different content"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("count", [1, 2])
def test_workers_merge_a_sharded_model_as_the_partitioned_replay(sharded, count):
    config, settings = worker_config(sharded, f"w{count}")
    inputs = end_offsets(settings)
    assert len(inputs) == PARTITIONS and all(inputs.values())
    workers = [Worker(config, f"shard{count}-{i}") for i in range(count)]
    try:
        wait_until(lambda: merged(settings, load_config(config).worker.app_id, inputs),
                   "every summary merged", workers, timeout=600)
    finally:
        for worker in workers:
            worker.stop()
    check(settings, sharded["expected"])


@pytest.mark.timeout(900)
def test_sigkill_of_the_workers_and_their_merge_stages_then_restart_loses_nothing(sharded):
    """Both workers (input runners and merge stages) killed after the first half, restarted for the second.

    Before the kill, checkpoints every 1,000 records of a partition (and 1,000 summaries) only: at
    the kill, records and summaries are processed (their outputs published) but not covered.
    """
    topic = f"t{RUN}.shard.killed.events"
    config = write_config(sharded["dir"], "killed", topic)
    settings = kafka_settings(load_config(config))
    app_id = load_config(config).worker.app_id
    records, half = sharded["records"], len(sharded["records"]) // 2
    produce_by_request_id(settings, records[:half])
    inputs = end_offsets(settings)
    sparse = {"checkpoint_seconds": "3600", "checkpoint_records": "1000"}
    first = [Worker(config, "victim-0", **sparse), Worker(config, "victim-1", **sparse)]
    try:
        wait_until(lambda: len(model_alerts(alert_records(settings))) >= 3, "merged alerts of the first half", first,
                   timeout=600)
    finally:
        for worker in first:
            worker.kill()
    assert not merged(settings, app_id, inputs), "everything was covered before the kill"
    produce_by_request_id(settings, records[half:])
    inputs = end_offsets(settings)
    second = [Worker(config, "victim-0"), Worker(config, "victim-1")]
    try:
        wait_until(lambda: merged(settings, app_id, inputs), "every summary merged after the restart", second,
                   timeout=600)
    finally:
        for worker in second:
            worker.stop()
    assert any("restored the checkpoint" in w.output() for w in second)
    check(settings, sharded["expected"])
    values = model_alerts(alert_records(settings))
    print(f"{len(values) - len(set(values))} merged alerts published again after the kill (same bytes)")


@pytest.mark.timeout(1500)
def test_sigkill_of_a_merge_only_then_an_input_only_worker_then_restart_loses_nothing(sharded):
    """[worker] stages apart: an input-only and a merge-only worker, each killed mid-stream and restarted.

    The merge-only worker is killed after its first merged alerts (its stage checkpoints every 1,000
    summaries only: nothing covered) and restarted while the input-only worker goes on; then, once the
    restarted merge stage published alerts it had not, the input-only worker is killed (checkpoints
    every 1,000 records of a partition) and restarted. The alerts must still be the partitioned replay's.
    """
    topic = f"t{RUN}.shard.stages.events"
    config = write_config(sharded["dir"], "stages", topic)
    settings = kafka_settings(load_config(config))
    app_id = load_config(config).worker.app_id
    records, half = sharded["records"], len(sharded["records"]) // 2
    produce_by_request_id(settings, records[:half])
    sparse = {"checkpoint_seconds": "3600", "checkpoint_records": "1000"}
    inputs = Worker(config, "input-victim", stages="input", **sparse)
    workers = [inputs, Worker(config, "merge-victim", stages="merge", **sparse)]
    try:
        wait_until(lambda: len(model_alerts(alert_records(settings))) >= 3, "merged alerts of the first half", workers,
                   timeout=600)
        workers.pop().kill()
        assert not merged(settings, app_id, end_offsets(settings)), "everything was covered before the merge kill"
        seen = len(set(model_alerts(alert_records(settings))))
        workers.append(Worker(config, "merge-again", stages="merge"))
        produce_by_request_id(settings, records[half:])
        wait_until(lambda: len(set(model_alerts(alert_records(settings)))) > seen,
                   "the restarted merge stage's first new alert", workers, timeout=600)
        workers.remove(inputs)
        inputs.kill()
        ends = end_offsets(settings)
        assert not merged(settings, app_id, ends), "everything was covered before the input kill"
        workers.append(Worker(config, "input-again", stages="input"))
        wait_until(lambda: merged(settings, app_id, ends), "every summary merged after both restarts", workers,
                   timeout=600)
    finally:
        for worker in workers:
            worker.stop()
    check(settings, sharded["expected"])
    samples = [orjson.loads(m.value) for m in read(settings, settings.topics["metrics"], must_exist=True)]
    merge_only = [s for s in samples if s.get("type") == "utilization" and s["worker"].startswith("merge-")]
    assert merge_only and all(s["partitions"] == [] for s in merge_only), "a merge-only worker consumed input"
    assert any(s["partitions"] for s in samples if s.get("type") == "utilization" and s["worker"].startswith("input-"))
    values = model_alerts(alert_records(settings))
    print(f"{len(values) - len(set(values))} merged alerts published again after the two kills (same bytes)")
