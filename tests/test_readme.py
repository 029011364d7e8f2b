"""The README's examples still work: its event records decode, its configuration tables parse, and
the Python examples marked ``<!-- example: tests/test_readme.py runs it -->`` run.

Only examples that need no broker, MLflow server or model of the reader's are checked here; the
others name objects the reader has (a trained model, a running Kafka).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tripwire.config import parse_config
from tripwire.detectors import registry
from tripwire.events import Features, Label, Prediction, decode

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(?P<marker><!-- example: tests/test_readme.py runs it -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```",
                   re.DOTALL)


def blocks(lang: str, *, marked: bool = False) -> list[tuple[int, str]]:
    """The README's fenced blocks in ``lang`` (only the marked ones if ``marked``), with their line numbers."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start("body")) + 1, m["body"]) for m in BLOCK.finditer(text)
            if m["lang"] == lang and (m["marker"] is not None or not marked)]


def json_objects(text: str) -> list[dict]:
    """Every JSON object in a block, one after another, each possibly over several lines."""
    decoder, objects, at = json.JSONDecoder(), [], 0
    while (at := len(text) - len(text[at:].lstrip())) < len(text):
        value, at = decoder.raw_decode(text, at)
        objects.append(value)
    return objects


def test_the_event_contract_examples_decode_to_their_types():
    line, body = blocks("json")[0]  # the first JSON block is the event contract's
    events = [decode(json.dumps(record)) for record in json_objects(body)]
    assert [type(e) for e in events] == [Prediction, Features, Label], f"README.md line {line}"
    assert {e.request_id for e in events} == {"r-1f3a"}


@pytest.mark.parametrize(("line", "body"), blocks("toml"), ids=lambda v: str(v) if isinstance(v, int) else "")
def test_every_configuration_example_parses(line, body):
    data = tomllib.loads(body)
    if "models" not in data:  # a table shown on its own: checked beside a model
        data["models"] = [{"name": "fuel-efficiency", "reference": "reference.json"}]
    config = parse_config(data, where=f"README.md line {line}")
    assert config.models


@pytest.mark.parametrize(("line", "body"), blocks("python", marked=True), ids=lambda v: str(v) if isinstance(v, int) else "")
def test_the_marked_python_examples_run(line, body):
    before = set(registry.family_names())
    try:
        exec(compile(body, f"README.md line {line}", "exec"), {"__name__": "readme_example"})
    finally:
        for name in set(registry.family_names()) - before:  # an example may register a family: not for the next test
            registry.unregister(name)


def test_the_detector_family_example_is_marked_and_registers_its_family():
    [(line, body)] = [(line, body) for line, body in blocks("python", marked=True) if "register(Family(" in body]
    try:
        exec(compile(body, f"README.md line {line}", "exec"), {"__name__": "readme_example"})
        assert registry.default_threshold("mean_shift_sd").critical == 2.0
        assert parse_config({"models": [{"name": "m", "reference": "r.json", "detectors": {"shift": False}}]})
    finally:
        registry.unregister("shift")
