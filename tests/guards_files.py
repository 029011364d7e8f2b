"""Small, valid inputs for the bad-input tests: a classifier's reference, a config, an events file.

The events drift (feature ``x`` shifts) after ``drift_from`` predictions, so a replay raises
data-drift alerts part way; every test mutates one thing and checks what tripwire made of it.
"""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from tripwire.cli import main
from tripwire.events import format_ts
from tripwire.reference import build_reference, save_reference

MODEL = "m"
START = datetime(2026, 11, 28, tzinfo=UTC)
CONFIG = f"""[[models]]
name = "{MODEL}"
reference = "reference.json"
window_events = 100
performance_window = 100
min_samples = 50
"""


def reference_document(rows: int = 400, seed: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, rows)
    score = 1 / (1 + np.exp(-x))
    frame = pd.DataFrame({"x": x, "color": rng.choice(["red", "blue", "green"], rows),
                          "region": rng.choice(["EU", "US"], rows), "y": (rng.random(rows) < score).astype(int),
                          "p": (score > 0.5).astype(int), "s": score})
    return build_reference(frame, model=MODEL, task="classification", target="y", prediction="p", score="s",
                           attributes=["region"])


def event_lines(predictions: int = 600, drift_from: int = 300, seed: int = 4) -> list[bytes]:
    """Predictions (and a label for each, 5 records later) in event-time order."""
    rng = np.random.default_rng(seed)
    lines, labels = [], []
    for i in range(predictions):
        ts = format_ts((START + timedelta(seconds=i)).timestamp())
        x = float(rng.normal(3.0 if i >= drift_from else 0.0, 1))
        score = float(1 / (1 + np.exp(-x)))
        lines.append(orjson.dumps({"type": "prediction", "schema": 1, "request_id": f"r{i}", "model": MODEL, "ts": ts,
                                   "features": {"x": x, "color": str(rng.choice(["red", "blue", "green"]))},
                                   "prediction": int(score > 0.5), "score": score, "latency_ms": 5.0,
                                   "attributes": {"region": str(rng.choice(["EU", "US"]))}}))
        labels.append((i + 5, orjson.dumps({"type": "label", "schema": 1, "request_id": f"r{i}", "model": MODEL,
                                            "ts": ts, "label": int(rng.random() < score)})))
        while labels and labels[0][0] <= i:
            lines.append(labels.pop(0)[1])
    return lines


def write_setup(folder: Path, config: str = CONFIG, lines: list[bytes] | None = None,
                reference: dict[str, Any] | None = None) -> tuple[Path, Path, Path]:
    """``monitor.toml``, ``reference.json`` and ``events.jsonl`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_reference(reference if reference is not None else reference_document(), folder / "reference.json")
    (folder / "monitor.toml").write_text(config)
    events = folder / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in (lines if lines is not None else event_lines())))
    return folder / "monitor.toml", folder / "reference.json", events


def run(*argv: Any) -> tuple[int, str, str]:
    """``tripwire ARGV`` in this process: exit code, stdout, stderr (an uncaught exception fails the test)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def replay(config: Path, events: Path, out: Path, *extra: Any) -> tuple[int, str, str]:
    return run("replay", events, "--config", config, "--out", out, "--no-progress", *extra)
