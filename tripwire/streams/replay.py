"""Replay recorded events through the engine: the backtest runner, and the loop the demo shares.

Rejected records go to a dead-letter JSONL file (line number, reason, the record itself), so a
replay of a dirty file runs to the end and loses nothing.
"""

from __future__ import annotations

import gzip
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

import orjson
from tqdm import tqdm

from tripwire.alerts import encode_alert
from tripwire.engine import Engine
from tripwire.events import Rejection, decode

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

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def render(self) -> str:
        lines = [
            f"records {self.records:,}  events {self.events:,}  rejected {self.rejected:,}  "
            f"unmonitored models {self.unmonitored:,}  alerts {self.alerts:,}  "
            f"{self.records_per_second:,.0f} records/s over {self.seconds:.2f} s",
        ]
        for (kind, severity), count in sorted(self.alerts_by_kind.items()):
            lines.append(f"  {kind:<22} {severity:<9} {count}")
        return "\n".join(lines)


def run_records(engine: Engine, records: Iterable[bytes], on_alert: AlertSink, on_reject: RejectSink) -> Summary:
    """Decode and process records in order; ``index`` passed to the sinks counts from 1."""
    started = time.perf_counter()
    index = 0
    alerts = 0
    for index, record in enumerate(records, 1):
        event = engine.admit(decode(record))  # a class the reference does not know is a rejection too
        if type(event) is Rejection:
            on_reject(event, index, record)
        for alert in engine.handle(event):
            alerts += 1
            on_alert(alert, index)
    return Summary(records=index, events=engine.events, rejected=engine.rejected, unmonitored=engine.unmonitored,
                   alerts=alerts, seconds=time.perf_counter() - started, alerts_by_kind=dict(engine.alerts_by_kind))


def open_events(path: str | Path) -> IO[bytes]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such events file")
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_lines(handle: IO[bytes]) -> Iterator[bytes]:
    for line in handle:
        yield line.rstrip(b"\r\n")


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

        def lines_with_progress() -> Iterator[bytes]:
            for line in read_lines(handle):
                bar.update(len(line) + 1)
                yield line

        try:
            return run_records(engine, lines_with_progress() if show else read_lines(handle), on_alert, on_reject)
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
