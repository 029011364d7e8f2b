"""A checkpoint read back is plain data: garbage or a crafted pickle is refused with a reason.

Unit level (no broker): the record goes through the same reader the worker uses
(:func:`decode_checkpoint`), then :meth:`PartitionRunner.restore` / :meth:`Engine.restore`.
"""

from __future__ import annotations

import base64
import pickle
import zlib

import orjson
import pytest

from tripwire import demo
from tripwire.alerts import encode_alert
from tripwire.config import parse_config
from tripwire.engine import Engine
from tripwire.events import decode
from tripwire.streams.partition import MAGIC, PartitionRunner, decode_checkpoint

TOPIC = "tripwire.events"


class WritesAFile:
    """Unpickling this creates the file: the kind of payload found in the checkpoints topic."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def config():
    return parse_config(demo.demo_config(), where="demo")


@pytest.fixture(scope="module")
def halfway(config, demo_stream, demo_references):
    """An engine fed the first half of the demo stream, its checkpoint, and the second half."""
    records = demo_stream[0]
    half = len(records) // 2
    engine = Engine(config, references=demo_references)
    for record in records[:half]:
        engine.handle(decode(record))
    assert any(monitor.change for monitor in engine.monitors.values())  # ADWIN state is in there
    return engine.state(), records[half:]


def checkpoint_record(state) -> bytes:
    document = {"format": 2, "topic": TOPIC, "partition": 0, "offset": 41, "state": state}
    return MAGIC + zlib.compress(orjson.dumps(document))


def alerts_after(engine: Engine, records) -> list[bytes]:
    return [encode_alert(alert) for record in records for alert in engine.handle(decode(record))]


def with_pickled_change_state(state, payload: str):
    state = orjson.loads(orjson.dumps(state))
    monitor = next(m for m in state["models"].values() if m["change"])
    stream = next(iter(monitor["change"]))
    monitor["change"][stream]["state"] = payload
    return state


def test_crafted_pickle_in_a_checkpoint_runs_nothing_and_changes_nothing(tmp_path, config, demo_references, halfway):
    state, rest = halfway
    payload = base64.b64encode(pickle.dumps(WritesAFile(tmp_path / "control"))).decode()
    pickle.loads(base64.b64decode(payload)).close()
    assert (tmp_path / "control").exists()  # the payload is live when unpickled

    target = tmp_path / "pwned"
    record = checkpoint_record(with_pickled_change_state(state, base64.b64encode(pickle.dumps(WritesAFile(target)))
                                                         .decode()))
    document = decode_checkpoint(record)  # the reader only parses JSON
    engine = Engine(config, references=demo_references)
    runner = PartitionRunner(0, TOPIC, engine)
    fresh = orjson.dumps(engine.state())
    with pytest.raises(ValueError, match=r"model '.+': .*no pickles"):
        runner.restore(document)
    assert not target.exists()
    assert orjson.dumps(engine.state()) == fresh  # refused whole: not half-restored
    assert runner.done == -1

    # The runner carries on as a fresh one would, with the same alerts.
    assert alerts_after(engine, rest) == alerts_after(Engine(config, references=demo_references), rest)


def test_a_good_checkpoint_still_restores_exactly(config, demo_references, halfway):
    state, rest = halfway
    engine = Engine(config, references=demo_references)
    engine.restore(decode_checkpoint(checkpoint_record(state))["state"])
    uninterrupted = Engine(config, references=demo_references)
    uninterrupted.restore(state)
    assert alerts_after(engine, rest) == alerts_after(uninterrupted, rest)


@pytest.mark.parametrize("record,reason", [
    (b"\x80\x04\x95garbage", "not a tripwire checkpoint"),
    (MAGIC + b"\x00\x01 not zlib", "does not decode"),
    (MAGIC + zlib.compress(b"{not json"), "does not decode"),
    (MAGIC + zlib.compress(b"[1, 2, 3]"), "JSON object"),
    (MAGIC + zlib.compress(pickle.dumps({"format": 2})), "does not decode"),
    (MAGIC + zlib.compress(orjson.dumps({"format": 1, "offset": 3, "state": {}})), "format 2"),
    (MAGIC + zlib.compress(orjson.dumps({"format": 2, "offset": "3", "state": {}})), "integer 'offset'"),
])
def test_garbage_records_are_refused_by_the_reader(record, reason):
    with pytest.raises(ValueError, match=reason):
        decode_checkpoint(record)


@pytest.mark.parametrize("mutate,reason", [
    (lambda d: d.update(offset="all"), "offset"),
    (lambda d: d.update(state=None), "unreadable engine state"),
    (lambda d: d.update(state={"counts": [1, 2]}), "unreadable engine state"),
    (lambda d: d["state"]["models"].update(
        {name: {"window": 7} for name in d["state"]["models"]}), "model '"),
    (lambda d: d["state"].update(counts=[1, 2, 3, 4, 5], times="x"), "unreadable engine state"),
])
def test_garbage_documents_are_refused_whole(mutate, reason, config, demo_references, halfway):
    state, _rest = halfway
    document = decode_checkpoint(checkpoint_record(state))
    mutate(document)
    engine = Engine(config, references=demo_references)
    runner = PartitionRunner(0, TOPIC, engine)
    fresh = orjson.dumps(engine.state())
    with pytest.raises(ValueError, match=reason):
        runner.restore(document)
    assert orjson.dumps(engine.state()) == fresh


def test_a_compressed_bomb_is_refused_without_inflating_it():
    deflate = zlib.compressobj(9)
    chunk = b" " * (1 << 20)
    bomb = MAGIC + b"".join(deflate.compress(chunk) for _ in range(300)) + deflate.flush()  # 300 MiB of spaces
    assert len(bomb) < 1 << 20
    with pytest.raises(ValueError, match="inflates past 256 MiB"):
        decode_checkpoint(bomb)
    with pytest.raises(ValueError, match="truncated"):
        decode_checkpoint(checkpoint_record({"counts": []})[:-4])
