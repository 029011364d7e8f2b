"""The command line as a user runs it: reference build, replay of a dirty file, demo."""

import gzip

import orjson
import pandas as pd

from tripwire import demo
from tripwire.cli import main
from tripwire.events import Rejection, decode


def write_demo_files(tmp_path, stream, references):
    from tripwire.reference import save_reference

    for name, reference in references.items():
        save_reference(reference, tmp_path / f"{name}.json")
    config = tmp_path / "monitor.toml"
    config.write_text(
        "[defaults]\nperformance_window = 1000\n\n"
        '[[models]]\nname = "fuel-efficiency"\nreference = "fuel-efficiency.json"\n\n'
        '[[models]]\nname = "credit"\nreference = "credit.json"\n')
    events = tmp_path / "events.jsonl.gz"
    with gzip.open(events, "wb") as handle:
        handle.write(b"\n".join(stream) + b"\n")
    return config, events


def test_replay_twice_is_byte_identical_and_dead_letters_every_bad_line(tmp_path, demo_stream, demo_references, capsys):
    stream = demo_stream[0]
    config, events = write_demo_files(tmp_path, stream, demo_references)
    assert main(["replay", str(events), "--config", str(config), "--out", str(tmp_path / "a.jsonl")]) == 0
    assert main(["replay", str(events), "--config", str(config), "--out", str(tmp_path / "b.jsonl")]) == 0
    first, second = (tmp_path / "a.jsonl").read_bytes(), (tmp_path / "b.jsonl").read_bytes()
    assert first == second and first.count(b"\n") > 10
    dead = [orjson.loads(line) for line in (tmp_path / "a.deadletter.jsonl").read_bytes().splitlines()]
    bad_lines = [i for i, record in enumerate(stream, 1) if isinstance(decode(record), Rejection)]
    assert [entry["line"] for entry in dead] == bad_lines
    assert all(entry["reason"] and "record" in entry for entry in dead)
    summary = capsys.readouterr().out
    assert f"rejected {len(bad_lines):,}" in summary and "records/s" in summary


def test_reference_build_from_csv(tmp_path, capsys):
    frame = pd.DataFrame({"weight": [2000.0, 2500.0, 3000.0, 3500.0] * 50, "origin": ["USA", "Japan"] * 100,
                          "mpg": [30.0, 25.0, 20.0, 15.0] * 50, "pred": [29.0, 26.0, 21.0, 14.0] * 50})
    frame.to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "reference.json"
    code = main(["reference", "build", str(tmp_path / "train.csv"), "--model", "fuel", "--task", "regression",
                 "--target", "mpg", "--prediction", "pred", "-o", str(out)])
    assert code == 0
    reference = orjson.loads(out.read_bytes())
    assert reference["baseline"]["mae"] == 1.0 and set(reference["features"]) == {"weight", "origin"}


def test_bad_config_is_an_error_naming_the_key(tmp_path, capsys):
    config = tmp_path / "monitor.toml"
    config.write_text('[[models]]\nname = "m"\nreference = "r.json"\nwindow = 5\n')
    events = tmp_path / "e.jsonl"
    events.write_text("")
    assert main(["replay", str(events), "--config", str(config), "--out", str(tmp_path / "a.jsonl")]) == 2
    assert "models[0].window: unknown key" in capsys.readouterr().err


def test_demo_command_catches_every_incident(tmp_path, capsys):
    assert main(["demo", "--quiet", "--out", str(tmp_path / "alerts.jsonl")]) == 0
    output = capsys.readouterr().out
    assert "alerts before the first incident: 0" in output
    from tripwire.compute import demo as capacity_demo

    assert output.count(" yes ") == len(demo.INCIDENTS) + len(capacity_demo.INCIDENTS)
    assert (tmp_path / "alerts.jsonl").read_bytes().count(b"\n") > 5
