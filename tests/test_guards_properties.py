"""Property: whatever a config, reference or events file holds, `tripwire replay` never shows a traceback.

Hypothesis mutates valid files (a random value of a random type at a random key, a deleted key,
garbage bytes) and runs the replay entry point: its exit code is one the README documents, and an
exit code 2 (bad input, nothing done) comes with a message naming the file.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.guards_files import event_lines, reference_document, replay, run, write_setup
from tripwire.reference import save_reference

FILE_REPLAY_EXIT_CODES = {0, 2, 4, 5}  # README, "Command line": done, bad input, stopped part way, all rejected
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONFIG = """[defaults]
min_samples = 50
[monitor]
rejection_window = 200
[[models]]
name = "m"
reference = "reference.json"
window_events = 100
performance_window = 100
window_seconds = 0
label_ttl_seconds = 600
attributes = ["region"]
performance_metrics = ["accuracy", "f1"]
change_streams = ["error", "feature:x"]
drift_statistic = "psi"
[models.thresholds]
psi = {warning = 0.1, critical = 0.25}
disparate_impact_ratio = {warning = 0.8, critical = 0.6}
[models.detectors]
serving = true
[models.signals."feature:x"]
enabled = true
"""
TOML_VALUES = ["5", "-1", "0", "nan", "inf", "-inf", "1e400", "0.5", '"x"', '""', "true", "[]", "[1, \"a\"]",
               '["nope"]', '["feature:zz"]', "{}", "{warning = nan}", "{warning = 0.9, critical = 0.1}",
               '"feature:x"', "2026-01-01T00:00:00Z", '"\\u0000"']
KEYS = ["window_events", "window_seconds", "thresholds", "signals", "monitor", "attributes", "performance_metrics",
        "change_streams", "detectors", "psi", "accuracy", "warning", "critical", "reference", "name", "models",
        "defaults", "min_samples", "enabled", "drift_alpha", "positive_class", "unknown_key"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
EVENTS = b"".join(line + b"\n" for line in event_lines(predictions=150, drift_from=75))
REFERENCE = reference_document()


def regression_reference() -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from tripwire.reference import build_reference

    rng = np.random.default_rng(6)
    frame = pd.DataFrame({"x": rng.normal(0, 1, 300), "color": rng.choice(["red", "blue"], 300),
                          "y": rng.normal(0.5, 0.3, 300)})
    frame["p"] = frame["y"] + rng.normal(0, 0.1, 300)
    return build_reference(frame, model="m", task="regression", target="y", prediction="p")


REFERENCES = [REFERENCE, regression_reference()]


def check(code: int, stderr: str, *files: Path) -> None:
    assert code in FILE_REPLAY_EXIT_CODES, (code, stderr)
    if code == 2:
        # The config or reference, or a file the config names in their folder (a reference that is not there).
        assert any(str(path) in stderr for path in files) or str(files[0].parent) in stderr, stderr


def replay_in(folder: Path) -> tuple[int, str]:
    code, _stdout, stderr = replay(folder / "monitor.toml", folder / "events.jsonl", folder / "out" / "alerts.jsonl")
    return code, stderr


@st.composite
def mutated_config(draw: st.DrawFn) -> bytes:
    lines = CONFIG.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["value", "delete", "insert", "garbage"]))
        if how == "value" and "=" in lines[at]:
            lines[at] = lines[at].split("=", 1)[0] + "= " + draw(st.sampled_from(TOML_VALUES))
        elif how == "delete":
            del lines[at]
        elif how == "insert":
            lines.insert(at, f"{draw(st.sampled_from(KEYS))} = {draw(st.sampled_from(TOML_VALUES))}")
        else:
            return draw(st.binary(max_size=200))
        if not lines:
            break
    return "\n".join(lines).encode() + b"\n"


@EXAMPLES
@given(mutated_config())
def test_any_config_gives_a_documented_exit_code_and_names_the_file(config: bytes):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_setup(folder, reference=REFERENCE)
        (folder / "events.jsonl").write_bytes(EVENTS)
        (folder / "monitor.toml").write_bytes(config)
        code, stderr = replay_in(folder)
        check(code, stderr, folder / "monitor.toml", folder / "reference.json")


def paths_of(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path (dict keys, list positions) in a JSON document."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            found += paths_of(item, (*prefix, position))
    return found


@st.composite
def mutated_reference(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    document = copy.deepcopy(draw(st.sampled_from(REFERENCES)))  # a classifier's or a regression model's
    paths = paths_of(document)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        parent = document
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed or replaced the parent
            continue
    return json.dumps(document).encode()  # NaN, Infinity and huge integers too, as a careless writer would


@EXAMPLES
@given(mutated_reference())
def test_any_reference_gives_a_documented_exit_code_and_names_the_file(reference: bytes):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_setup(folder, reference=REFERENCE)
        (folder / "events.jsonl").write_bytes(EVENTS)
        (folder / "reference.json").write_bytes(reference)
        code, stderr = replay_in(folder)
        check(code, stderr, folder / "reference.json", folder / "monitor.toml")


@settings(max_examples=20, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from(["events.jsonl", "events.jsonl.gz"]))
def test_any_events_file_gives_a_documented_exit_code(garbage: bytes, name: str):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_setup(folder, reference=REFERENCE)
        (folder / name).write_bytes(garbage)
        code, _stdout, stderr = replay(folder / "monitor.toml", folder / name, folder / "alerts.jsonl")
        check(code, stderr, folder / name)


@settings(max_examples=15, deadline=None)
@given(st.integers(-5, 3), st.sampled_from(["y", "x", "pred"]), JSON_VALUES)
def test_any_reference_build_input_gives_a_documented_exit_code(bins: int, column: str, value: Any):
    import pandas as pd

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        frame = pd.DataFrame({"x": [float(i) for i in range(30)], "y": [i % 7 + 0.5 for i in range(30)],
                              "pred": [i % 7 for i in range(30)]}).astype(object)
        frame.at[3, column] = value if not isinstance(value, (list, dict)) else str(value)
        frame.to_csv(folder / "train.csv", index=False)
        code, _stdout, stderr = run("reference", "build", folder / "train.csv", "--model", "m", "--task", "regression",
                                    "--target", "y", "--prediction", "pred", "--bins", bins, "-o", folder / "r.json")
        assert code in {0, 2}, stderr
        if code == 0:
            save_reference(orjson.loads((folder / "r.json").read_bytes()), folder / "again.json")


def _config_words() -> list[str]:
    from tripwire.compute.settings import CAPACITY_KEYS
    from tripwire.config import DEFAULT_THRESHOLDS, KAFKA_KEYS, MLFLOW_KEYS, MODEL_KEYS, MONITOR_KEYS, WORKER_KEYS
    from tripwire.retrain import RETRAIN_KEYS
    from tripwire.sinks.config import ALERTMANAGER_KEYS, DELIVERY_KEYS, WEBHOOK_KEYS

    tables = (MODEL_KEYS, MLFLOW_KEYS, KAFKA_KEYS, WORKER_KEYS, MONITOR_KEYS, RETRAIN_KEYS, CAPACITY_KEYS,
              DELIVERY_KEYS, ALERTMANAGER_KEYS, WEBHOOK_KEYS, DEFAULT_THRESHOLDS)
    return sorted({key for table in tables for key in table} | {
        "models", "defaults", "monitor", "kafka", "mlflow", "worker", "capacity", "sinks", "retrain", "name",
        "reference", "warning", "critical", "enabled", "feature:x", "alertmanager", "webhook", "topics", "events"})


WORDS = _config_words()
TOML_LIKE = st.recursive(
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=8) | st.sampled_from(WORDS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(WORDS), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(WORDS), TOML_LIKE, max_size=5),
       st.dictionaries(st.sampled_from(WORDS), TOML_LIKE, max_size=5))
def test_any_parsed_config_is_accepted_or_refused_by_name(top: dict, model: dict):
    """Random tables at known keys (the whole configuration, every section): a ConfigError, never another error."""
    from tripwire.config import ConfigError, parse_config

    data = {**top, "models": [{"name": "m", "reference": "r.json", **model}]} if "models" not in top else top
    try:
        parse_config(data, where="monitor.toml")
    except ConfigError as error:
        assert str(error).startswith("monitor.toml"), error
