"""The production path against a real broker: workers as subprocesses, topic replay, the demo loop.

Needs a Kafka broker: ``scripts/kafka.sh start`` and ``TRIPWIRE_KAFKA_BOOTSTRAP`` (default
127.0.0.1:9092). Without one every test here fails with that message; none is skipped.

The demo stream (82k records, every incident) is published once per module to three input topics
named for this run; each test runs its own consumer group with its own output topics.
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

from tripwire.alerts import encode_alert
from tripwire.config import load_config
from tripwire.engine import Engine
from tripwire.events import Rejection, decode
from tripwire.reference import save_reference
from tripwire.streams import demo
from tripwire.streams.cli import main
from tripwire.streams.partition import decode_checkpoint
from tripwire.streams.publish import publish
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


def topics_for(name: str) -> dict[str, str]:
    shared = {role: f"t{RUN}.{role}" for role in ("predictions", "features", "labels")}
    own = {role: f"t{RUN}.{name}.{role}" for role in ("alerts", "deadletter", "metrics", "checkpoints")}
    return {**shared, **own}


def write_config(directory: Path, name: str, **worker) -> Path:
    settings = {"app_id": f"tripwire-test-{RUN}-{name}", "checkpoint_seconds": 0.5, "utilization_seconds": 1.0,
                "utilization_window_seconds": 4.0, "merge_idle_ms": 200, "session_timeout_seconds": 6.0,
                "batch_size": 500, **worker}
    lines = ["[defaults]", "performance_window = 1000", "",
             '[[models]]', 'name = "fuel-efficiency"', 'reference = "fuel-efficiency.json"', "",
             '[[models]]', 'name = "credit"', 'reference = "credit.json"', "",
             '[[models]]', 'name = "triage"', 'reference = "triage.json"', "",
             "[kafka]", f'bootstrap_servers = "{BOOTSTRAP}"', "", "[kafka.topics]"]
    lines += [f'{role} = "{topic}"' for role, topic in topics_for(name).items()]
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

    async def produce():
        await ensure_topics(settings, settings.inputs)
        await publish(settings, demo_stream[0])
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        for key, value in EXTRA_BAD:
            await producer.send_and_wait(settings.topics["predictions"], value, key=key)
        await producer.stop()

    started = time.monotonic()
    run(produce())
    print(f"published {len(demo_stream[0]) + len(EXTRA_BAD):,} records in {time.monotonic() - started:.1f} s")
    return {"dir": directory, "config": config, "settings": settings, "records": demo_stream[0],
            "first_index": demo_stream[1]}


@pytest.fixture(scope="module")
def expected(stream):
    """What the workers must publish: the input topics replayed with one engine per partition."""
    engines: dict[int, Engine] = {}
    alerts: list[bytes] = []
    rejected: list[tuple[str, int, int]] = []
    config = stream["config"]
    run(replay_topics(stream["settings"], stream["settings"].inputs,
                      lambda p: engines.setdefault(p, Engine(config)),
                      on_alert=lambda alert, _origin: alerts.append(encode_alert(alert)),
                      on_reject=lambda _r, _record, o: rejected.append((o["topic"], o["partition"], o["offset"]))))
    assert len(set(alerts)) == len(alerts) > 10
    return {"alerts": set(alerts), "rejected": set(rejected)}


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


def end_offsets(settings) -> dict[tuple[str, int], int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def ends():
        consumer = AIOKafkaConsumer(**settings.client_kwargs(), group_id=None)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in settings.inputs for p in await partitions_for(consumer, t)]
            return {(tp.topic, tp.partition): offset for tp, offset in (await consumer.end_offsets(tps)).items()}
        finally:
            await consumer.stop()

    return run(ends())


def checkpoints(settings) -> dict[int, dict]:
    """The newest checkpoint per input partition."""
    newest = {}
    for message in read(settings, settings.topics["checkpoints"]):
        document = decode_checkpoint(message.value)
        newest[document["partition"]] = document
    return newest


def complete(settings, ends: dict[tuple[str, int], int]) -> bool:
    """Every input record is covered by a checkpoint (so processed, and its alerts flushed)."""
    newest = checkpoints(settings)
    for (topic, partition), end in ends.items():
        if end and newest.get(partition, {}).get("offsets", {}).get(topic, -1) < end - 1:
            return False
    return True


class Worker:
    def __init__(self, config: Path, name: str) -> None:
        self.log = config.with_name(f"{config.stem}-{name}-{time.monotonic_ns()}.log")
        env = {**os.environ, "TRIPWIRE_WORKER_ID": name, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tripwire.streams.cli", "worker", "--config", str(config), "--loglevel", "info"],
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


def run_to_completion(stream, config: Path, *workers: Worker) -> None:
    settings = kafka_settings(load_config(config))
    ends = end_offsets(stream["settings"])
    wait_until(lambda: complete(settings, ends), "every input record to be checkpointed", list(workers))


def alert_records(settings) -> list[bytes]:
    return [m.value for m in read(settings, settings.topics["alerts"], must_exist=True)]


def model_alerts(values: list[bytes]) -> list[bytes]:
    """Alerts from the event stream (not the workers' own infrastructure alerts)."""
    return [v for v in values if not orjson.loads(v)["signal"].startswith("worker:")]


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
        run_to_completion(stream, config, worker)
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
    # Keyed by model.
    assert {m.key for m in read(kafka_settings(load_config(stream["dir"] / "single.toml")),
                                 f"t{RUN}.single.alerts")} <= {b"fuel-efficiency", b"credit", b"triage", b"*"}
    assert min(first_index.values()) > 0


def test_worker_dead_letters_bad_records_with_their_origin(stream, expected, single_run):
    dead = [orjson.loads(m.value) for m in single_run["dead"]]
    origins = {(d["topic"], d["partition"], d["offset"]) for d in dead}
    assert len(origins) == len(dead) == len(expected["rejected"])  # every bad record once, nothing else
    assert origins == expected["rejected"]
    bad_in_stream = sum(1 for r in stream["records"] if type(decode(r)) is Rejection)
    assert len(dead) == bad_in_stream + len(EXTRA_BAD)
    records = {(m.topic, m.partition, m.offset): m.value
               for t in stream["settings"].inputs for m in read(stream["settings"], t)}
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
    assert last["consumer_lag"] == 0 and last["partitions"] == [0, 1, 2, 3] and last["misrouted"] == 0


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


# -- (c) SIGKILL mid-stream ----------------------------------------------------------------------
def test_sigkill_mid_stream_then_restart_gives_the_same_alert_ids(stream, expected):
    config = write_config(stream["dir"], "killed")
    settings = kafka_settings(load_config(config))
    ends = end_offsets(stream["settings"])
    first = Worker(config, "victim")
    try:
        wait_until(lambda: len(checkpoints(settings)) >= 1, "a first checkpoint", [first], timeout=60)
    finally:
        first.kill()
    assert not complete(settings, ends), "the worker finished before it could be killed mid-stream"
    before = model_alerts(alert_records(settings))
    second = Worker(config, "victim")
    try:
        wait_until(lambda: complete(settings, ends), "the restarted worker to finish", [second])
    finally:
        second.stop()
    assert "restored the checkpoint" in second.output()
    after = model_alerts(alert_records(settings))
    assert set(after) == expected["alerts"]
    ids = {orjson.loads(v)["alert_id"] for v in after}
    assert ids == {orjson.loads(v)["alert_id"] for v in expected["alerts"]}
    assert len(before) < len(expected["alerts"])  # it really was killed before the end


# -- (d) two workers in one consumer group -------------------------------------------------------
def test_two_workers_in_one_group_share_the_partitions_and_lose_nothing(stream, expected):
    config = write_config(stream["dir"], "pair")
    settings = kafka_settings(load_config(config))
    one = Worker(config, "one")
    two = None
    try:
        wait_until(lambda: len(checkpoints(settings)) >= 1, "the first worker to start", [one], timeout=60)
        two = Worker(config, "two")  # joins mid-stream: a rebalance moves partitions with their checkpoints
        run_to_completion(stream, config, one, two)
        wait_until(lambda: {s["worker"] for s in (orjson.loads(m.value) for m in
                                                   read(settings, settings.topics["metrics"])) if s["partitions"]}
                   == {"one", "two"}, "both workers to own partitions", [one, two], timeout=30)
    finally:
        one.stop()
        if two is not None:
            two.stop()
    values = model_alerts(alert_records(settings))
    assert set(values) == expected["alerts"]
    by_id: dict[str, set[bytes]] = {}
    for value in values:
        by_id.setdefault(orjson.loads(value)["alert_id"], set()).add(value)
    assert all(len(copies) == 1 for copies in by_id.values()), "an alert id was published with different content"


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
    assert main(["tail", "--config", str(config), "--from-beginning", "--idle-exit", "1.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(single_run["alerts"])
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
