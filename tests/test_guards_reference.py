"""Bad references and bad `reference build` input: exit code 2 at start-up, naming the file and the key."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.guards_files import reference_document, replay, run, write_setup
from tripwire.reference import ReferenceError, load_reference, validate_reference

REFERENCE = reference_document()


def _set(path: str, value):
    """A mutation: set the value at a dotted path (``features.x.edges``) of the reference."""
    def mutate(document):
        *parents, last = path.split(".")
        target = document
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value(target[last]) if callable(value) else value
    return mutate


MUTATIONS = [
    ("features.x.fractions", _set("features.x.fractions", lambda f: [-0.1, *f[1:]]), "must be finite numbers >= 0"),
    ("features.x.fractions", _set("features.x.fractions", lambda f: [0.0] * len(f)), "are all zero"),
    ("features.color.fractions", _set("features.color.categories", lambda c: dict.fromkeys(c, 0.0)), "are all zero"),
    ("features.x.edges", _set("features.x.edges", lambda e: list(reversed(e))), "must be strictly increasing"),
    ("features.x.edges", _set("features.x.edges", lambda e: [None, *e[1:]]), "must be a list of finite numbers"),
    ("features.x.kind", _set("features.x.kind", "ordinal"), "must be 'numeric' or 'categorical', got 'ordinal'"),
    ("features.x.fractions", _set("features.x.fractions", lambda f: f[1:]), "one more than the edges"),
    ("features.x.bin_means", _set("features.x.bin_means", lambda m: m[1:]), "must be a list of"),
    ("features.x.missing_rate", _set("features.x.missing_rate", 2), "must be a number in [0, 1]"),
    ("prediction_profile", _set("prediction_profile", {}), "prediction_profile.kind must be"),
    ("prediction_profile.fractions", _set("prediction_profile.categories", {}), "are all zero: the profile is empty"),
    ("score_profile.kind", _set("score_profile.kind", "categorical"), "must be 'numeric'"),
    ("n", _set("n", 0), "(rows profiled) must be a positive integer, got 0"),
    ("baseline.accuracy", _set("baseline.accuracy", "high"), "must be a finite number or null, got 'high'"),
    ("baseline.f1", _set("baseline.f1", True), "must be a finite number or null"),
    ("baseline", _set("baseline", [1]), "must be an object of metric -> number"),
    ("features", _set("features", []), "must be an object of feature name -> profile"),
    ("task", _set("task", "ranking"), "must be one of regression, classification"),
    ("classes", _set("classes", [1]), "must list at least two classes"),
    ("attributes", _set("attributes", "region"), "must be a list of attribute names"),
    ("'prediction_profile'", _set("prediction_profile", KeyError), "missing key"),
]


@pytest.mark.parametrize("key, mutate, problem", MUTATIONS, ids=[f"{m[0]}-{i}" for i, m in enumerate(MUTATIONS)])
def test_a_bad_reference_stops_the_replay_naming_file_and_key(tmp_path, key, mutate, problem):
    document = copy.deepcopy(REFERENCE)
    mutate(document)
    config, reference, events = write_setup(tmp_path, reference=document)
    code, _stdout, stderr = replay(config, events, tmp_path / "alerts.jsonl")
    assert code == 2 and not (tmp_path / "alerts.jsonl").exists()
    shown = key.replace("features.", "feature ").replace("feature x", "feature 'x'").replace("feature color",
                                                                                               "feature 'color'")
    assert f"{reference}: " in stderr and shown in stderr and problem in stderr, stderr


def test_the_reference_as_built_is_valid():
    assert validate_reference(copy.deepcopy(REFERENCE), "r") == REFERENCE


def test_a_directory_or_garbage_as_reference(tmp_path):
    with pytest.raises(ReferenceError, match=f"{tmp_path}: cannot read the reference"):
        load_reference(tmp_path)
    (tmp_path / "r.json").write_bytes(b"\x00\xff garbage")
    with pytest.raises(ReferenceError, match="r.json: not valid JSON"):
        load_reference(tmp_path / "r.json")


def test_the_worker_entry_point_checks_the_reference_too(tmp_path):
    """resolve_config is how the worker (and topic replay) loads references: the same check, before any work."""
    from tripwire.config import ConfigError, load_config
    from tripwire.tracking import resolve_config

    document = copy.deepcopy(REFERENCE)
    document["features"]["x"]["edges"] = list(reversed(document["features"]["x"]["edges"]))
    config, reference, _events = write_setup(tmp_path, reference=document)
    with pytest.raises(ReferenceError, match=f"{reference}: feature 'x'.edges must be strictly increasing"):
        resolve_config(load_config(config))
    write_setup(tmp_path, config=config.read_text() + 'attributes = ["age"]\n')
    with pytest.raises(ConfigError, match=r"attributes: 'age' is not in the reference"):
        resolve_config(load_config(config))


# -- reference build ------------------------------------------------------------------------------

def training_csv(tmp_path, target=None) -> tuple:
    rng = np.random.default_rng(5)
    y = rng.normal(10, 2, 50)
    frame = pd.DataFrame({"x": rng.normal(0, 1, 50), "y": y if target is None else target, "pred": y + 0.5})
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return path, path.read_bytes()


def build(data, out, *extra):
    return run("reference", "build", data, "--model", "m", "--task", "regression", "--target", "y",
               "--prediction", "pred", "-o", out, *extra)


@pytest.mark.parametrize("target, problem", [
    (["high"] * 3 + [1.0] * 47, "column 'y' row 0: is 'high', not a finite number (3 such rows"),
    ([1.0] * 7 + [None] + [2.0] * 42, "column 'y' row 7: is missing (1 such rows"),
])
def test_build_rejects_a_target_that_is_not_a_number_on_every_row(tmp_path, target, problem):
    data, _content = training_csv(tmp_path, target)
    code, _stdout, stderr = build(data, tmp_path / "r.json")
    assert code == 2 and problem in stderr and not (tmp_path / "r.json").exists(), stderr


@pytest.mark.parametrize("bins", ["-3", "0", "1"])
def test_build_rejects_fewer_than_two_bins(tmp_path, bins):
    data, _content = training_csv(tmp_path)
    code, _stdout, stderr = build(data, tmp_path / "r.json", "--bins", bins)
    assert code == 2 and f"bins (--bins) must be an integer >= 2, got {bins}" in stderr


def test_build_never_overwrites_its_data(tmp_path):
    data, content = training_csv(tmp_path)
    os.link(data, tmp_path / "link.csv")
    code, _stdout, stderr = build(data, tmp_path / "link.csv")
    assert code == 2 and "--output" in stderr and "is the same file as the data" in stderr
    assert data.read_bytes() == content


def test_build_into_a_full_disk_is_a_clear_error(tmp_path):
    data, _content = training_csv(tmp_path)
    code, _stdout, stderr = build(data, "/dev/full")
    assert code == 4 and "/dev/full: cannot write the reference" in stderr


def test_build_as_a_user_runs_it_prints_no_traceback(tmp_path):
    data, _content = training_csv(tmp_path, ["x"] * 50)
    done = subprocess.run([sys.executable, "-m", "tripwire.cli", "reference", "build", str(data), "--model",
                           "m", "--task", "regression", "--target", "y", "--prediction", "pred", "-o",
                           str(tmp_path / "r.json"), "--bins", "-3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "--bins" in done.stderr


def test_a_reference_handed_to_the_engine_is_checked_like_a_file(tmp_path):
    """The demo and MLflow hand the engine documents, not files: the same check applies."""
    from tripwire.config import parse_config
    from tripwire.engine import Engine

    document = copy.deepcopy(REFERENCE)
    document["prediction_profile"]["categories"] = {}
    config = parse_config({"models": [{"name": "m", "reference": "runs:/abc/reference"}]})
    with pytest.raises(ReferenceError, match="runs:/abc/reference: prediction_profile.fractions are all zero"):
        Engine(config, references={"m": document})


@pytest.mark.parametrize("name, content, problem", [
    ("folder.csv", None, "is a directory; give a CSV or Parquet file"),
    ("bad.csv", b"x,y,pred\n1,2\n3,4,5,6,7\n", "cannot read the data: ParserError"),
    ("latin.csv", b"x,y,pred\ncaf\xe9,1,2\n", "cannot read the data: UnicodeDecodeError"),
    ("cut.csv.gz", b"\x1f\x8b\x08\x00", "cannot read the data:"),
    ("fake.parquet", b"not parquet at all", "cannot read the data:"),
])
def test_build_from_unreadable_data_names_the_file(tmp_path, name, content, problem):
    data = tmp_path / name
    if content is None:
        data.mkdir()
    else:
        data.write_bytes(content)
    code, _stdout, stderr = build(data, tmp_path / "r.json")
    assert code == 2 and f"{data}: {problem}" in stderr, stderr
