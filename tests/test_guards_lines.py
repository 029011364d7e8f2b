"""Line reading: blank lines skipped and counted, any line end, precise reasons, all-rejected exit code."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from tests.guards_files import event_lines, replay, write_setup
from tripwire.events import decode, decode_batch
from tripwire.replay import LineReader


def read_all(data: bytes, batch_bytes: int) -> tuple[list[bytes], LineReader]:
    reader = LineReader(io.BytesIO(data), Path("events.jsonl"), batch_bytes)
    return [record for batch in reader for record in batch], reader


@pytest.mark.parametrize("batch_bytes", [1, 2, 3, 5, 64, 1 << 18])
def test_every_line_end_splits_alike_at_every_block_boundary(batch_bytes):
    data = b"a\r\nbb\rccc\n\r\n  \n\t\r\n{x}\r\r\nlast"
    records, reader = read_all(data, batch_bytes)
    assert records == [b"a", b"bb", b"ccc", b"{x}", b"last"]
    # a, bb, ccc, "", "  ", "\t", {x}, "", last: every CR, LF and CRLF ends one line
    assert (reader.lines, reader.blank, reader.records) == (9, 4, 5)


def test_a_long_line_across_many_blocks_is_one_record():
    line = b"x" * 10_000
    records, _reader = read_all(line + b"\n" + line, 64)
    assert records == [line, line]


def alerts_of(path: Path) -> list[dict]:
    """The alerts of a replay, without the reference path (each run has its own folder)."""
    alerts = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert len(alerts) >= 5
    return [{key: value for key, value in alert.items() if key != "reference"} for alert in alerts]


def test_blank_lines_are_skipped_counted_and_dead_letters_keep_file_lines(tmp_path):
    lines = event_lines()
    spaced = [lines[0], b"", b"   ", lines[1], b"not json", b"\t", *lines[2:]]
    config, _reference, events = write_setup(tmp_path, lines=spaced)
    code, stdout, _stderr = replay(config, events, tmp_path / "alerts.jsonl")
    assert code == 0
    assert f"records {len(lines) + 1:,}" in stdout and "rejected 1 " in stdout and "blank lines skipped 3" in stdout
    dead = [orjson.loads(line) for line in (tmp_path / "alerts.deadletter.jsonl").read_bytes().splitlines()]
    assert [(d["line"], d["record"]) for d in dead] == [(5, "not json")]
    # a double-spaced file gives the alerts of the plain one, and no dead-letter alert
    plain = tmp_path / "plain"
    config, _reference, events = write_setup(plain)
    assert replay(config, events, plain / "alerts.jsonl")[0] == 0
    double = tmp_path / "double"
    config, _reference, events = write_setup(double, lines=[part for line in lines for part in (line, b"")])
    code, stdout, _stderr = replay(config, events, double / "alerts.jsonl")
    assert code == 0 and f"blank lines skipped {len(lines):,}" in stdout
    assert alerts_of(double / "alerts.jsonl") == alerts_of(plain / "alerts.jsonl")
    assert b"stream:deadletter" not in (double / "alerts.jsonl").read_bytes()


@pytest.mark.parametrize("end", [b"\r\n", b"\r"])
def test_crlf_and_cr_only_files_replay_like_lf(tmp_path, end):
    config, _reference, events = write_setup(tmp_path / "lf")
    assert replay(config, events, tmp_path / "lf" / "alerts.jsonl")[0] == 0
    other = tmp_path / "other"
    config, _reference, events = write_setup(other)
    events.write_bytes(b"".join(line + end for line in event_lines()))
    code, stdout, _stderr = replay(config, events, other / "alerts.jsonl")
    assert code == 0 and f"records {len(event_lines()):,}" in stdout and "rejected 0 " in stdout
    assert alerts_of(other / "alerts.jsonl") == alerts_of(tmp_path / "lf" / "alerts.jsonl")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"nan", b"+Infinity"])
def test_non_finite_literals_get_their_own_reason(literal):
    record = b'{"type":"label","schema":1,"request_id":"r","model":"m","ts":"2026-01-01T00:00:00Z","label":' + literal + b"}"
    reason = decode(record).reason
    assert reason == f"non-finite number: {literal.decode()} at char 92 (JSON has no NaN or Infinity)", reason


def test_a_duplicate_key_keeps_the_last_value():
    """Documented rule (README, "Bad input"): checking every record for repeated keys costs too much."""
    record = b'{"type":"label","schema":1,"request_id":"r","model":"m","ts":"2026-01-01T00:00:00Z","label":1,"label":0}'
    assert decode(record).label == 0


def test_every_line_rejected_is_its_own_exit_code(tmp_path):
    config, _reference, events = write_setup(tmp_path, lines=[b"not json", b'{"type":"click"}', b"", b"[]"])
    code, stdout, stderr = replay(config, events, tmp_path / "alerts.jsonl")
    assert code == 5
    assert "every one of the 3 records was rejected" in stdout and f"every record of {events} was rejected" in stderr
    assert len((tmp_path / "alerts.deadletter.jsonl").read_bytes().splitlines()) == 3


def test_a_repeated_key_keeps_its_last_value_on_every_path():
    # The documented rule (README, "Bad input"): a key repeated within a record keeps its last value,
    # the same in decode() and in the batch path, so replay and worker read the record alike.
    record = (b'{"type":"label","schema":1,"request_id":"r1","model":"m","ts":"2026-01-01T00:00:00.000Z",'
              b'"label":0,"label":1}')
    nested = (b'{"type":"prediction","schema":1,"request_id":"r2","model":"m","ts":"2026-01-01T00:00:00.000Z",'
              b'"prediction":1,"features":{"x":1.0,"x":2.0}}')
    one_by_one = [decode(record), decode(nested)]
    assert one_by_one == decode_batch([record, nested])
    assert one_by_one[0].label == 1 and one_by_one[1].features == {"x": 2.0}
