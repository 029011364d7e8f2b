"""Replay recorded events through the engine: the backtest runner, and the loop the demo shares.

Rejected records go to a dead-letter JSONL file (line number, reason, the record itself), so a
replay of a dirty file runs to the end and loses nothing.
"""

from __future__ import annotations

import gc
import gzip
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from itertools import islice
from typing import IO, Any, Callable, Iterable, Iterator, Sequence

import orjson
from tqdm import tqdm

from tripwire.alerts import encode_alert
from tripwire.engine import Engine
from tripwire.events import Rejection

AlertSink = Callable[[dict[str, Any], int], None]
RejectSink = Callable[[Rejection, int, bytes], None]


@dataclass
class Summary:
    records: int = 0
    events: int = 0
    rejected: int = 0
    unmonitored: int = 0
    alerts: int = 0
    seconds: float = 0.0
    alerts_by_kind: dict[tuple[str, str], int] = field(default_factory=dict)
    bookkeeping: dict[str, int] = field(default_factory=dict)  # see Engine.bookkeeping

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def render(self) -> str:
        lines = [
            f"records {self.records:,}  events {self.events:,}  rejected {self.rejected:,}  "
            f"unmonitored models {self.unmonitored:,}  alerts {self.alerts:,}  "
            f"{self.records_per_second:,.0f} records/s over {self.seconds:.2f} s",
        ]
        if self.bookkeeping:
            b = self.bookkeeping
            lines.append(f"event time: late {b['late']:,}  far future {b['far_future']:,}  clock jumps "
                         f"{b['clock_jumps']:,}   label join: pending {b['join_pending']:,}  evicted "
                         f"{b['join_evicted']:,}  duplicate request_ids {b['duplicates']:,}")
        for (kind, severity), count in sorted(self.alerts_by_kind.items()):
            lines.append(f"  {kind:<22} {severity:<9} {count}")
        return "\n".join(lines)


BATCH_RECORDS = 1000  # records per engine batch: big enough to amortise, small enough to stay in cache
BATCH_BYTES = 1 << 18  # a file is read in blocks of whole lines of about this many bytes


def run_records(engine: Engine, records: Iterable[bytes], on_alert: AlertSink, on_reject: RejectSink, *,
                batch_records: int = BATCH_RECORDS) -> Summary:
    """Decode and process records in order; ``index`` passed to the sinks counts from 1."""
    iterator = iter(records)
    return run_batches(engine, iter(lambda: list(islice(iterator, batch_records)), []), on_alert, on_reject)


def run_batches(engine: Engine, batches: Iterable[Sequence[bytes]], on_alert: AlertSink,
                on_reject: RejectSink) -> Summary:
    """:func:`run_records` over records already in batches (see :meth:`Engine.process_records`).

    The sinks are called as one-at-a-time processing would call them: per record, its rejection
    first, then the alerts it raised.
    """
    started = time.perf_counter()
    # What exists before the replay (modules, references, detectors) outlives it, so the garbage
    # collector's full passes need not scan it again and again; unfrozen at the end.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        before, alerts = _run(engine, batches, on_alert, on_reject)
    finally:
        if freeze:
            gc.unfreeze()
    return Summary(records=before, events=engine.events, rejected=engine.rejected, unmonitored=engine.unmonitored,
                   alerts=alerts, seconds=time.perf_counter() - started, alerts_by_kind=dict(engine.alerts_by_kind),
                   bookkeeping=engine.bookkeeping())


def _run(engine: Engine, batches: Iterable[Sequence[bytes]], on_alert: AlertSink,
         on_reject: RejectSink) -> tuple[int, int]:
    before = alerts = 0
    for batch in batches:
        result = engine.process_records(batch)
        rejections = iter(result.rejections)
        pending = next(rejections, None)
        for alert, at in zip(result.alerts, result.alert_records):
            while pending is not None and pending[0] <= at:
                on_reject(pending[1], before + pending[0] + 1, batch[pending[0]])
                pending = next(rejections, None)
            on_alert(alert, before + at + 1)
        while pending is not None:
            on_reject(pending[1], before + pending[0] + 1, batch[pending[0]])
            pending = next(rejections, None)
        alerts += len(result.alerts)
        before += len(batch)
    return before, alerts


def open_events(path: str | Path) -> IO[bytes]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such events file")
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_batches(handle: IO[bytes], batch_bytes: int = BATCH_BYTES) -> Iterator[list[bytes]]:
    """The file's lines (line ends stripped) in lists of about ``batch_bytes``."""
    while lines := handle.readlines(batch_bytes):
        yield [line.rstrip(b"\r\n") for line in lines]


def deadletter_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".jsonl") + ".deadletter.jsonl")


def replay_file(engine: Engine, events: str | Path, out: str | Path, *, progress: bool | None = None) -> Summary:
    """Replay a JSONL (or .jsonl.gz) file of events into ``out`` and ``<out>.deadletter.jsonl``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    source = Path(events)
    show = sys.stderr.isatty() if progress is None else progress
    with open_events(source) as handle, out.open("wb") as alerts_file, deadletter_path(out).open("wb") as dead:
        bar = tqdm(total=source.stat().st_size, unit="B", unit_scale=True, disable=not show, desc="replay",
                   file=sys.stderr)

        def on_alert(alert: dict[str, Any], _index: int) -> None:
            alerts_file.write(encode_alert(alert) + b"\n")

        def on_reject(rejection: Rejection, index: int, record: bytes) -> None:
            dead.write(deadletter_line(rejection, record, {"file": str(source), "line": index}) + b"\n")

        def batches_with_progress() -> Iterator[list[bytes]]:
            for batch in read_batches(handle):
                bar.update(sum(map(len, batch)) + len(batch))
                yield batch

        try:
            return run_batches(engine, batches_with_progress() if show else read_batches(handle), on_alert, on_reject)
        finally:
            bar.close()


def deadletter_line(rejection: Rejection, record: bytes, origin: dict[str, Any]) -> bytes:
    """One dead-letter entry: why, where from, and the record itself (as text when it is UTF-8)."""
    try:
        text: str | None = record.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    entry = {"reason": rejection.reason, "model": rejection.model, **origin}
    if text is None:
        entry["record_hex"] = record.hex()
    else:
        entry["record"] = text
    return orjson.dumps(entry)
