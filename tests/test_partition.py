"""The worker's determinism without a broker: partition runners, checkpoints, the topic-replay merge.

The demo stream is split the way producers put it on Kafka (one input topic, keyed by model,
murmur2 into 4 partitions); the runners are then fed in different fetch batchings, killed and
restored, and must always publish the same alerts.
"""

from __future__ import annotations

import random

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from tripwire import demo
from tripwire.alerts import encode_alert
from tripwire.config import ConfigError, parse_config
from tripwire.engine import Engine
from tripwire.streams.merge import Merge
from tripwire.streams.outbox import fit_deadletter
from tripwire.streams.partition import PartitionRunner, decode_checkpoint
from tripwire.streams.publish import route
from tripwire.streams.topics import kafka_settings

TOPIC = "tripwire.events"
PARTITIONS = 4


def test_merge_releases_in_event_time_only_when_no_source_can_bring_anything_earlier():
    merge = Merge(["a", "b", "c"])
    merge.add("a", 1.0, 0, "a0")
    merge.add("b", 2.0, 0, "b0")
    assert list(merge.pop_ready()) == []  # c might still bring something earlier
    assert [i for _s, _o, i in merge.pop_ready(idle={"c"})] == ["a0"]  # then a is empty: b waits
    merge.add("a", 2.0, 1, "a1")  # a tie in time: the source order breaks it
    assert [i for _s, _o, i in merge.pop_ready(idle={"c"})] == ["a1"]
    assert [i for _s, _o, i in merge.pop_ready(idle={"a", "c"})] == ["b0"]
    merge.add("c", 0.5, 7, "late")  # out of order: released as it comes, never reordered within c
    assert [i for _s, _o, i in merge.pop_ready(idle={"a", "b"})] == ["late"]
    assert merge.buffered == 0


def test_merge_order_does_not_depend_on_arrival_interleaving():
    rng = random.Random(3)
    sources = {s: sorted(rng.uniform(0, 100) for _ in range(200)) for s in ("x", "y", "z")}
    reference = None
    for trial in range(20):
        merge = Merge(list(sources))
        cursors = {s: 0 for s in sources}
        out = []
        while any(cursors[s] < len(v) for s, v in sources.items()):
            source = rng.choice([s for s in sources if cursors[s] < len(sources[s])])
            for _ in range(rng.randint(1, 30)):
                if cursors[source] < len(sources[source]):
                    merge.add(source, sources[source][cursors[source]], cursors[source], (source, cursors[source]))
                    cursors[source] += 1
            idle = {s for s in sources if cursors[s] == len(sources[s])}
            out += [item for _s, _o, item in merge.pop_ready(idle)]
        out += [item for _s, _o, item in merge.drain()]
        reference = reference or out
        assert out == reference, trial
    keys = [sources[s][i] for s, i in reference]
    assert keys == sorted(keys)


def test_merge_max_buffered_bounds_memory():
    merge = Merge(["a", "b"])
    for i in range(10):
        merge.add("a", float(i), i, i)
    assert [i for _s, _o, i in merge.pop_ready(max_buffered=4)] == [0, 1, 2, 3, 4, 5]
    assert merge.buffered == 4


def kafka_layout(records: list[bytes]) -> dict[int, list[tuple[int, bytes]]]:
    """Per partition: (offset, record) as the demo producer puts them on the input topic."""
    partitioner = DefaultPartitioner()
    layout: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    for record in records:
        key, _ts = route(record)
        partition = partitioner(key, list(range(PARTITIONS)), list(range(PARTITIONS)))
        layout[partition].append((len(layout[partition]), record))
    return layout


@pytest.fixture(scope="module")
def layout(demo_stream):
    return kafka_layout(demo_stream[0])


@pytest.fixture(scope="module")
def config():
    return parse_config(demo.demo_config(), where="demo")


def feed(runner: PartitionRunner, records, rng: random.Random, checkpoint_every: int = 0):
    """Deliver the partition in random batches (a consumer's fetch sizes); return alerts and checkpoints."""
    alerts, checkpoints = [], []
    cursor = 0
    while cursor < len(records):
        batch = records[cursor:cursor + rng.randint(1, 3000)]
        cursor += len(batch)
        alerts += runner.process([o for o, _r in batch], [r for _o, r in batch]).alerts
        if checkpoint_every and runner.since_checkpoint >= checkpoint_every:
            checkpoints.append(runner.checkpoint()[0])
    return alerts, checkpoints


def test_fetch_batching_never_changes_a_partitions_alerts(layout, config, demo_references):
    busiest = max(layout, key=lambda p: len(layout[p]))
    results = set()
    for seed in range(3):
        runner = PartitionRunner(busiest, TOPIC, Engine(config, references=demo_references))
        alerts, _ = feed(runner, layout[busiest], random.Random(seed))
        results.add(tuple(encode_alert(a) for a in alerts))
    assert len(results) == 1 and len(next(iter(results))) > 5


def test_restore_from_any_checkpoint_continues_exactly(layout, config, demo_references):
    """Kill after a checkpoint, restore it, redeliver from an earlier offset: the same alert ids."""
    partition = max(layout, key=lambda p: len(layout[p]))
    records = layout[partition]
    runner = PartitionRunner(partition, TOPIC, Engine(config, references=demo_references))
    uninterrupted, checkpoints = feed(runner, records, random.Random(0), checkpoint_every=5000)
    assert len(checkpoints) >= 5
    expected = {encode_alert(a) for a in uninterrupted}
    for blob in (checkpoints[1], checkpoints[len(checkpoints) // 2]):
        document = decode_checkpoint(blob)
        restored = PartitionRunner(partition, TOPIC, Engine(config, references=demo_references))
        restored.restore(document)
        # A consumer may resume before the checkpoint: re-fetched records it covers are skipped.
        replayed = [r for r in records if r[0] > document["offset"] - 300]
        after, _ = feed(restored, replayed, random.Random(1))
        before = [a for a in uninterrupted if encode_alert(a) not in {encode_alert(x) for x in after}]
        assert {encode_alert(a) for a in after} | {encode_alert(a) for a in before} == expected
        assert {encode_alert(a) for a in after} <= expected  # re-emitted alerts are identical, ids included
        assert restored.done == runner.done


def test_partitions_together_alert_like_the_file_replay_for_every_model(layout, config, demo_references,
                                                                            demo_stream):
    """Per-partition engines differ from one global engine only in the stream-wide dead-letter rate."""
    engine = Engine(config, references=demo_references)
    file_alerts = engine.process_records(demo_stream[0]).alerts
    workers = []
    for partition, records in layout.items():
        runner = PartitionRunner(partition, TOPIC, Engine(config, references=demo_references))
        workers += feed(runner, records, random.Random(partition))[0]
    per_model = {encode_alert(a) for a in file_alerts if a["model"] != "*"}
    assert {encode_alert(a) for a in workers if a["model"] != "*"} == per_model
    assert any(a["model"] == "*" and a["kind"] == "data_quality" for a in workers)


def test_dead_letters_name_topic_partition_offset(config, demo_references):
    runner = PartitionRunner(2, TOPIC, Engine(config, references=demo_references))
    output = runner.process([41, 42], [b"\xff not json", b'{"type":"label","schema":1}'])
    entries = [orjson.loads(entry) for _key, entry in output.deadletters]
    assert [(e["topic"], e["partition"], e["offset"]) for e in entries] == [(TOPIC, 2, 41), (TOPIC, 2, 42)]
    assert entries[0]["record_hex"] == b"\xff not json".hex() and entries[1]["reason"] == "missing field 'request_id'"
    again = runner.process([41, 42, 43], [b"{}", b"{}", None])  # a re-fetch after a seek: the first two are skipped
    assert again.duplicates == 2 and again.records == 1 and runner.done == 43
    assert orjson.loads(again.deadletters[0][1])["offset"] == 43


def test_an_oversized_dead_letter_is_cut_to_fit_with_its_size_and_hash():
    import hashlib

    record = b"x" * 2_000_000
    entry = orjson.dumps({"reason": "r", "model": None, "topic": TOPIC, "partition": 0, "offset": 5,
                          "record": record.decode()})
    fitted = orjson.loads(fit_deadletter(entry, limit=100_000))
    assert len(orjson.dumps(fitted)) <= 100_000 and fitted["record_truncated"] is True
    assert fitted["record_bytes"] == len(record) and fitted["record_sha256"] == hashlib.sha256(record).hexdigest()
    assert fitted["offset"] == 5 and fitted["record"] == "x" * 50_000
    small = orjson.dumps({"reason": "r", "record": "y"})
    assert fit_deadletter(small) == small


def test_kafka_and_worker_tables_are_validated_and_the_environment_wins():
    config = parse_config({"models": [{"name": "m", "reference": "r.json"}],
                           "kafka": {"bootstrap_servers": ["k1:9092", "k2:9092"], "topics": {"alerts": "ops.alerts"}},
                           "worker": {"checkpoint_seconds": 0, "thresholds": {"cpu_percent": {"warning": 70}}}})
    assert config.kafka["topics"]["alerts"] == "ops.alerts" and config.kafka["topics"]["events"] == "tripwire.events"
    assert config.worker.checkpoint_seconds == 0.0 and config.worker.thresholds["cpu_percent"].warning == 70
    settings = kafka_settings(config, environ={"TRIPWIRE_KAFKA_BOOTSTRAP": "broker:9093",
                                               "TRIPWIRE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                               "TRIPWIRE_KAFKA_SASL_USERNAME": "monitor",
                                               "TRIPWIRE_KAFKA_SASL_PASSWORD": "s3cret",
                                               "TRIPWIRE_KAFKA_PARTITIONS": "8"})
    kwargs = settings.client_kwargs()
    assert kwargs["bootstrap_servers"] == "broker:9093" and settings.partitions == 8
    assert kwargs["sasl_mechanism"] == "PLAIN" and kwargs["sasl_plain_password"] == "s3cret"
    assert settings.events == "tripwire.events"
    for bad, key in [({"kafka": {"bootstrap": "x:1"}}, "kafka.bootstrap"),
                     ({"kafka": {"sasl_mechanism": "GSSAPI"}}, "kafka.sasl_mechanism"),
                     ({"kafka": {"topics": {"alert": "x"}}}, "kafka.topics"),
                     ({"kafka": {"topics": {"labels": "x"}}}, "one input topic"),
                     ({"worker": {"batch_size": 0}}, "worker.batch_size"),
                     ({"worker": {"thresholds": {"cpu": {"warning": 1}}}}, "worker.thresholds")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_config({"models": [{"name": "m", "reference": "r.json"}], **bad})
    with pytest.raises(ConfigError, match="TRIPWIRE_KAFKA_PARTITIONS"):
        kafka_settings(config, environ={"TRIPWIRE_KAFKA_PARTITIONS": "many"})
    with pytest.raises(ConfigError, match="sasl_username"):
        kafka_settings(config, environ={"TRIPWIRE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})


def test_route_keys_every_record_by_model():
    label = b'{"type":"label","model":"credit","ts":"2026-01-01T00:00:00Z"}'
    assert route(label) == (b"credit", 1767225600.0)
    assert route(b'{"type":"prediction","schema":1,"model":"credit"')[0] == b"credit"  # truncated
    assert route(b"not json at all") == (b"*", None)


def test_the_merge_docstring_example_holds():
    import doctest

    from tripwire.streams import merge

    assert doctest.testmod(merge).failed == 0
