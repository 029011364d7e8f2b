"""One partition of the input topic: its engine, the offset it has reached, its checkpoint.

Predictions, features and labels share one input topic, and a model's records sit on one
partition (producers key them by model), so the partition's log order *is* the order its engine
sees: nothing is merged, nothing waits on a clock, and the same log gives the same alerts whatever
the fetch timing, the load or the restarts. A :class:`PartitionRunner`

* feeds the records of each fetched batch to its engine in offset order (the engine's batch path);
* remembers the last offset it processed, so that a checkpoint is the engine state *and* that
  offset, in one record;
* after a restart or a rebalance restores the checkpoint and skips every record at or below its
  offset, so the state continues exactly, and the alerts it re-emits carry the same ids.

No Kafka in here: the worker (:mod:`.worker`) drives it, and the tests drive it directly.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import orjson

from tripwire.engine import Engine
from tripwire.replay import deadletter_line
from tripwire.streams.sightings import Sighting

CHECKPOINT_FORMAT = 2
MAGIC = b"TWCK2"
MAX_CHECKPOINT_JSON = 256 << 20  # far above a real state (a record is at most 16 MB compressed)


@dataclass
class Output:
    """What a batch produced: alerts to publish and dead-letter entries (JSON bytes)."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    deadletters: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # (key, entry)
    summaries: list[tuple[bytes, bytes]] = field(default_factory=list)  # sharded models' windows: (model, JSON)
    records: int = 0
    duplicates: int = 0  # records at or below the offset already processed (a re-fetch after a seek)
    last_ts: float | None = None  # event time of the last event processed


class CheckpointError(ValueError):
    """A checkpoint record that this worker refuses to use (with the reason)."""


def config_fingerprint(engine: Engine) -> str:
    """Changes when the monitored models or their settings change (a restored state may not fit)."""
    return hashlib.sha256(repr(engine.config.models).encode()).hexdigest()[:16]


def encode_checkpoint(document: dict[str, Any]) -> bytes:
    return MAGIC + zlib.compress(orjson.dumps(document), 1)


def decode_checkpoint(blob: bytes | None) -> dict[str, Any]:
    """The checkpoint document; :class:`CheckpointError` naming the problem for anything else.

    A checkpoint is compressed JSON: plain data, never code. Anything that does not start with the
    magic bytes, does not inflate (or inflates past ``MAX_CHECKPOINT_JSON``, or is truncated), is
    not a JSON object of this format, is refused whole.
    """
    if not blob or not blob.startswith(MAGIC):
        raise CheckpointError(f"not a tripwire checkpoint of format {CHECKPOINT_FORMAT} "
                              f"(starts with {bytes(blob or b'')[:8]!r})")
    inflate = zlib.decompressobj()
    try:
        text = inflate.decompress(blob[len(MAGIC):], MAX_CHECKPOINT_JSON)
        if inflate.unconsumed_tail:  # a record of a few MB that inflates without end: refuse, don't allocate
            raise CheckpointError(f"checkpoint does not decode: it inflates past {MAX_CHECKPOINT_JSON >> 20} MiB")
        if not inflate.eof:
            raise CheckpointError("checkpoint does not decode: the compressed data is truncated")
        document = orjson.loads(text)
    except (zlib.error, orjson.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint does not decode: {error}") from None
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint is not a JSON object of format {CHECKPOINT_FORMAT}")
    if type(document.get("offset")) is not int or not isinstance(document.get("state"), dict):
        raise CheckpointError("checkpoint has no integer 'offset' or no 'state' object")
    return document


class PartitionRunner:
    """Engine + processed offset for partition ``partition`` of the input topic ``topic``."""

    def __init__(self, partition: int, topic: str, engine: Engine) -> None:
        self.partition = partition
        self.topic = topic
        self.engine = engine
        self.done = -1  # highest offset the engine has processed
        self.records = 0  # processed since this runner started
        self.since_checkpoint = 0
        # The first record of each monitored model on this partition (see .sightings); the worker fills it.
        self.sightings: dict[str, Sighting] = {}
        # Window summaries of sharded models (see tripwire.shard), published before a checkpoint covers them.
        self._summaries: list[tuple[bytes, bytes]] = []
        engine.on_summary = self._on_summary
        for monitor in engine.monitors.values():
            monitor.on_summary = self._on_summary

    def _on_summary(self, summary: dict[str, Any]) -> None:
        summary["partition"] = self.partition
        self._summaries.append((summary["model"].encode(), orjson.dumps(summary)))

    def process(self, offsets: Sequence[int], values: Sequence[bytes | None]) -> Output:
        """Feed one fetched batch (offsets ascending) to the engine; skip what was processed already."""
        output = Output()
        start = 0
        while start < len(offsets) and offsets[start] <= self.done:
            start += 1
        output.duplicates = start
        if start == len(offsets):
            return output
        offsets = offsets[start:]
        records = [value if value is not None else b"" for value in values[start:]]
        result = self.engine.process_records(records)
        for index, rejection in result.rejections:
            origin = {"topic": self.topic, "partition": self.partition, "offset": offsets[index]}
            output.deadletters.append((rejection.model.encode() if rejection.model else None,
                                       deadletter_line(rejection, records[index], origin)))
        output.alerts = result.alerts
        output.summaries, self._summaries = self._summaries, []
        output.last_ts = result.last_ts
        output.records = len(records)
        self.done = offsets[-1]
        self.records += output.records
        self.since_checkpoint += output.records
        return output

    # -- checkpoint --------------------------------------------------------------------------
    def checkpoint(self, **extra: Any) -> tuple[bytes, int]:
        """The engine state and the processed offset as one record; and that offset."""
        document = {"format": CHECKPOINT_FORMAT, "topic": self.topic, "partition": self.partition,
                    "offset": self.done, "records": self.engine.events + self.engine.rejected,
                    "config": config_fingerprint(self.engine), "state": self.engine.state(),
                    "sightings": [s.as_dict() for s in self.sightings.values()], **extra}
        self.since_checkpoint = 0
        return encode_checkpoint(document), self.done

    def restore(self, document: dict[str, Any], warn: Callable[[str], None] = lambda message: None) -> None:
        """Continue from a checkpoint: its state, and skip records at or below its offset."""
        if document.get("config") != config_fingerprint(self.engine):
            warn(f"partition {self.partition}: the checkpoint was written with another model configuration; "
                 "restoring it anyway")
        if type(document.get("offset")) is not int:
            raise ValueError(f"partition {self.partition}: the checkpoint's offset must be an integer")
        sightings = [Sighting.from_dict(entry) for entry in document.get("sightings", [])]
        if any(s is None or s.partition != self.partition for s in sightings):
            raise ValueError(f"partition {self.partition}: the checkpoint's sightings are not (model, partition, "
                             "offset, ts) entries of this partition")
        state = document.get("state")
        if not isinstance(state, dict):
            raise ValueError(f"partition {self.partition}: unreadable engine state: {type(state).__name__}, "
                             "not an object")
        self.engine.restore(state)  # all or nothing: ValueError with the reason
        self.done = document["offset"]
        self.sightings = {s.model: s for s in sightings if s is not None}
