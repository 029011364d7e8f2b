"""Replay recorded events through the engine: the backtest runner, and the loop the demo shares.

Rejected records go to a dead-letter JSONL file (line number, reason, the record itself), so a
replay of a dirty file runs to the end and loses nothing.
"""

from __future__ import annotations

import gzip
import os
import sys
import time
import zlib
from contextlib import closing, suppress
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Sequence, cast

import orjson
from tqdm import tqdm

from tripwire.alerts import encode_alert
from tripwire.batch import CACHE_RECORDS
from tripwire.collector import streaming_collector
from tripwire.config import MonitorConfig
from tripwire.engine import Engine
from tripwire.events import Rejection
from tripwire.paths import PathError, check_output

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
    blank: int = 0  # blank lines skipped (a file replay)
    stopped: str | None = None  # why the replay stopped before the end of its input
    bookkeeping: dict[str, int] = field(default_factory=dict)  # see Engine.bookkeeping

    @classmethod
    def of(cls, engine: Engine, records: int, alerts: int, seconds: float) -> Summary:
        """The engine's counts after ``records`` records that raised ``alerts`` alerts."""
        return cls(records=records, events=engine.events, rejected=engine.rejected, unmonitored=engine.unmonitored,
                   alerts=alerts, seconds=seconds, alerts_by_kind=dict(engine.alerts_by_kind),
                   bookkeeping=engine.bookkeeping())

    @property
    def all_rejected(self) -> bool:
        return self.records > 0 and self.rejected == self.records

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def render(self) -> str:
        lines = [
            f"records {self.records:,}  events {self.events:,}  rejected {self.rejected:,}  "
            f"unmonitored models {self.unmonitored:,}  alerts {self.alerts:,}  "
            f"{self.records_per_second:,.0f} records/s over {self.seconds:.2f} s",
        ]
        if self.blank:
            lines[0] += f"  blank lines skipped {self.blank:,}"
        if self.bookkeeping:
            b = self.bookkeeping
            lines.append(f"event time: late {b['late']:,}  far future {b['far_future']:,}  clock jumps "
                         f"{b['clock_jumps']:,}   label join: pending {b['join_pending']:,}  evicted "
                         f"{b['join_evicted']:,}  duplicate request_ids {b['duplicates']:,}")
        for (kind, severity), count in sorted(self.alerts_by_kind.items()):
            lines.append(f"  {kind:<22} {severity:<9} {count}")
        if self.all_rejected:
            lines.append(f"every one of the {self.records:,} records was rejected (see the dead letters)")
        if self.stopped:
            lines.append(f"stopped early: {self.stopped}")
        return "\n".join(lines)


BATCH_BYTES = 1 << 18  # a file is read in blocks of whole lines of about this many bytes


def run_records(engine: Engine, records: Iterable[bytes], on_alert: AlertSink, on_reject: RejectSink, *,
                batch_records: int = CACHE_RECORDS) -> Summary:
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
    with streaming_collector():
        before, alerts = _run(engine, batches, on_alert, on_reject)
    return Summary.of(engine, before, alerts, time.perf_counter() - started)


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


class OutputError(RuntimeError):
    """An output could not be written (a full disk); the message names the file."""


GZIP_MAGIC = b"\x1f\x8b"


def open_events(path: str | Path) -> IO[bytes]:
    path = Path(path)
    if not path.exists():
        raise PathError(f"{path}: no such events file")
    if path.is_dir():
        raise PathError(f"{path}: is a directory; give a JSONL or JSONL.gz file of events")
    try:
        with path.open("rb") as handle:
            head = handle.read(len(GZIP_MAGIC))
    except OSError as error:
        raise PathError(f"{path}: cannot read the events: {error.strerror or error}") from None
    if path.suffix != ".gz":
        return path.open("rb")
    if head and head != GZIP_MAGIC:
        raise PathError(f"{path}: named .gz but not gzip-compressed (it starts with {head!r}); rename it or compress it")
    return cast(IO[bytes], gzip.open(path, "rb"))


class LineReader:
    """An events file's records in batches of about ``batch_bytes``, with the file line of each.

    LF, CRLF and CR all end a line; blank (empty or whitespace-only) lines are skipped and
    counted in ``blank``, not rejected. A read that fails part way (a truncated or corrupt
    ``.gz``) ends the batches: the lines before it were yielded and ``error`` says what happened.
    """

    def __init__(self, handle: IO[bytes], path: Path, batch_bytes: int = BATCH_BYTES) -> None:
        self.handle, self.path, self.batch_bytes = handle, path, batch_bytes
        self.lines = 0  # lines read so far, blank ones included
        self.blank = 0
        self.records = 0  # lines handed out as records
        self.error: str | None = None
        self._read1 = getattr(handle, "read1", handle.read)
        self._failure: BaseException | None = None
        self._batch_first_line = 0  # lines before the current batch
        self._batch_first_record = 0  # records before the current batch
        self._kept: list[int] | None = None  # positions of the current batch's records among its lines, if any was blank

    def __iter__(self) -> Iterator[list[bytes]]:
        pending: list[bytes] = []  # the start of a line whose end is not read yet
        while block := self._read(self.batch_bytes):
            if b"\r" in block:
                while block.endswith(b"\r"):  # a CRLF split across two blocks stays one line end
                    extra = self._read(1)
                    block += extra
                    if extra != b"\r":
                        break
                block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lines = block.split(b"\n")
            tail = lines.pop()
            if not lines:
                pending.append(tail)
                continue
            if pending:
                pending.append(lines[0])
                lines[0] = b"".join(pending)
            pending = [tail] if tail else []
            if batch := self._batch(lines):
                yield batch
        if self._failure is not None:  # a line cut off by the failure is not a record
            self.error = (f"{self.path}: cannot read past line {self.lines:,} ({type(self._failure).__name__}: "
                          f"{self._failure}); the {self.records:,} records before it were processed")
        elif pending and (batch := self._batch([b"".join(pending)])):  # a last line without a line end
            yield batch

    def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes; what was read before a failure (gzip: truncated, bad CRC, not deflate) is kept."""
        parts, got = [], 0
        while got < size and self._failure is None:
            try:
                # read1: a truncated .gz gives up the data before the cut, where read() would drop it
                part = self._read1(size - got)
            except (OSError, EOFError, zlib.error) as error:
                self._failure = error
                break
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def _batch(self, lines: list[bytes]) -> list[bytes]:
        self._batch_first_line, self._batch_first_record = self.lines, self.records
        self.lines += len(lines)
        records = list(map(bytes.strip, lines))
        self._kept = None
        if not all(records):
            self._kept = [position for position, record in enumerate(records) if record]
            self.blank += len(records) - len(self._kept)
            records = [records[position] for position in self._kept]
        self.records += len(records)
        return records

    def line_of(self, index: int) -> int:
        """The file line (from 1) of record ``index`` (from 1) of the batch being processed."""
        position = index - self._batch_first_record - 1
        return self._batch_first_line + (self._kept[position] if self._kept is not None else position) + 1


class LineFile:
    """An output file of whole lines; a failed write (a full disk) leaves no partial line and names the file.

    ``write`` buffers, ``flush`` hands the buffered lines to the operating system: call it after
    each alert, so nothing raised is lost, and after each batch of dead letters.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as error:
            raise PathError(f"{path}: cannot write here: {error.strerror or error}") from None
        self._buffered: list[bytes] = []
        self.lines = 0  # whole lines written
        self._size = 0  # their bytes

    def write(self, line: bytes) -> None:
        self._buffered.append(line)

    def flush(self) -> None:
        if not self._buffered:
            return
        data = b"".join(self._buffered)
        lines, self._buffered = len(self._buffered), []
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as error:
            with suppress(OSError):  # a device such as /dev/full cannot be truncated
                os.ftruncate(self._fd, self._size)
            raise OutputError(f"{self.path}: cannot write ({error.strerror or error}); it holds the "
                              f"{self.lines:,} whole lines written before") from None
        self.lines += lines
        self._size += len(data)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            os.close(self._fd)


def deadletter_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".jsonl") + ".deadletter.jsonl")


def check_paths(events: Path, out: Path, inputs: Iterable[tuple[str, Path]] = (), report: Path | None = None) -> None:
    """Before any work: the events are a readable file and no output is an input (``(role, path)``) or another output.

    The same file is recognised through symbolic and hard links. Raises :class:`~tripwire.paths.PathError`.
    """
    open_events(events).close()
    check_outputs(out, [("the events", events), *inputs], report)


def check_outputs(out: Path, inputs: Iterable[tuple[str, Path]], report: Path | None = None) -> None:
    """``out``, its dead-letter file and ``report`` are writable, distinct, and none of ``inputs``."""
    outputs = [("--out", out), ("the dead-letter file", deadletter_path(out))]
    if report is not None:
        outputs.append(("--report", report))
    readers = list(inputs)
    for number, (role, path) in enumerate(outputs):
        check_output(role, path, readers + outputs[:number])


def config_inputs(config_path: Path, config: MonitorConfig) -> list[tuple[str, Path]]:
    """The files a replay reads besides its events: the configuration and the local references."""
    from tripwire.reference import is_mlflow_uri

    return [("the configuration", config_path), *((f"the reference of {m.name}", Path(m.reference))
                                                  for m in config.models if not is_mlflow_uri(m.reference))]


def replay_file(engine: Engine, events: str | Path, out: str | Path, *, progress: bool | None = None) -> Summary:
    """Replay a JSONL (or .jsonl.gz) file of events into ``out`` and ``<out>.deadletter.jsonl``.

    A read that fails part way or a write that fails (a full disk) stops the replay: the summary
    covers what was processed and ``stopped`` says why. Alerts are flushed as raised.
    """
    out = Path(out)
    source = Path(events)
    check_paths(source, out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PathError(f"--out {out}: cannot create {out.parent}: {error.strerror or error}") from None
    show = sys.stderr.isatty() if progress is None else progress
    started = time.perf_counter()
    with open_events(source) as handle, closing(LineFile(out)) as alerts_file, \
            closing(LineFile(deadletter_path(out))) as dead:
        reader = LineReader(handle, source)
        bar = tqdm(total=source.stat().st_size, unit="B", unit_scale=True, disable=not show, desc="replay",
                   file=sys.stderr)

        def on_alert(alert: dict[str, Any], index: int) -> None:
            alerts_file.write(encode_alert(alert) + b"\n")
            try:
                alerts_file.flush()
            except OutputError as error:
                raise OutputError(f"{error}; stopped at line {reader.line_of(index):,}") from None

        def on_reject(rejection: Rejection, index: int, record: bytes) -> None:
            dead.write(deadletter_line(rejection, record, {"file": str(source), "line": reader.line_of(index)}) + b"\n")

        def batches() -> Iterator[list[bytes]]:
            for batch in reader:
                if show:
                    bar.update(sum(map(len, batch)) + len(batch))
                yield batch
                try:
                    dead.flush()  # the batch's dead letters, before the next is read
                except OutputError as error:
                    raise OutputError(f"{error}; stopped after line {reader.lines:,}") from None

        try:
            summary = run_batches(engine, batches(), on_alert, on_reject)
            summary.stopped = reader.error
        except OutputError as error:
            summary = Summary.of(engine, reader.records, alerts_file.lines, time.perf_counter() - started)
            summary.stopped = str(error)
        finally:
            bar.close()
        summary.blank = reader.blank
        return summary


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
