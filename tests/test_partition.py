"""The worker's determinism without a broker: the event-time merge, partition runners, checkpoints.

The demo stream is split the way producers put it on Kafka (by type into three topics, keyed by
model, murmur2 into 4 partitions); the runners are then fed in different fetch interleavings,
killed and restored, and must always publish the same alerts.
"""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from tripwire.alerts import encode_alert
from tripwire.config import ConfigError, parse_config
from tripwire.engine import Engine
from tripwire.streams import demo
from tripwire.streams.merge import Merge
from tripwire.streams.partition import PartitionRunner, decode_checkpoint
from tripwire.streams.publish import route
from tripwire.streams.topics import kafka_settings

INPUTS = ["predictions", "features", "labels"]
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


def kafka_layout(records: list[bytes]) -> dict[int, list[tuple[str, int, int, bytes]]]:
    """Per partition: (topic, offset, timestamp ms, record) as the demo producer puts them on Kafka."""
    partitioner = DefaultPartitioner()
    offsets: dict[tuple[str, int], int] = {}
    layout: dict[int, list[tuple[str, int, int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    last_ts = 0.0
    for record in records:
        role, key, ts = route(record)
        last_ts = last_ts if ts is None else ts
        partition = partitioner(key, list(range(PARTITIONS)), list(range(PARTITIONS)))
        offset = offsets.get((role, partition), 0)
        offsets[(role, partition)] = offset + 1
        layout[partition].append((role, offset, round(last_ts * 1000), record))
    return layout


@pytest.fixture(scope="module")
def layout(demo_stream):
    return kafka_layout(demo_stream[0])


@pytest.fixture(scope="module")
def config():
    return parse_config(demo.demo_config(), where="demo")


def feed(runner: PartitionRunner, records, rng: random.Random, checkpoint_every: int = 0):
    """Deliver per-topic streams in random chunks (a consumer's fetch timing); yield alerts and checkpoints."""
    per_topic = {t: [r for r in records if r[0] == t] for t in INPUTS}
    cursors = {t: 0 for t in INPUTS}
    alerts, checkpoints = [], []
    while any(cursors[t] < len(per_topic[t]) for t in INPUTS):
        topic = rng.choice([t for t in INPUTS if cursors[t] < len(per_topic[t])])
        for _ in range(rng.randint(1, 400)):
            if cursors[topic] < len(per_topic[topic]):
                _t, offset, timestamp, record = per_topic[topic][cursors[topic]]
                runner.offer(topic, offset, timestamp, record)
                cursors[topic] += 1
        idle = {t for t in INPUTS if cursors[t] == len(per_topic[t])}
        alerts += runner.release(idle).alerts
        if checkpoint_every and runner.since_checkpoint >= checkpoint_every:
            checkpoints.append(runner.checkpoint()[0])
    return alerts, checkpoints


def test_fetch_timing_never_changes_a_partitions_alerts(layout, config, demo_references):
    busiest = max(layout, key=lambda p: len(layout[p]))
    results = set()
    for seed in range(3):
        runner = PartitionRunner(busiest, INPUTS, Engine(config, references=demo_references))
        alerts, _ = feed(runner, layout[busiest], random.Random(seed))
        results.add(tuple(encode_alert(a) for a in alerts))
    assert len(results) == 1 and len(next(iter(results))) > 5


def test_restore_from_any_checkpoint_continues_exactly(layout, config, demo_references):
    """Kill after a checkpoint, restore it, redeliver from an earlier offset: the same alert ids."""
    partition = max(layout, key=lambda p: len(layout[p]))
    records = layout[partition]
    runner = PartitionRunner(partition, INPUTS, Engine(config, references=demo_references))
    uninterrupted, checkpoints = feed(runner, records, random.Random(0), checkpoint_every=5000)
    assert len(checkpoints) >= 5
    expected = {encode_alert(a) for a in uninterrupted}
    for blob in (checkpoints[1], checkpoints[len(checkpoints) // 2]):
        document = decode_checkpoint(blob)
        restored = PartitionRunner(partition, INPUTS, Engine(config, references=demo_references))
        restored.restore(document)
        # The group resumes at or before the checkpoint: re-offered records it covers are skipped.
        resume = {t: max(-1, o - 300) for t, o in document["offsets"].items()}
        replayed = [r for r in records if r[1] > resume[r[0]]]
        after, _ = feed(restored, replayed, random.Random(1))
        before = [a for a in uninterrupted if encode_alert(a) not in {encode_alert(x) for x in after}]
        assert {encode_alert(a) for a in after} | {encode_alert(a) for a in before} == expected
        assert {encode_alert(a) for a in after} <= expected  # re-emitted alerts are identical, ids included
        assert restored.done == runner.done


def test_partitions_together_alert_like_the_file_replay_for_every_model(layout, config, demo_references,
                                                                            demo_stream):
    """Per-partition engines differ from one global engine only in the stream-wide dead-letter rate."""
    from tripwire.events import Rejection, decode

    engine = Engine(config, references=demo_references)
    file_alerts = []
    for record in demo_stream[0]:
        event = engine.admit(decode(record))
        file_alerts += engine.reject(event) if type(event) is Rejection else engine.process(event)
    workers = []
    for partition, records in layout.items():
        runner = PartitionRunner(partition, INPUTS, Engine(config, references=demo_references))
        workers += feed(runner, records, random.Random(partition))[0]
    per_model = {encode_alert(a) for a in file_alerts if a["model"] != "*"}
    assert {encode_alert(a) for a in workers if a["model"] != "*"} == per_model
    assert any(a["model"] == "*" and a["kind"] == "data_quality" for a in workers)


def test_dead_letters_name_topic_partition_offset(config, demo_references):
    runner = PartitionRunner(2, INPUTS, Engine(config, references=demo_references))
    runner.offer("predictions", 41, 1_795_824_000_000, b"\xff not json")
    runner.offer("labels", 7, 1_795_824_000_000, b'{"type":"label","schema":1}')
    output = runner.release(idle=set(INPUTS))
    import orjson

    entries = [orjson.loads(entry) for _key, entry in output.deadletters]
    assert [(e["topic"], e["partition"], e["offset"]) for e in entries] == [("predictions", 2, 41), ("labels", 2, 7)]
    assert entries[0]["record_hex"] == b"\xff not json".hex() and entries[1]["reason"] == "missing field 'request_id'"
    assert not runner.offer("predictions", 41, 0, b"{}")  # a redelivered duplicate is skipped


def test_kafka_and_worker_tables_are_validated_and_the_environment_wins():
    config = parse_config({"models": [{"name": "m", "reference": "r.json"}],
                           "kafka": {"bootstrap_servers": ["k1:9092", "k2:9092"], "topics": {"alerts": "ops.alerts"}},
                           "worker": {"checkpoint_seconds": 0, "thresholds": {"cpu_percent": {"warning": 70}}}})
    assert config.kafka["topics"]["alerts"] == "ops.alerts" and config.kafka["topics"]["labels"] == "tripwire.labels"
    assert config.worker["checkpoint_seconds"] == 0.0 and config.worker["thresholds"]["cpu_percent"].warning == 70
    settings = kafka_settings(config, environ={"TRIPWIRE_KAFKA_BOOTSTRAP": "broker:9093",
                                               "TRIPWIRE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                               "TRIPWIRE_KAFKA_SASL_USERNAME": "monitor",
                                               "TRIPWIRE_KAFKA_SASL_PASSWORD": "s3cret",
                                               "TRIPWIRE_KAFKA_PARTITIONS": "8"})
    kwargs = settings.client_kwargs()
    assert kwargs["bootstrap_servers"] == "broker:9093" and settings.partitions == 8
    assert kwargs["sasl_mechanism"] == "PLAIN" and kwargs["sasl_plain_password"] == "s3cret"
    assert settings.inputs == ["tripwire.predictions", "tripwire.features", "tripwire.labels"]
    for bad, key in [({"kafka": {"bootstrap": "x:1"}}, "kafka.bootstrap"),
                     ({"kafka": {"sasl_mechanism": "GSSAPI"}}, "kafka.sasl_mechanism"),
                     ({"kafka": {"topics": {"alert": "x"}}}, "kafka.topics"),
                     ({"worker": {"batch_size": 0}}, "worker.batch_size"),
                     ({"worker": {"thresholds": {"cpu": {"warning": 1}}}}, "worker.thresholds")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_config({"models": [{"name": "m", "reference": "r.json"}], **bad})
    with pytest.raises(ConfigError, match="TRIPWIRE_KAFKA_PARTITIONS"):
        kafka_settings(config, environ={"TRIPWIRE_KAFKA_PARTITIONS": "many"})
    with pytest.raises(ConfigError, match="sasl_username"):
        kafka_settings(config, environ={"TRIPWIRE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})


def test_route_keys_every_record_by_model_and_topic_by_type():
    label = b'{"type":"label","model":"credit","ts":"2026-01-01T00:00:00Z"}'
    assert route(label) == ("labels", b"credit", 1767225600.0)
    assert route(b'{"type":"prediction","schema":1,"model":"credit"')[:2] == ("predictions", b"credit")  # truncated
    assert route(b"not json at all") == ("predictions", b"*", None)


def test_the_merge_docstring_example_holds():
    import doctest

    from tripwire.streams import merge

    assert doctest.testmod(merge).failed == 0


def test_a_record_not_keyed_by_its_model_is_counted(config, demo_references):
    runner = PartitionRunner(0, INPUTS, Engine(config, references=demo_references))
    label = b'{"type":"label","schema":1,"request_id":"r","model":"credit","ts":"2026-11-28T00:00:00Z","label":1}'
    runner.offer("labels", 0, None, label, key=b"credit")
    runner.offer("labels", 1, None, label, key=b"fuel-efficiency")
    runner.offer("labels", 2, None, label)  # no key given: not checked
    assert runner.misrouted == 1
