"""Paths and outputs: an output is never an input, a failed write is a clear error, nothing raised is lost."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.guards_files import event_lines, replay, run, write_setup


@pytest.fixture
def setup(tmp_path):
    return write_setup(tmp_path)


def untouched_after(setup, out: Path, *extra) -> tuple[int, str]:
    """Replay into ``out``: the inputs are byte for byte what they were."""
    before = {path: path.read_bytes() for path in setup}
    code, _stdout, stderr = replay(setup[0], setup[2], out, *extra)
    assert {path: path.read_bytes() for path in setup} == before
    return code, stderr


@pytest.mark.parametrize("how", ["same path", "dotted path", "symlink", "hard link"])
def test_out_equal_to_the_events_is_refused(setup, tmp_path, how):
    events = setup[2]
    out = {"same path": lambda: events, "dotted path": lambda: tmp_path / "." / events.name,
           "symlink": lambda: (tmp_path / "link.jsonl").symlink_to(events) or tmp_path / "link.jsonl",
           "hard link": lambda: os.link(events, tmp_path / "hard.jsonl") or tmp_path / "hard.jsonl"}[how]()
    code, stderr = untouched_after(setup, out)
    assert code == 2 and f"--out {out} is the same file as the events {events}" in stderr


def test_the_dead_letter_path_equal_to_the_events_is_refused(tmp_path):
    config, _reference, events = write_setup(tmp_path)
    dead = events.rename(tmp_path / "alerts.deadletter.jsonl")
    setup = (config, _reference, dead)
    code, stderr = untouched_after(setup, tmp_path / "alerts.jsonl")
    assert code == 2 and f"the dead-letter file {dead} is the same file as the events" in stderr
    assert not (tmp_path / "alerts.jsonl").exists()


@pytest.mark.parametrize("which, role", [(0, "the configuration"), (1, "the reference of m")])
def test_out_or_report_equal_to_the_config_or_reference_is_refused(setup, tmp_path, which, role):
    code, stderr = untouched_after(setup, setup[which])
    assert code == 2 and f"is the same file as {role} {setup[which]}" in stderr
    code, stderr = untouched_after(setup, tmp_path / "alerts.jsonl", "--report", setup[which])
    assert code == 2 and f"--report {setup[which]} is the same file as {role}" in stderr


def test_report_equal_to_out_is_refused(setup, tmp_path):
    code, stderr = untouched_after(setup, tmp_path / "a.jsonl", "--report", tmp_path / "a.jsonl")
    assert code == 2 and "--report" in stderr and "is the same file as --out" in stderr


def test_a_directory_as_events_or_out(setup, tmp_path):
    config, _reference, events = setup
    code, _stdout, stderr = replay(config, tmp_path, tmp_path / "a.jsonl")
    assert code == 2 and f"{tmp_path}: is a directory; give a JSONL" in stderr
    (tmp_path / "folder").mkdir()
    code, stderr = untouched_after(setup, tmp_path / "folder")
    assert code == 2 and f"--out {tmp_path / 'folder'} is a directory" in stderr


def test_missing_events_and_a_file_named_gz_that_is_not(setup, tmp_path):
    config, _reference, events = setup
    code, _stdout, stderr = replay(config, tmp_path / "nope.jsonl", tmp_path / "a.jsonl")
    assert code == 2 and "nope.jsonl: no such events file" in stderr
    fake = tmp_path / "events.jsonl.gz"
    fake.write_bytes(events.read_bytes())
    code, _stdout, stderr = replay(config, fake, tmp_path / "a.jsonl")
    assert code == 2 and f"{fake}: named .gz but not gzip-compressed" in stderr
    assert not (tmp_path / "a.jsonl").exists()


def test_a_read_only_output_folder(setup):
    # /proc/sys refuses new files even to root, which chmod would not stop
    code, stderr = untouched_after(setup, Path("/proc/sys/tripwire-alerts.jsonl"))
    assert code == 2 and "--out /proc/sys/tripwire-alerts.jsonl: cannot write in /proc/sys (read-only)" in stderr


def normal_run(setup, tmp_path) -> bytes:
    code, _stdout, _stderr = replay(setup[0], setup[2], tmp_path / "normal" / "alerts.jsonl")
    assert code == 0
    alerts = (tmp_path / "normal" / "alerts.jsonl").read_bytes()
    assert alerts.count(b"\n") >= 5
    return alerts


def test_out_on_a_full_disk_is_a_clear_error(setup, tmp_path):
    code, stdout, stderr = replay(setup[0], setup[2], "/dev/full")
    assert code == 4
    assert "/dev/full: cannot write (No space left on device)" in stderr and "stopped at line" in stderr
    assert "records " in stdout  # the summary of what was processed


def test_dead_letters_on_a_full_disk_keep_every_alert_raised(setup, tmp_path):
    """The alerts flushed as raised are all there when the dead-letter file fails at the end."""
    expected = normal_run(setup, tmp_path)
    config, _reference, events = setup
    with events.open("ab") as handle:
        handle.write(b"not json\n")
    (tmp_path / "alerts.deadletter.jsonl").symlink_to("/dev/full")
    code, _stdout, stderr = replay(config, events, tmp_path / "alerts.jsonl")
    assert code == 4 and f"{tmp_path / 'alerts.deadletter.jsonl'}: cannot write (No space left on device)" in stderr
    assert (tmp_path / "alerts.jsonl").read_bytes() == expected


def test_outputs_stay_line_complete_when_the_disk_fills_mid_line(setup, tmp_path):
    """A file size limit (RLIMIT_FSIZE) cuts a write part way: the files keep whole lines only."""
    config, _reference, events = setup
    lines = event_lines(predictions=2000)  # 700 KB: three batches of 256 KiB
    # A few dead letters in the first batch, then more than the limit in the last one.
    garbage = [i < 5 or i >= len(lines) - 400 for i in range(len(lines))]
    events.write_bytes(b"".join(line + b"\n" + (b"garbage line %d\n" % i if garbage[i] else b"")
                                for i, line in enumerate(lines)))
    out = tmp_path / "alerts.jsonl"
    script = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))\n"
              "from tripwire.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", script, "replay", str(events), "--config", str(config), "--out",
                           str(out), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 4 and "Traceback" not in done.stderr
    dead = tmp_path / "alerts.deadletter.jsonl"
    assert f"{dead}: cannot write (File too large); it holds the " in done.stderr
    for path in (out, dead):
        content = path.read_bytes()
        assert content.endswith(b"\n") and all(orjson.loads(line) for line in content.splitlines())
    assert [orjson.loads(line)["record"] for line in dead.read_bytes().splitlines()] == [
        f"garbage line {i}" for i in range(5)]  # the first batch's, whole; the last batch's partial write undone


def test_a_truncated_gz_keeps_what_came_before(setup, tmp_path):
    config, _reference, events = setup
    compressed = gzip.compress(events.read_bytes())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(compressed[:len(compressed) * 2 // 3])
    code, stdout, stderr = replay(config, cut, tmp_path / "alerts.jsonl")
    assert code == 4 and f"{cut}: cannot read past line " in stderr and "EOFError" in stderr
    read = int(stderr.split("cannot read past line ")[1].split(" ")[0].replace(",", ""))
    assert 0 < read < len(event_lines())
    assert f"the {read:,} records before it were processed" in stderr and f"records {read:,}" in stdout
    # the alerts are those of a replay of the lines before the cut
    before = tmp_path / "before.jsonl"
    before.write_bytes(b"".join(events.read_bytes().splitlines(keepends=True)[:read]))
    assert replay(config, before, tmp_path / "expected.jsonl")[0] == 0
    assert (tmp_path / "alerts.jsonl").read_bytes() == (tmp_path / "expected.jsonl").read_bytes()


def test_a_corrupt_gz_is_a_clear_error(setup, tmp_path):
    config, _reference, events = setup
    compressed = bytearray(gzip.compress(events.read_bytes()))
    compressed[-8] ^= 0xFF  # the CRC
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(bytes(compressed))
    code, _stdout, stderr = replay(config, bad, tmp_path / "alerts.jsonl")
    assert code == 4 and f"{bad}: cannot read past line" in stderr and "CRC check failed" in stderr


def test_path_errors_print_no_traceback_as_a_user_runs_it(setup, tmp_path):
    config, _reference, events = setup
    done = subprocess.run([sys.executable, "-m", "tripwire.cli", "replay", str(events), "--config",
                           str(config), "--out", str(events)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "refusing to overwrite" in done.stderr


def test_a_report_on_a_full_disk_is_a_clear_error(setup, tmp_path):
    config, _reference, events = setup
    code, stdout, stderr = replay(config, events, tmp_path / "alerts.jsonl", "--report", "/dev/full")
    assert code == 4 and "--report /dev/full: cannot write the report (No space left on device)" in stderr
    assert "records 1,195" in stdout and (tmp_path / "alerts.jsonl").read_bytes().count(b"\n") >= 5


def test_a_topic_replay_never_writes_over_its_config_or_reference(setup):
    """Checked before any connection to Kafka (none runs here)."""
    config, reference, _events = setup
    for target, role in ((config, "the configuration"), (reference, "the reference of m")):
        before = target.read_bytes()
        code, _stdout, stderr = run("replay", "--topic", "tripwire.events", "--config", config, "--out", target,
                                    "--broker", "127.0.0.1:1")
        assert code == 2 and f"--out {target} is the same file as {role}" in stderr
        assert target.read_bytes() == before


def test_the_demo_checks_its_outputs_and_stops_clearly_on_a_full_disk(tmp_path):
    (tmp_path / "folder").mkdir()
    code, _stdout, stderr = run("demo", "--quiet", "--out", tmp_path / "folder")
    assert code == 2 and "--out" in stderr and "is a directory" in stderr
    code, _stdout, stderr = run("demo", "--quiet", "--out", tmp_path / "a.jsonl", "--report", tmp_path / "a.jsonl")
    assert code == 2 and "is the same file as --out" in stderr
    code, _stdout, stderr = run("demo", "--quiet", "--out", "/dev/full")
    assert code == 4 and "/dev/full: cannot write (No space left on device)" in stderr
