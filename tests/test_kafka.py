"""The production path against a real broker: workers as subprocesses, topic replay, the demo loop.

Needs a Kafka broker: ``scripts/kafka.sh start`` and ``TRIPWIRE_KAFKA_BOOTSTRAP`` (default
127.0.0.1:9092). Without one every test here fails with that message; none is skipped.

The demo stream (82k records, every incident) is published once per module to an input topic named
for this run; each test runs its own consumer group with its own output topics. The disruption
tests (CPU hogs, SIGSTOP, SIGKILL, a second worker, the broker stopped) publish the stream in two
halves to a topic of their own, disrupt the worker between them, and require the same alerts, byte
for byte, as a replay of the topic: the alerts are a function of the topic's contents alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from tripwire import demo
from tripwire.alerts import encode_alert
from tripwire.cli import main
from tripwire.config import load_config
from tripwire.engine import Engine
from tripwire.events import Rejection, decode
from tripwire.reference import save_reference
from tripwire.streams.partition import decode_checkpoint
from tripwire.streams.publish import publish, route
from tripwire.streams.topic_replay import replay_topics
from tripwire.streams.topics import ensure_topics, kafka_settings, partitions_for, read_topic

BOOTSTRAP = os.environ.get("TRIPWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
RUN = uuid.uuid4().hex[:8]
# Records that break the contract in other ways than the demo's burst: bad UTF-8, empty, a tombstone.
EXTRA_BAD = [(b"credit", b"\xff\xfe not utf-8"), (b"fuel-efficiency", b""), (b"credit", None),
             (b"fuel-efficiency", b'{"type":"label","schema":1,"request_id":"x","model":"fuel-efficiency"}')]
WAIT = 150.0  # seconds a worker run may take before a test gives up


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def broker():
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe():
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=5000)
        await asyncio.wait_for(admin.start(), 15)
        try:
            await asyncio.wait_for(admin.list_topics(), 10)
        finally:
            await admin.close()

    try:
        run(probe())
        problem = None
    except Exception as error:
        problem = f"{type(error).__name__}: {error}"
    if problem:
        pytest.fail(f"no Kafka broker at {BOOTSTRAP} ({problem}). Start one with "
                    "`PYTHON=<venv>/bin/python scripts/kafka.sh start` and export TRIPWIRE_KAFKA_BOOTSTRAP.",
                    pytrace=False)
    return BOOTSTRAP


def topics_for(name: str, events: str | None = None) -> dict[str, str]:
    own = {role: f"t{RUN}.{name}.{role}" for role in ("alerts", "deadletter", "metrics", "checkpoints")}
    return {"events": events or f"t{RUN}.events", **own}


def write_config(directory: Path, name: str, *, events: str | None = None, bootstrap: str | None = None,
                 defaults: dict | None = None, **worker) -> Path:
    """A worker config for the demo's models; ``defaults``: more model settings, ``worker``: more [worker] keys."""
    settings = {"app_id": f"tripwire-test-{RUN}-{name}", "checkpoint_seconds": 0.5, "utilization_seconds": 1.0,
                "utilization_window_seconds": 4.0, "session_timeout_seconds": 6.0, "batch_size": 2000, **worker}
    lines = ["[defaults]", "performance_window = 1000"]
    lines += [f"{key} = {orjson.dumps(value).decode()}" for key, value in (defaults or {}).items()] + ["",
             '[[models]]', 'name = "fuel-efficiency"', 'reference = "fuel-efficiency.json"', "",
             '[[models]]', 'name = "credit"', 'reference = "credit.json"', "",
             '[[models]]', 'name = "triage"', 'reference = "triage.json"', "",
             "[kafka]", f'bootstrap_servers = "{bootstrap or BOOTSTRAP}"', "", "[kafka.topics]"]
    lines += [f'{role} = "{topic}"' for role, topic in topics_for(name, events).items()]
    lines += ["", "[worker]"] + [f"{key} = {orjson.dumps(value).decode()}" for key, value in settings.items()]
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def stream(broker, tmp_path_factory, demo_stream, demo_references):
    """The demo stream (plus a few other bad records) on this run's input topics; configs beside it."""
    directory = tmp_path_factory.mktemp("kafka")
    for name, reference in demo_references.items():
        save_reference(reference, directory / f"{name}.json")
    config = load_config(write_config(directory, "inputs"))
    settings = kafka_settings(config)

    started = time.monotonic()
    produce(settings, settings.events, demo_stream[0], extra=True)
    print(f"published {len(demo_stream[0]) + len(EXTRA_BAD):,} records in {time.monotonic() - started:.1f} s")
    return {"dir": directory, "config": config, "settings": settings, "records": demo_stream[0],
            "first_index": demo_stream[1]}


def produce(settings, topic: str, records: list[bytes], *, extra: bool = False) -> None:
    """``records`` to ``topic`` keyed by model (and the other bad records after them)."""
    async def go():
        await ensure_topics(settings, [topic])
        await publish(settings, records, topic=topic)
        if extra:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(**settings.client_kwargs())
            await producer.start()
            try:
                for key, value in EXTRA_BAD:  # stamped with the producer's wall clock, unlike the rest
                    await producer.send_and_wait(topic, value, key=key)
            finally:
                await producer.stop()

    run(go())


def replay_expected(settings, config, topic: str) -> dict:
    """What the workers must publish: the topic replayed with one engine per partition."""
    engines: dict[int, Engine] = {}
    alerts: list[bytes] = []
    rejected: list[tuple[str, int, int]] = []
    run(replay_topics(settings, [topic], lambda p: engines.setdefault(p, Engine(config)),
                      on_alert=lambda alert, _origin: alerts.append(encode_alert(alert)),
                      on_reject=lambda _r, _record, o: rejected.append((o["topic"], o["partition"], o["offset"]))))
    assert len(set(alerts)) == len(alerts) > 10
    return {"alerts": set(alerts), "rejected": set(rejected)}


@pytest.fixture(scope="module")
def expected(stream):
    return replay_expected(stream["settings"], stream["config"], stream["settings"].events)


# -- helpers ------------------------------------------------------------------------------------
def read(settings, topic: str, *, must_exist: bool = False) -> list:
    """The topic's records; [] while it does not exist, unless it must. A busy broker gets retries."""
    problem = None
    for _attempt in range(4):
        try:
            return run(read_topic(settings, topic))
        except Exception as error:
            problem = error
            time.sleep(1.0)
    if must_exist:
        raise AssertionError(f"could not read {topic}: {problem!r}")
    return []


def end_offsets(settings) -> dict[int, int]:
    """The end offset of every partition of the input topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def ends():
        consumer = AIOKafkaConsumer(**settings.client_kwargs(), group_id=None)
        await consumer.start()
        try:
            tps = [TopicPartition(settings.events, p) for p in await partitions_for(consumer, settings.events)]
            return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
        finally:
            await consumer.stop()

    return run(ends())


def checkpoints(settings) -> dict[int, dict]:
    """The newest checkpoint per input partition."""
    newest = {}
    for message in read(settings, settings.topics["checkpoints"]):
        try:
            document = decode_checkpoint(message.value)
        except ValueError:
            continue  # not one a worker wrote (the tampering test forges some)
        if "worker" in document:  # forged ones lack it
            newest[document["partition"]] = document
    return newest


def complete(settings, ends: dict[int, int]) -> bool:
    """Every input record is covered by a checkpoint (so processed, and its alerts on the broker)."""
    newest = checkpoints(settings)
    return all(not end or newest.get(partition, {}).get("offset", -1) >= end - 1 for partition, end in ends.items())


class Worker:
    def __init__(self, config: Path, name: str, **settings: str) -> None:
        self.log = config.with_name(f"{config.stem}-{name}-{time.monotonic_ns()}.log")
        env = {**os.environ, "TRIPWIRE_WORKER_ID": name, "PYTHONUNBUFFERED": "1",
               **{f"TRIPWIRE_WORKER_{key.upper()}": value for key, value in settings.items()}}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tripwire.cli", "worker", "--config", str(config), "--loglevel", "info"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_until(condition, what: str, workers: list[Worker], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.process.poll() is not None:
                raise AssertionError(f"worker exited with {worker.process.returncode} while waiting for {what}:\n"
                                     f"{worker.output()[-3000:]}")
        if condition():
            return
        time.sleep(0.3)
    logs = "\n".join(w.output()[-2000:] for w in workers)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")


def run_to_completion(config: Path, *workers: Worker, timeout: float = WAIT) -> None:
    settings = kafka_settings(load_config(config))
    ends = end_offsets(settings)
    wait_until(lambda: complete(settings, ends), "every input record to be checkpointed", list(workers), timeout)


def alert_records(settings) -> list[bytes]:
    return [m.value for m in read(settings, settings.topics["alerts"], must_exist=True)]


def samples(settings) -> list[dict]:
    """The workers' utilization samples on the metrics topic, oldest first."""
    return [s for s in (orjson.loads(m.value) for m in read(settings, settings.topics["metrics"]))
            if s.get("type") == "utilization"]


def owners(settings) -> dict[str, list[int]]:
    """Each worker's input partitions, as its latest sample lists them."""
    return {s["worker"]: s["partitions"] for s in samples(settings)}


def model_alerts(values: list[bytes]) -> list[bytes]:
    """Alerts from the event stream (not the workers' own infrastructure alerts, nor capacity advice)."""
    records = [(v, orjson.loads(v)) for v in values]
    return [v for v, record in records
            if record["type"] == "alert" and not record["signal"].startswith(("worker:", "checkpoint:", "partitioning"))]


# -- (a) + (b): one worker, the whole demo stream ------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(port: int, path: str) -> tuple[str, bytes]:
    from urllib.request import urlopen

    with urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.headers["Content-Type"], response.read()


@pytest.fixture(scope="module")
def single_run(stream):
    port = free_port()
    config = write_config(stream["dir"], "single", web_port=port)
    worker = Worker(config, "solo")
    started = time.monotonic()
    try:
        run_to_completion(config, worker)
        seconds = time.monotonic() - started
        settings = kafka_settings(load_config(config))
        time.sleep(1.5)  # one more utilization sample
        result = {"alerts": alert_records(settings), "dead": read(settings, settings.topics["deadletter"]),
                  "metrics": [orjson.loads(m.value) for m in read(settings, settings.topics["metrics"])],
                  "seconds": seconds, "log": worker.output(),
                  "prometheus": http_get(port, "/metrics"), "status": http_get(port, "/status.json"),
                  "page": http_get(port, "/status")}
    finally:
        worker.stop()
    print(f"single worker: whole stream in {seconds:.1f} s (including start-up)")
    return result


def test_worker_alerts_every_injected_incident(stream, expected, single_run):
    alerts = [orjson.loads(v) for v in model_alerts(single_run["alerts"])]
    first_index = stream["first_index"]
    for incident in demo.INCIDENTS:
        caught = [a for a in alerts if demo.is_catch(incident, a)]
        assert caught, f"no alert on the alerts topic for {incident.name}"
    # Exactly what the engine computes from the same partitions: nothing lost, nothing invented.
    assert set(model_alerts(single_run["alerts"])) == expected["alerts"]
    assert len(model_alerts(single_run["alerts"])) == len(expected["alerts"])  # no re-emission without a crash
    # Alerts keyed by model (capacity advice, on the same topic, by service).
    records = read(kafka_settings(load_config(stream["dir"] / "single.toml")), f"t{RUN}.single.alerts")
    assert {m.key for m in records if orjson.loads(m.value)["type"] == "alert"} <= {b"fuel-efficiency", b"credit", b"triage", b"*"}
    assert min(first_index.values()) > 0


def test_worker_dead_letters_bad_records_with_their_origin(stream, expected, single_run):
    dead = [orjson.loads(m.value) for m in single_run["dead"]]
    origins = {(d["topic"], d["partition"], d["offset"]) for d in dead}
    assert len(origins) == len(dead) == len(expected["rejected"])  # every bad record once, nothing else
    assert origins == expected["rejected"]
    bad_in_stream = sum(1 for r in stream["records"] if type(decode(r)) is Rejection)
    assert len(dead) == bad_in_stream + len(EXTRA_BAD)
    records = {(m.topic, m.partition, m.offset): m.value for m in read(stream["settings"], stream["settings"].events)}
    for entry in dead:
        assert entry["reason"]
        original = records[(entry["topic"], entry["partition"], entry["offset"])] or b""
        if "record" in entry:
            assert entry["record"].encode() == original
        else:
            assert bytes.fromhex(entry["record_hex"]) == original
    reasons = " | ".join(sorted({d["reason"].split(":")[0] for d in dead}))
    assert "not valid JSON" in reasons and "missing field 'request_id'" in reasons, reasons


def test_worker_publishes_utilization_samples(stream, single_run):
    samples = [s for s in single_run["metrics"] if s.get("worker") == "solo"]
    assert len(samples) >= 2, single_run["log"][-2000:]
    last = samples[-1]
    for key in ("cpu_percent", "host_cpu_percent", "memory_percent", "rss_bytes", "event_loop_lag_ms",
                "consumer_lag", "partitions", "records", "checkpoints"):
        assert key in last, key
    assert last["records"] == len(stream["records"]) + len(EXTRA_BAD)
    assert last["consumer_lag"] == 0 and last["partitions"] == [0, 1, 2, 3] and last["publish_failures"] == 0


def test_worker_serves_prometheus_metrics_and_the_status_board(stream, single_run):
    from prometheus_client.parser import text_string_to_metric_families

    content_type, body = single_run["prometheus"]
    assert content_type.startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    consumed = sum(v for (name, _labels), v in samples.items() if name == "tripwire_events_total")
    assert consumed == len(stream["records"]) + len(EXTRA_BAD)
    assert samples[("tripwire_records_rejected_total", ())] == len(single_run["dead"])
    status = orjson.loads(single_run["status"][1])
    assert status["worker"] == "solo" and set(status["models"]) >= {"fuel-efficiency", "credit"}
    assert status["open_alerts"] and single_run["page"][0].startswith("text/html")


# -- (c) disruptions mid-stream: the same alerts whatever happens to the worker, the machine, the broker
class Scenario:
    """A topic of its own holding the demo stream in two halves, a worker config reading it."""

    def __init__(self, stream, name: str, *, bootstrap: str | None = None, defaults: dict | None = None,
                 **worker) -> None:
        self.name = name
        self.records = stream["records"]
        self.config = write_config(stream["dir"], name, events=f"t{RUN}.{name}.events", bootstrap=bootstrap,
                                   defaults=defaults, **worker)
        self.settings = kafka_settings(load_config(self.config))
        self.half = len(self.records) // 2

    def publish_first_half(self) -> None:
        produce(self.settings, self.settings.events, self.records[:self.half])

    def publish_second_half(self) -> None:
        produce(self.settings, self.settings.events, self.records[self.half:], extra=True)

    def worker(self, name: str, **settings: str) -> Worker:
        return Worker(self.config, name, **settings)

    def wait_for_first_half(self, *workers: Worker) -> None:
        """Every record of the first half processed and covered by a checkpoint."""
        ends = end_offsets(self.settings)
        wait_until(lambda: complete(self.settings, ends), "the first half to be checkpointed", list(workers))

    def check(self, stream, expected) -> list[bytes]:
        """The worker's model alerts equal the topic's replay, byte for byte; duplicates identical."""
        values, replayed = self.check_against_replay(stream["config"])
        # The same contents as the shared topic: the same alerts, ids included.
        assert replayed["alerts"] == expected["alerts"]
        return values

    def check_against_replay(self, config) -> tuple[list[bytes], dict]:
        """The workers' model alerts equal a replay of this scenario's topic with ``config``; both returned."""
        replayed = replay_expected(self.settings, config, self.settings.events)
        for _attempt in range(10):  # a read of a busy broker can come back short: read again
            values = model_alerts(alert_records(self.settings))
            if set(values) == replayed["alerts"]:
                break
            time.sleep(2)
        assert set(values) == replayed["alerts"]
        by_id: dict[str, set[bytes]] = {}
        for value in values:
            by_id.setdefault(orjson.loads(value)["alert_id"], set()).add(value)
        assert all(len(copies) == 1 for copies in by_id.values()), "an alert id was published with different content"
        return values, replayed


def test_sigkill_mid_stream_then_restart_gives_the_same_alert_ids(stream, expected):
    # Checkpoints every 7,000 records of a partition only: the records after a partition's last
    # checkpoint are processed (their alerts published) but not covered when the worker dies.
    scenario = Scenario(stream, "killed")
    scenario.publish_first_half()
    half = end_offsets(scenario.settings)
    scenario.publish_second_half()
    ends = end_offsets(scenario.settings)
    first = scenario.worker("victim", checkpoint_seconds="3600", checkpoint_records="7000")
    try:
        wait_until(lambda: any(c["offset"] >= half[p] for p, c in checkpoints(scenario.settings).items()),
                   "a checkpoint in the second half", [first])
    finally:
        first.kill()
    assert not complete(scenario.settings, ends), "every record was covered before the kill"
    second = scenario.worker("victim")
    try:
        run_to_completion(scenario.config, second)
    finally:
        second.stop()
    assert "restored the checkpoint" in second.output()
    scenario.check(stream, expected)


def test_a_second_worker_joining_mid_stream_shares_the_partitions_and_loses_nothing(stream, expected):
    scenario = Scenario(stream, "pair")
    scenario.publish_first_half()
    one = scenario.worker("one")
    two = None
    try:
        scenario.wait_for_first_half(one)
        two = scenario.worker("two")  # a rebalance moves partitions with their checkpoints
        wait_until(lambda: {w for w, owned in owners(scenario.settings).items() if owned} == {"one", "two"},
                   "both workers to own partitions", [one, two])
        scenario.publish_second_half()
        run_to_completion(scenario.config, one, two)
    finally:
        one.stop()
        if two is not None:
            two.stop()
    scenario.check(stream, expected)


def test_a_worker_stopped_for_10_s_mid_stream_gives_the_same_alerts(stream, expected):
    scenario = Scenario(stream, "paused")
    scenario.publish_first_half()
    worker = scenario.worker("sleeper")
    try:
        scenario.wait_for_first_half(worker)
        worker.process.send_signal(signal.SIGSTOP)  # longer than its session: the group drops it
        try:
            scenario.publish_second_half()
            time.sleep(10)
        finally:
            worker.process.send_signal(signal.SIGCONT)
        run_to_completion(scenario.config, worker)
    finally:
        worker.stop()
    scenario.check(stream, expected)


@pytest.mark.timeout(900)
def test_cpu_hogs_on_every_core_change_no_alert(stream, expected):
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        scenario = Scenario(stream, "hogged", checkpoint_seconds=0.0, batch_size=300)
        scenario.publish_first_half()
        worker = scenario.worker("hogged")
        try:
            scenario.wait_for_first_half(worker)
            scenario.publish_second_half()
            run_to_completion(scenario.config, worker, timeout=3 * WAIT)
        finally:
            worker.stop()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    scenario.check(stream, expected)


@pytest.mark.timeout(900)
def test_the_broker_stopped_for_20_s_mid_stream_gives_the_same_alerts(stream, expected, tmp_path):
    """A broker of its own (stopping the shared one would take every other test with it)."""
    port = int(BOOTSTRAP.rsplit(":", 1)[1]) + 10
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_DATA": str(tmp_path / "kafka"), "PYTHON": sys.executable}
    script = str(Path(__file__).resolve().parents[1] / "scripts" / "kafka.sh")

    def kafka(command: str) -> None:
        subprocess.run(["bash", script, command], env=env, check=True, stdout=subprocess.DEVNULL, timeout=180)

    kafka("start")
    worker = None
    try:
        scenario = Scenario(stream, "outage", bootstrap=f"127.0.0.1:{port}")
        scenario.publish_first_half()
        worker = scenario.worker("survivor")
        scenario.wait_for_first_half(worker)
        kafka("stop")
        time.sleep(20)
        kafka("resume")
        scenario.publish_second_half()
        run_to_completion(scenario.config, worker, timeout=2 * WAIT)
        worker.stop()
        assert worker.process.returncode == 0, worker.output()[-3000:]
        scenario.check(stream, expected)
    finally:
        if worker is not None:
            worker.stop()
        kafka("stop")


def test_a_failed_publish_is_retried_holds_the_checkpoint_and_loses_nothing(stream, expected):
    """Alerts the broker refuses (the topic takes 200-byte records only) wait; then the topic is fixed."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    scenario = Scenario(stream, "refused")
    settings = scenario.settings
    alerts_topic = settings.topics["alerts"]

    async def admin(action):
        client = AIOKafkaAdminClient(**settings.client_kwargs())
        await client.start()
        try:
            return await action(client)
        finally:
            await client.close()

    run(admin(lambda c: c.create_topics([NewTopic(alerts_topic, 4, 1, topic_configs={"max.message.bytes": "200"})])))
    scenario.publish_first_half()
    scenario.publish_second_half()
    ends = end_offsets(settings)
    worker = scenario.worker("refused")
    try:
        def refused() -> bool:
            samples = [orjson.loads(m.value) for m in read(settings, settings.topics["metrics"])]
            return any(s.get("unpublished", 0) > 0 and s["publish_failures"] > 0 for s in samples)

        wait_until(refused, "publishes to be refused and kept", [worker])
        # No model alert is on the topic, so no checkpoint may cover a record that raised one: the two
        # partitions that carry the models (and their alerts) are held back; the rest may complete.
        assert not model_alerts(alert_records(settings))
        covered = checkpoints(settings)
        held = [p for p, end in ends.items() if end and covered.get(p, {}).get("offset", -1) < end - 1]
        assert len(held) == 2, covered
        run(admin(lambda c: c.alter_configs([ConfigResource(ConfigResourceType.TOPIC, alerts_topic,
                                                            configs={"max.message.bytes": "1048588"})])))
        run_to_completion(scenario.config, worker)
    finally:
        worker.stop()
    scenario.check(stream, expected)


def test_records_not_keyed_by_their_model_raise_partitioning_alerts(stream):
    """Records keyed by request id, and a model on a second partition: alerts with the evidence, a count."""
    from aiokafka import AIOKafkaProducer

    scenario = Scenario(stream, "misrouted")
    settings = scenario.settings
    records = stream["records"][:5000]
    credit = [r for r in records if b'"model":"credit"' in r and b'"request_id"' in r][:40]
    fuel = [r for r in records if b'"model":"fuel-efficiency"' in r][:20]
    home = partition_of(b"fuel-efficiency")

    async def go():
        await ensure_topics(settings, [settings.events])
        await publish(settings, records, topic=settings.events)
        producer = AIOKafkaProducer(**settings.client_kwargs())
        await producer.start()
        try:
            for record in credit:  # keyed by request id: spread over the partitions
                await producer.send_and_wait(settings.events, record, key=orjson.loads(record)["request_id"].encode())
            for record in fuel:  # the right key on another partition (another partitioner)
                await producer.send_and_wait(settings.events, record, key=b"fuel-efficiency", partition=(home + 1) % 4)
        finally:
            await producer.stop()

    run(go())
    # Credit's records keyed by request id sit on its own partition and wherever their keys hash to.
    credit_partitions = sorted({partition_of(b"credit")} | {partition_of(orjson.loads(r)["request_id"].encode())
                                                            for r in credit})
    worker = scenario.worker("router")
    try:
        run_to_completion(scenario.config, worker)
        # A sample taken mid-run may list some of credit's partitions: an alert per partition set found.
        expected = {("credit", tuple(credit_partitions)), ("fuel-efficiency", tuple(sorted({home, (home + 1) % 4})))}
        wait_until(lambda: expected <= {(a["evidence"]["model"], tuple(a["evidence"]["partitions"]))
                                        for a in published_alerts(settings, "split_model")},
                   "split_model alerts naming every partition of both models", [worker])
    finally:
        worker.stop()
    misrouted = published_alerts(settings, "misrouted_records")
    assert misrouted and all(a["kind"] == "data_quality" and a["model"] == "*" for a in misrouted)
    assert {k for a in misrouted for k in a["evidence"]["keys"]} <= {repr(orjson.loads(r)["request_id"].encode())
                                                                     for r in credit}
    split = published_alerts(settings, "split_model")
    assert {a["evidence"]["model"] for a in split} == {"credit", "fuel-efficiency"}
    assert all(a["segment"] == "partitions:" + ",".join(map(str, a["evidence"]["partitions"])) for a in split)
    assert max(s.get("misrouted", 0) for s in samples(settings)) == len(credit)


LABEL_TTL = 900.0  # s: longer than the demo's label lag (10 minutes at most), far shorter than its stream


def partition_of(key: bytes) -> int:
    """The input partition of ``key`` under the default (murmur2) partitioner, 4 partitions."""
    from aiokafka.partitioner import DefaultPartitioner

    return DefaultPartitioner()(key, [0, 1, 2, 3], [0, 1, 2, 3])


def published_alerts(settings, detector: str) -> list[dict]:
    return [a for a in map(orjson.loads, alert_records(settings)) if a["type"] == "alert" and a["detector"] == detector]


def run_two_workers(scenario: Scenario, *, key=None, until=lambda: True, what: str = "",
                    then=lambda workers: None) -> dict[str, list[int]]:
    """Two workers own the partitions, then the first half of the demo stream arrives (``key``: how its
    records are keyed, default their model); run until it is all processed and ``until()`` holds, then
    ``then(workers)``. Each worker's partitions (before ``then``) come back."""
    settings = scenario.settings
    run(ensure_topics(settings, [settings.events]))
    workers = [scenario.worker("one"), scenario.worker("two")]
    try:
        wait_until(lambda: {w for w, owned in owners(settings).items() if owned} == {"one", "two"},
                   "both workers to own partitions", workers)
        run(publish(settings, scenario.records[:scenario.half], topic=settings.events, key=key))
        run_to_completion(scenario.config, *workers)
        wait_until(until, what, workers)
        wait_until(lambda: sorted(p for parts in owners(settings).values() for p in parts) == [0, 1, 2, 3],
                   "the latest samples to show each partition owned once (no rebalance under way)", workers)
        owned = owners(settings)
        then(workers)
        return owned
    finally:
        for worker in workers:
            worker.stop()


def test_a_model_split_across_two_workers_raises_one_split_model_incident_and_unmatched_labels(stream):
    """Credit's labels keyed so that they land on the other worker's partition: no engine sees both sides."""
    home = partition_of(b"credit")
    other = (home + 1) % 4  # round-robin assignment gives neighbouring partitions to different workers
    label_key = next(k for k in (f"credit-labels-{i}".encode() for i in range(100)) if partition_of(k) == other)

    def keyed(record: bytes, model: bytes) -> bytes:
        return label_key if model == b"credit" and b'"type":"label"' in record else model

    def stop_the_raiser(workers: list[Worker]) -> None:
        """The worker that raised it leaves; the other, reading the samples now, raises it too (if it had not
        already, after a rebalance under load)."""
        raised = "split model: model credit arrives on partitions"
        raiser = next(w for w in workers if raised in w.output())
        raiser.stop()
        survivor = [w for w in workers if w is not raiser]
        wait_until(lambda: raised in survivor[0].output(), "the other worker's split_model", survivor)

    scenario = Scenario(stream, "split", defaults={"label_ttl_seconds": LABEL_TTL})
    settings = scenario.settings
    owned = run_two_workers(scenario, key=keyed, what="the split_model and unmatched-label alerts",
                            until=lambda: published_alerts(settings, "split_model")
                            and published_alerts(settings, "unmatched_label_rate"), then=stop_the_raiser)
    worker_of = {p: worker for worker, partitions in owned.items() for p in partitions}
    assert worker_of[home] != worker_of[other]
    # Exactly one incident: the second worker, from the sightings in the checkpoints, raised the same bytes.
    split = published_alerts(settings, "split_model")
    assert len(split) >= 2 and len({encode_alert(a) for a in split}) == 1
    first = {}  # the first offset of a credit record on each partition, read from the topic itself
    for message in read(settings, settings.events, must_exist=True):
        if route(message.value)[0] == b"credit":
            first.setdefault(message.partition, message.offset)
    assert sorted(first) == sorted([home, other])
    assert (split[0]["kind"], split[0]["model"], split[0]["signal"], split[0]["severity"]) == (
        "data_quality", "*", "partitioning:credit", "critical")
    assert split[0]["segment"] == "partitions:" + ",".join(map(str, sorted([home, other])))
    assert split[0]["evidence"] == {"model": "credit", "partitions": sorted([home, other]),
                                    "first_offsets": {str(p): offset for p, offset in first.items()}}
    # The engine of the labels' partition sees labels only: they expire unmatched. Same as a replay.
    [unmatched] = published_alerts(settings, "unmatched_label_rate")
    assert unmatched["signal"] == "labels:credit" and unmatched["evidence"]["labels_joined"] == 0
    assert unmatched["evidence"]["labels_unmatched"] >= 100
    scenario.check_against_replay(load_config(scenario.config))


def test_two_workers_on_a_clean_stream_raise_neither_split_model_nor_unmatched_labels(stream):
    scenario = Scenario(stream, "unsplit", defaults={"label_ttl_seconds": LABEL_TTL})
    settings = scenario.settings
    models = {"credit", "fuel-efficiency", "triage"}
    # Run until every model's sighting has been published in a sample, so that a split would have shown.
    run_two_workers(scenario, what="every model's sighting in a sample",
                    until=lambda: {s["model"] for sample in samples(settings) for s in sample["sightings"]} == models)
    sightings = {(s["model"], s["partition"]) for sample in samples(settings) for s in sample["sightings"]}
    assert sightings == {(m, partition_of(m.encode())) for m in models}
    for detector in ("split_model", "unmatched_label_rate", "misrouted_records"):
        assert published_alerts(settings, detector) == []


def test_a_crafted_pickle_in_the_checkpoints_topic_runs_nothing_and_is_refused(stream, expected, tmp_path):
    """Anyone who can write the checkpoints topic: a pickle, garbage, a tampered state. None is used."""
    import pickle
    import zlib

    from aiokafka import AIOKafkaProducer

    from tripwire.streams.partition import MAGIC

    class WritesAFile:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    scenario = Scenario(stream, "tampered")
    settings = scenario.settings
    scenario.publish_first_half()
    scenario.publish_second_half()
    app_id = load_config(scenario.config).worker.app_id
    forged = [pickle.dumps(WritesAFile()), b"\x00garbage",
              MAGIC + zlib.compress(orjson.dumps({"format": 2, "offset": 10**9, "state": {"models": "x"}}))]

    async def forge():
        await ensure_topics(settings, [settings.topics["checkpoints"]], compacted=[settings.topics["checkpoints"]])
        producer = AIOKafkaProducer(**settings.client_kwargs())
        await producer.start()
        try:
            for partition in range(4):
                for value in forged:
                    await producer.send_and_wait(settings.topics["checkpoints"], value,
                                                 key=f"{app_id}/{partition}".encode(), partition=partition)
        finally:
            await producer.stop()

    run(forge())
    worker = scenario.worker("target")
    try:
        run_to_completion(scenario.config, worker)
    finally:
        worker.stop()
    assert not (tmp_path / "pwned").exists()
    refused = [orjson.loads(v) for v in alert_records(settings)]
    refused = [a for a in refused if a["type"] == "alert" and a["detector"] == "checkpoint_refused"]
    assert {a["signal"] for a in refused} == {f"checkpoint:{app_id}/{p}" for p in range(4)}
    assert all(a["kind"] == "infrastructure" and a["evidence"]["reason"] for a in refused)
    assert "refused the checkpoint record" in worker.output()
    scenario.check(stream, expected)  # it started fresh from the start of the topic: the same alerts


# -- (e) topic replay = file replay ---------------------------------------------------------------
def test_topic_replay_equals_file_replay(stream, tmp_path, capsys):
    records = stream["records"]
    topic = f"t{RUN}.replay"
    settings = stream["settings"]
    assert main(["demo", "--broker", BOOTSTRAP, "--topic", topic]) == 0  # the demo stream, seed 7
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(records) + b"\n")
    config = stream["dir"] / "inputs.toml"
    assert main(["replay", str(events), "--config", str(config), "--out", str(tmp_path / "file.jsonl"),
                 "--no-progress"]) == 0
    assert main(["replay", "--topic", topic, "--config", str(config), "--out", str(tmp_path / "topic.jsonl"),
                 "--alerts-topic", f"{topic}.backtest"]) == 0
    from_file = (tmp_path / "file.jsonl").read_bytes()
    assert from_file.count(b"\n") > 10
    assert (tmp_path / "topic.jsonl").read_bytes() == from_file
    dead = [orjson.loads(line) for line in (tmp_path / "topic.deadletter.jsonl").read_bytes().splitlines()]
    assert len(dead) == sum(1 for r in records if type(decode(r)) is Rejection)
    assert all(d["topic"] == topic and d["offset"] >= 0 for d in dead)
    published = read(settings, f"{topic}.backtest")
    assert sorted(m.value for m in published) == sorted(from_file.splitlines())

    # A time range: the records before TO, as the file's prefix before the first event at or after TO.
    to = "2026-11-28T00:25:00Z"
    prefix = []
    for record in records:
        event = decode(record)
        if type(event) is not Rejection and event.ts >= 1_795_825_500.0:
            break
        prefix.append(record)
    (tmp_path / "prefix.jsonl").write_bytes(b"\n".join(prefix) + b"\n")
    assert main(["replay", str(tmp_path / "prefix.jsonl"), "--config", str(config), "--out",
                 str(tmp_path / "prefix-file.jsonl"), "--no-progress"]) == 0
    assert main(["replay", "--topic", topic, "--to", to, "--config", str(config), "--out",
                 str(tmp_path / "prefix-topic.jsonl")]) == 0
    assert (tmp_path / "prefix-topic.jsonl").read_bytes() == (tmp_path / "prefix-file.jsonl").read_bytes()
    # An offset range that is empty, and refusing to write a backtest into the live alerts topic.
    assert main(["replay", "--topic", topic, "--from", "999999999", "--config", str(config), "--out",
                 str(tmp_path / "none.jsonl")]) == 0
    assert (tmp_path / "none.jsonl").read_bytes() == b""
    assert main(["replay", "--topic", topic, "--config", str(config), "--alerts-topic",
                 settings.topics["alerts"]]) == 2
    capsys.readouterr()


def test_demo_publishes_and_tail_prints_one_line_per_alert(stream, expected, single_run, capsys):
    config = stream["dir"] / "single.toml"
    capsys.readouterr()
    # The topic as the stopped worker left it: its capacity advice, on a timer, may have grown after
    # single_run read the topic and before the worker stopped.
    on_topic = alert_records(kafka_settings(load_config(config)))
    # (the limit, not the idle time, ends it: a busy machine may take seconds to fetch the first alert)
    assert main(["tail", "--config", str(config), "--from-beginning", "--limit", str(len(on_topic)),
                 "--idle-exit", "300"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(on_topic)
    alerts = [orjson.loads(v) for v in on_topic if orjson.loads(v).get("type") == "alert"]
    assert sorted(line.rsplit("[", 1)[-1].rstrip("]") for line in lines if "  capacity " not in line) == sorted(
        a["alert_id"][:12] for a in alerts)
    assert any("firing" in line and "data_drift" in line and "fuel-efficiency" in line for line in lines)


# -- the live status page, in a real headless browser ---------------------------------------------
def test_status_page_shows_the_demo_incidents_and_updates_without_a_reload(stream):
    from playwright.sync_api import sync_playwright

    port = free_port()
    config = write_config(stream["dir"], "page", web_port=port, batch_size=200)
    worker = Worker(config, "page")
    try:
        wait_until(lambda: _reachable(port), "the status page to be served", [worker], timeout=60)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            navigations = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))
            page.goto(f"http://127.0.0.1:{port}/status")
            page.wait_for_selector("section.model", timeout=30_000)
            page.evaluate("window.__loadedOnce = true")
            first_update = page.inner_text("#updated")
            # The open incidents of the demo: covariate drift on fuel-efficiency, the fairness gap and
            # the concept drift on credit (the latency spike and the malformed burst have resolved).
            page.wait_for_function(
                """() => {
                    const rows = [...document.querySelectorAll('#open-alerts tr.alert-row')].map(r => r.innerText);
                    return rows.some(t => t.includes('data_drift') && t.includes('fuel-efficiency'))
                        && rows.some(t => t.includes('fairness') && t.includes('credit'))
                        && rows.some(t => (t.includes('concept_drift') || t.includes('performance')) && t.includes('credit'));
                }""", timeout=WAIT * 1000)
            page.wait_for_function(f"document.querySelector('#updated').innerText !== {first_update!r}", timeout=10_000)
            assert page.evaluate("window.__loadedOnce") is True, "the page was reloaded"
            assert len(navigations) == 1
            assert int(page.inner_text("#open-count")) == page.locator("#open-alerts tr.alert-row").count() > 0
            assert page.locator("section.model").count() >= 2
            page.screenshot(path=str(stream["dir"] / "status.png"), full_page=True)
            browser.close()
    finally:
        worker.stop()


CHROMIUM = os.environ.get("TRIPWIRE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _reachable(port: int) -> bool:
    try:
        return http_get(port, "/status.json")[0].startswith("application/json")
    except OSError:
        return False
