"""``tripwire replay --partitions N``: a backtest that simulates the input topic's partitions.

Each record goes to the partition Kafka's default partitioner gives its key (a sharded model's
records are keyed by ``request_id``, every other record by its model, as the client keys them):
``(murmur2(key) & 0x7fffffff) % N``. Each simulated partition has its own engine, as a worker
has per partition; the sharded models' window summaries are merged by :class:`ShardMerger`, as
the worker's merge consumer does. So the alerts are those of a live run on N partitions.
"""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path
from typing import Any, Callable

import orjson
from aiokafka.partitioner import murmur2

from tripwire.alerts import encode_alert
from tripwire.config import MonitorConfig
from tripwire.engine import Engine
from tripwire.paths import PathError
from tripwire.replay import (
    LineFile,
    LineReader,
    Summary,
    check_paths,
    deadletter_line,
    deadletter_path,
    open_events,
)
from tripwire.shard.merge import ShardMerger


def record_key(record: bytes, sharded: frozenset[str]) -> bytes | None:
    """The key a producer gives ``record``: its ``request_id`` for a sharded model, else its model (None: neither)."""
    try:
        event = orjson.loads(record)
    except orjson.JSONDecodeError:
        return None
    model = event.get("model") if type(event) is dict else None
    if type(model) is not str:
        return None
    if model in sharded:
        request_id = event.get("request_id")
        return request_id.encode() if type(request_id) is str else None
    return model.encode()


def partition_of(key: bytes | None, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client and aiokafka); a record without a key goes to 0."""
    return 0 if key is None else (murmur2(key) & 0x7FFFFFFF) % partitions


class PartitionedReplay:
    """One engine per simulated partition and the merger of their summaries; alerts and dead letters to sinks."""

    def __init__(self, config: MonitorConfig, partitions: int, references: dict[str, dict[str, Any]] | None = None,
                 partitioner: Callable[[bytes | None, int], int] | None = None) -> None:
        self.partitions = partitions
        self.partitioner = partitioner or partition_of  # (key, partitions) -> partition, as the producers' partitioner
        self.sharded = frozenset(m.name for m in config.models if m.sharded)
        self.merger = ShardMerger(config, partitions, references)
        references = self.merger.references  # (loaded once, for every engine)
        self._outbox: list[dict[str, Any]] = []
        self.engines = [Engine(config, references, on_summary=self._summary_sink(p)) for p in range(partitions)]
        self.merged_by_kind: dict[tuple[str, str], int] = {}

    def _summary_sink(self, partition: int) -> Any:
        def on_summary(summary: dict[str, Any]) -> None:
            summary["partition"] = partition
            self._outbox.append(summary)
        return on_summary

    def process(self, batch: list[bytes]) -> tuple[list[dict[str, Any]], list[tuple[int, Any, int]]]:
        """A batch of records in file order: (alerts, [(index in batch, rejection, partition)])."""
        routed: list[list[int]] = [[] for _ in range(self.partitions)]
        for index, record in enumerate(batch):
            routed[self.partitioner(record_key(record, self.sharded), self.partitions)].append(index)
        alerts: list[dict[str, Any]] = []
        rejections: list[tuple[int, Any, int]] = []
        for partition, indices in enumerate(routed):
            if not indices:
                continue
            result = self.engines[partition].process_records([batch[i] for i in indices])
            alerts += result.alerts
            rejections += [(indices[at], rejection, partition) for at, rejection in result.rejections]
            for summary in self._outbox:
                merged = self.merger.add(summary)
                for alert in merged:
                    key = (alert["kind"], alert["severity"] if alert["status"] == "firing" else "resolved")
                    self.merged_by_kind[key] = self.merged_by_kind.get(key, 0) + 1
                alerts += merged
            self._outbox.clear()
        rejections.sort(key=lambda item: item[0])
        return alerts, rejections

    def summary(self, records: int, alerts: int, seconds: float) -> Summary:
        by_kind = dict(self.merged_by_kind)
        bookkeeping: dict[str, int] = {}
        for engine in self.engines:
            for kind, count in engine.alerts_by_kind.items():
                by_kind[kind] = by_kind.get(kind, 0) + count
            for name, count in engine.bookkeeping().items():
                bookkeeping[name] = bookkeeping.get(name, 0) + count
        return Summary(records=records, events=sum(e.events for e in self.engines),
                       rejected=sum(e.rejected for e in self.engines),
                       unmonitored=sum(e.unmonitored for e in self.engines), alerts=alerts, seconds=seconds,
                       alerts_by_kind=by_kind, bookkeeping=bookkeeping)

    def describe(self) -> str:
        merger = self.merger
        return (f"sharded models {', '.join(sorted(self.sharded)) or 'none'} over {self.partitions} partitions: "
                f"windows merged {merger.windows_judged:,}  waiting {merger.waiting():,}  "
                f"duplicate summaries {merger.duplicates:,}")


def replay_partitioned(replay: PartitionedReplay, events: str | Path, out: str | Path) -> Summary:
    """Replay a JSONL (or .jsonl.gz) file through ``replay`` into ``out`` and ``<out>.deadletter.jsonl``."""
    out, source = Path(out), Path(events)
    check_paths(source, out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PathError(f"--out {out}: cannot create {out.parent}: {error.strerror or error}") from None
    started = time.perf_counter()
    written = 0
    with open_events(source) as handle, closing(LineFile(out)) as alerts_file, \
            closing(LineFile(deadletter_path(out))) as dead:
        reader = LineReader(handle, source)
        for batch in reader:
            before = reader.records - len(batch)
            alerts, rejections = replay.process(batch)
            for index, rejection, partition in rejections:
                origin = {"file": str(source), "line": reader.line_of(before + index + 1), "partition": partition}
                dead.write(deadletter_line(rejection, batch[index], origin) + b"\n")
            for alert in alerts:
                alerts_file.write(encode_alert(alert) + b"\n")
            written += len(alerts)
            alerts_file.flush()
            dead.flush()
        summary = replay.summary(reader.records, written, time.perf_counter() - started)
        summary.stopped = reader.error
        summary.blank = reader.blank
    return summary
