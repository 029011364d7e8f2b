"""One input partition's share of the monitor: its engine, its merge, its offsets, its checkpoint.

Producers key every record by model, so all of a model's predictions, features and labels sit on
the same partition number of the three input topics, each in order. A :class:`PartitionRunner`
owns partition ``p`` of every input topic: it merges them in event time (:mod:`.merge`), feeds the
engine, and remembers the last offset it processed per source, so that

* a checkpoint is the engine state *and* those offsets, in one record;
* after a restart (or a rebalance) the runner restores it and skips every record at or below the
  checkpointed offsets, so the state continues exactly where the checkpoint left it, and the
  alerts it re-emits for the records after it carry the same deterministic ids.

No Kafka in here: the Faust worker (:mod:`.worker`) and the topic replay both drive it.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Collection

import orjson

from tripwire.engine import Engine
from tripwire.events import Rejection, decode
from tripwire.streams.replay import deadletter_line

CHECKPOINT_FORMAT = 1
MAGIC = b"TWCK1"


@dataclass
class Output:
    """What releasing records produced: alerts to publish and dead-letter entries (JSON bytes)."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    deadletters: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # (key, entry)
    records: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)  # records per input topic
    last_ts: float | None = None  # event time of the last event processed


def config_fingerprint(engine: Engine) -> str:
    """Changes when the monitored models or their settings change (a restored state may not fit)."""
    return hashlib.sha256(repr(engine.config.models).encode()).hexdigest()[:16]


def encode_checkpoint(document: dict[str, Any]) -> bytes:
    return MAGIC + zlib.compress(orjson.dumps(document), 1)


def decode_checkpoint(blob: bytes) -> dict[str, Any]:
    if not blob.startswith(MAGIC):
        raise ValueError("not a tripwire checkpoint")
    document = orjson.loads(zlib.decompress(blob[len(MAGIC):]))
    if document.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint format {document.get('format')!r}, this worker reads {CHECKPOINT_FORMAT}")
    return document


class PartitionRunner:
    """Engine + event-time merge + offsets for partition ``partition`` of the ``inputs`` topics."""

    def __init__(self, partition: int, inputs: list[str], engine: Engine, *, max_buffered: int | None = None) -> None:
        from tripwire.streams.merge import Merge

        self.partition = partition
        self.inputs = list(inputs)
        self.engine = engine
        self.max_buffered = max_buffered
        self.merge = Merge(self.inputs)
        self.seen = {topic: -1 for topic in self.inputs}  # highest offset taken in (buffered or done)
        self.done = {topic: -1 for topic in self.inputs}  # highest offset the engine has processed
        self.records = 0  # processed since this runner started
        self.misrouted = 0  # records whose Kafka key is not their model (the partitioning contract)
        self.since_checkpoint = 0
        self.restored_from: dict[str, int] | None = None

    # -- records in --------------------------------------------------------------------------
    def offer(self, topic: str, offset: int, timestamp_ms: int | None, value: bytes | None,
              key: bytes | None = None) -> bool:
        """Take a record in (False: a duplicate at or below what was already taken, skipped).

        ``key``, when given, is checked against the event's model: a producer that does not key by
        model splits a model's events over partitions, and no single engine sees all of them.
        """
        if offset <= self.seen[topic]:
            return False
        self.seen[topic] = offset
        record = value if value is not None else b""
        event = decode(record)
        if type(event) is Rejection:
            # No event time: it sorts by the record's Kafka timestamp (producer time).
            order = (timestamp_ms or 0) / 1000.0
        else:
            if key is not None and key != event.model.encode():
                self.misrouted += 1
            order = event.ts
        self.merge.add(topic, order, offset, (record, event, timestamp_ms))
        return True

    def release(self, idle: Collection[str] = ()) -> Output:
        """Process every record the merge can release; ``idle``: input topics with nothing more for now."""
        output = Output()
        engine = self.engine
        for topic, offset, (record, event, _timestamp) in self.merge.pop_ready(idle, self.max_buffered):
            event = engine.admit(event)
            if type(event) is Rejection:
                output.deadletters.append((event.model.encode() if event.model else None,
                                           deadletter_line(event, record, self.origin(topic, offset))))
                found = engine.reject(event)
            else:
                output.last_ts = event.ts
                try:
                    found = engine.process(event)
                except Exception as error:  # a bug must not stop the worker: dead-letter the record
                    rejection = Rejection(f"engine error: {type(error).__name__}: {error}", event.model)
                    output.deadletters.append((event.model.encode(),
                                               deadletter_line(rejection, record, self.origin(topic, offset))))
                    found = []
            output.alerts += found
            self.done[topic] = offset
            output.records += 1
            output.by_topic[topic] = output.by_topic.get(topic, 0) + 1
        self.records += output.records
        self.since_checkpoint += output.records
        return output

    def origin(self, topic: str, offset: int) -> dict[str, Any]:
        return {"topic": topic, "partition": self.partition, "offset": offset}

    def blocking(self, idle: Collection[str] = ()) -> list[str]:
        return self.merge.blocking(idle)

    # -- checkpoint --------------------------------------------------------------------------
    def checkpoint(self, **extra: Any) -> tuple[bytes, dict[str, int]]:
        """The engine state and the processed offsets as one record; and those offsets."""
        offsets = dict(self.done)
        document = {"format": CHECKPOINT_FORMAT, "partition": self.partition, "offsets": offsets,
                    "records": self.engine.events + self.engine.rejected, "config": config_fingerprint(self.engine),
                    "state": self.engine.state(), **extra}
        self.since_checkpoint = 0
        return encode_checkpoint(document), offsets

    def restore(self, document: dict[str, Any], warn: Callable[[str], None] = lambda message: None) -> None:
        """Continue from a checkpoint: its state, and skip records at or below its offsets."""
        if document.get("config") != config_fingerprint(self.engine):
            warn(f"partition {self.partition}: the checkpoint was written with another model configuration; "
                 "restoring it anyway")
        offsets = document["offsets"]
        self.engine.restore(document["state"])
        for topic in self.inputs:
            offset = offsets.get(topic, -1)
            self.seen[topic] = self.done[topic] = offset
        self.restored_from = {topic: offsets.get(topic, -1) for topic in self.inputs}
