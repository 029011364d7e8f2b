"""tripwire.client against real brokers: the contract, the keys, delivery, and a broker outage.

Needs the test broker (``TRIPWIRE_KAFKA_BOOTSTRAP``, started by scripts/test.sh). The outage test
starts and stops a second broker of its own with scripts/kafka.sh on ``TRIPWIRE_TEST_OUTAGE_PORT``
(default 19321).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner

from tripwire.client import AsyncClient, Client
from tripwire.events import ContractError, Label, Prediction, Rejection, decode
from tripwire.streams.topics import kafka_settings, read_topic

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("TRIPWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
OUTAGE_PORT = int(os.environ.get("TRIPWIRE_TEST_OUTAGE_PORT", "19321"))
WAIT = 120.0  # seconds; the machine is busy


def wait_for(condition: Callable[[], bool], what: str | Callable[[], str], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what if isinstance(what, str) else what()}")
        time.sleep(0.1)


def records(bootstrap: str, topic: str, at_least: int = 1) -> list:
    """The topic's records once it holds ``at_least`` of them (retries while it is created)."""
    settings = kafka_settings(broker=bootstrap)
    found: list = []

    def enough() -> bool:
        nonlocal found
        try:
            found = asyncio.run(read_topic(settings, topic))
        except Exception:  # the topic may not exist yet
            return False
        return len(found) >= at_least

    wait_for(enough, f"{at_least} records on {topic}")
    return found


# -- the contract: the engine's own rules, before anything leaves the process --------------------
def test_invalid_events_are_counted_not_sent_and_strict_mode_names_the_engine_reason():
    with Client("127.0.0.1:1", topic="never.sent", delivery_timeout_s=1) as client:
        client.log_prediction("m", 1.0, score=1.5)
        client.log_prediction("m", [1, 2])
        client.log_label("m", "r1", None)
        client.log_prediction("", 1.0)
        client.log_prediction("m", 1.0, ts=float("nan"))
        client.log_prediction("m", 1.0, features={"x": object()})
        stats = client.stats()
        assert (stats.invalid, stats.accepted) == (6, 0)
        client.strict = True
        with pytest.raises(ContractError) as error:
            client.log_prediction("m", 1.0, score=1.5)
        record = b'{"type":"prediction","schema":1,"request_id":"r","model":"m","ts":"2026-01-01T00:00:00Z",' \
                 b'"prediction":1.0,"score":1.5}'
        engine_reason = decode(record)
        assert isinstance(engine_reason, Rejection) and str(error.value) == engine_reason.reason


def test_request_ids_are_generated_unique_and_returned():
    with Client("127.0.0.1:1", topic="never.sent", delivery_timeout_s=1) as client:
        ids = [client.log_prediction("m", 1.0) for _ in range(1000)]
        assert len(set(ids)) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
        assert client.log_prediction("m", 1.0, request_id="given") == "given"
        assert client.log_label("m", "given", 2.0) == "given"


def test_events_arrive_valid_keyed_by_model_or_request_id_on_the_java_partition():
    topic = f"client.{uuid.uuid4().hex[:8]}.events"
    hot = "hot-model"
    sent: dict[str, tuple[str, str]] = {}
    with Client(BOOTSTRAP, topic=topic, key_by={hot: "request_id"}) as client:
        for i in range(200):
            model = hot if i % 2 else f"model-{i % 7}"
            # numpy scalars, as a served model returns them; NaN becomes null (a missing feature)
            rid = client.log_prediction(model, np.float64(i), features={"x": np.int64(i), "gap": float("nan")},
                                        score=np.float32(0.25), latency_ms=1.5, attributes={"group": "a"})
            sent[rid] = ("prediction", model)
            client.log_label(model, rid, float(i))
        assert client.flush(WAIT) == 0
        stats = client.stats()
    assert (stats.accepted, stats.delivered, stats.dropped, stats.invalid) == (400, 400, 0, 0)
    found = records(BOOTSTRAP, topic, 400)
    assert len(found) == 400
    partitions = sorted({r.partition for r in found} | set(range(4)))
    java = DefaultPartitioner()
    kinds = {"prediction": 0, "label": 0}
    for record in found:
        event = decode(record.value)
        assert isinstance(event, (Prediction, Label)), event
        kind, model = sent[event.request_id]
        assert event.model == model
        expected_key = (event.request_id if model == hot else model).encode()
        assert record.key == expected_key
        # the partition aiokafka / the Java producer would pick for the same key
        assert record.partition == java(record.key, partitions, partitions)
        assert record.timestamp == round(event.ts * 1000)
        if isinstance(event, Prediction):
            assert event.features == {"x": int(event.prediction), "gap": None} and event.score == 0.25
        kinds["prediction" if isinstance(event, Prediction) else "label"] += 1
    assert kinds == {"prediction": 200, "label": 200}


# -- a broker outage ---------------------------------------------------------------------------
def kafka_sh(command: str, data: Path) -> None:
    env = {**os.environ, "KAFKA_PORT": str(OUTAGE_PORT), "KAFKA_DATA": str(data), "PYTHON": sys.executable}
    done = subprocess.run(["bash", "scripts/kafka.sh", command], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"kafka.sh {command} failed:\n{done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def outage_broker(tmp_path_factory):
    """A broker of the outage tests' own; each stops it and resumes it on its data."""
    data = tmp_path_factory.mktemp("outage") / "kafka"
    kafka_sh("start", data)
    yield data
    kafka_sh("stop", data)


def test_broker_outage_never_blocks_or_raises_counts_drops_and_resumes(outage_broker):
    bootstrap = f"127.0.0.1:{OUTAGE_PORT}"
    topic = f"client.outage.{uuid.uuid4().hex[:8]}"
    client = Client(bootstrap, topic=topic, buffer_events=200, delivery_timeout_s=3)
    try:
        before = [client.log_prediction("m", float(i), features={"x": i}) for i in range(50)]
        wait_for(lambda: client.stats().delivered == 50, "the first 50 events to be delivered")

        kafka_sh("stop", outage_broker)
        during = [client.log_prediction("m", float(i), features={"x": i}) for i in range(1000)]
        # every call returned a request id: nothing raised, nothing waited for the broker
        assert len(set(during)) == 1000
        stats = client.stats()
        assert stats.accepted == 1050 and stats.dropped_buffer_full >= 800  # the buffer holds 200
        # what the buffer held is given up after the delivery timeout, and counted
        wait_for(lambda: client.stats().dropped_undelivered > 0 and client.stats().queued == 0,
                 "the buffered events to time out")
        stats = client.stats()
        assert not stats.broker_available and stats.broker_errors > 0
        assert stats.delivered + stats.dropped == 1050

        kafka_sh("resume", outage_broker)  # the broker restarts on its data: the topic is still there
        after: list[str] = []

        def service_goes_on_logging() -> bool:
            after.append(client.log_prediction("m", 1.0, features={"x": 1}, request_id=f"after-{len(after)}"))
            return client.stats().delivered >= 50 + 20

        wait_for(service_goes_on_logging, lambda: f"events sent after the outage to be delivered ({client.stats()})")
        assert client.flush(WAIT) == 0
        stats = client.stats()
        assert stats.broker_available and stats.accepted == 1050 + len(after)
    finally:
        client.close(timeout=5)
    arrived = [decode(r.value).request_id for r in records(bootstrap, topic, stats.delivered)]
    # on the topic: the events from before the outage and those the client counted as delivered
    # after it; none of the dropped ones
    assert len(arrived) == len(set(arrived)) == stats.delivered
    assert set(before) <= set(arrived) <= set(before) | set(after) and len(set(arrived) & set(after)) >= 20


# -- asyncio -----------------------------------------------------------------------------------
def test_async_client_delivers_from_the_loop_and_from_threads_on_the_same_partitions():
    topic = f"client.{uuid.uuid4().hex[:8]}.async"

    async def serve() -> tuple[list[str], object]:
        async with AsyncClient(BOOTSTRAP, topic=topic) as client:
            ids = [client.log_prediction(f"model-{i % 5}", float(i), features={"x": i}) for i in range(100)]
            # a thread pool of the application (run_in_executor) logs too
            ids += await asyncio.get_running_loop().run_in_executor(
                None, lambda: [client.log_label(f"model-{i % 5}", ids[i], float(i)) for i in range(100)])
            assert await client.flush(WAIT) == 0
            return ids, client.stats()

    ids, stats = asyncio.run(serve())
    assert (stats.accepted, stats.delivered, stats.dropped) == (200, 200, 0)
    found = records(BOOTSTRAP, topic, 200)
    partitions = sorted({r.partition for r in found} | set(range(4)))
    assert sorted(decode(r.value).request_id for r in found) == sorted(ids)
    assert all(r.partition == DefaultPartitioner()(r.key, partitions, partitions) for r in found)


def test_async_client_with_no_broker_never_blocks_the_loop_and_counts_drops():
    async def serve() -> object:
        client = AsyncClient(f"127.0.0.1:{free_port()}", topic="never.sent", buffer_events=100, delivery_timeout_s=2)
        await client.start()
        ids = [client.log_prediction("m", float(i)) for i in range(1000)]
        assert len(set(ids)) == 1000
        ticks = 0
        while client.stats().broker_errors == 0 and ticks < 10 * WAIT:  # the loop keeps running meanwhile
            await asyncio.sleep(0.1)
            ticks += 1
        await client.close(timeout=1)
        return client.stats()

    stats = asyncio.run(serve())
    assert stats.broker_errors > 0 and not stats.broker_available
    assert stats.dropped_buffer_full == 900 and stats.delivered == 0
    assert stats.dropped == 1000


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_async_client_survives_a_broker_outage_and_resumes(outage_broker):
    bootstrap = f"127.0.0.1:{OUTAGE_PORT}"
    topic = f"client.outage.async.{uuid.uuid4().hex[:8]}"

    async def until(condition: Callable[[], bool], what: Callable[[], str]) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what()}"
            await asyncio.sleep(0.1)

    async def serve() -> tuple[list[str], list[str], object]:
        async with AsyncClient(bootstrap, topic=topic, buffer_events=200, delivery_timeout_s=3) as client:
            before = [client.log_prediction("m", float(i)) for i in range(50)]
            await until(lambda: client.stats().delivered == 50, lambda: f"the first 50 events ({client.stats()})")
            await asyncio.to_thread(kafka_sh, "stop", outage_broker)  # the loop keeps running meanwhile
            during = [client.log_prediction("m", float(i)) for i in range(1000)]
            assert len(set(during)) == 1000
            await until(lambda: client.stats().dropped_undelivered > 0 and client.stats().queued == 0,
                        lambda: f"the buffered events to time out ({client.stats()})")
            stats = client.stats()
            assert stats.dropped_buffer_full >= 800 and stats.delivered + stats.dropped == 1050
            assert not stats.broker_available

            await asyncio.to_thread(kafka_sh, "resume", outage_broker)
            after: list[str] = []
            while client.stats().delivered < 50 + 20:
                after.append(client.log_prediction("m", 1.0, request_id=f"after-{len(after)}"))
                await asyncio.sleep(0.1)
                assert len(after) < 10 * WAIT, f"events after the outage are not delivered ({client.stats()})"
            assert await client.flush(WAIT) == 0
            return before, after, client.stats()

    before, after, stats = asyncio.run(serve())
    assert stats.broker_available
    arrived = [decode(r.value).request_id for r in records(bootstrap, topic, stats.delivered)]
    assert len(arrived) == len(set(arrived)) == stats.delivered
    assert set(before) <= set(arrived) <= set(before) | set(after) and len(set(arrived) & set(after)) >= 20
