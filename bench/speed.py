"""Speed and memory: car-loan rows/s against NannyML and Evidently, engine memory per model and
feature, and the Kafka path (bench/kafka_throughput.py) when a broker is there.

Every figure is measured here, in the same process and run as the others it is compared with.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from bench import anchors
from bench import carloan as C

REPO = Path(__file__).resolve().parents[1]


# -- car loan: rows per second ---------------------------------------------------------------
def carloan_throughput(window: int = 5000, repeat: int = 3) -> dict[str, Any]:
    """Analysis rows per second over NannyML's car-loan data (50,000 rows, 7 features).

    tripwire replays them as 100,000 JSON events (prediction + label per row) through the whole
    engine (decode, drift, quality, performance, estimated performance, change detection);
    NannyML runs its univariate drift calculator at its defaults (Jensen-Shannon) on the same
    5,000-row chunks; Evidently runs its DataDriftPreset at its defaults on each 5,000-row window.
    """
    lines = C.event_lines()
    tripwire_s = min(C.run_tripwire(window, lines=lines).seconds for _ in range(repeat))
    nanny = [anchors.nannyml_univariate(window) for _ in range(repeat)]
    nanny_calc = min(r["calculate_seconds"] for r in nanny)
    nanny_fit = min(r["fit_seconds"] for r in nanny)
    evidently = anchors.evidently_preset(window)
    rows = len(C.load()[1])
    return {
        "rows": rows, "window_rows": window, "repeat": repeat,
        "tripwire_seconds": tripwire_s, "tripwire_rows_per_s": rows / tripwire_s,
        "tripwire_events_per_s": len(lines) / tripwire_s,
        "nannyml_calculate_seconds": nanny_calc, "nannyml_fit_seconds": nanny_fit,
        "nannyml_rows_per_s": rows / nanny_calc, "nannyml_rows_per_s_with_fit": rows / (nanny_calc + nanny_fit),
        "evidently_seconds": evidently["seconds"], "evidently_rows_per_s": rows / evidently["seconds"],
        "evidently_result": evidently, "nannyml_result": nanny[0],
    }


# -- memory per model and per feature --------------------------------------------------------
def synthetic(models: int, features: int, events_per_model: int, seed: int = 5) -> tuple[list[bytes], dict[str, Any]]:
    """A classifier stream like the replay benchmark's (score, sensitive attribute, 30 % labels
    arriving 5-120 s later), with ``features`` numeric features, for ``models`` models interleaved."""
    from tripwire.events import format_ts
    from tripwire.reference import build_reference

    rng = np.random.default_rng(seed)
    names = [f"f{i:02d}" for i in range(features)]
    weights = rng.normal(0, 1 / np.sqrt(features), features)
    frame = pd.DataFrame(np.round(rng.normal(0, 1, (5000, features)), 4), columns=names)
    frame["score"] = np.round(1 / (1 + np.exp(-(frame[names].to_numpy() @ weights))), 4)
    frame["prediction"] = (frame["score"] >= 0.5).astype(int)
    frame["label"] = (rng.random(5000) < frame["score"]).astype(int)
    frame["group"] = np.where(rng.random(5000) < 0.7, "A", "B")
    references = {}
    for m in range(models):
        references[f"model-{m}"] = build_reference(frame, model=f"model-{m}", task="classification", target="label",
                                                   prediction="prediction", score="score", attributes=["group"],
                                                   positive_class=1)
    n = models * events_per_model
    n_pred = round(n / 1.3)
    x = np.round(rng.normal(0, 1, (n_pred, features)), 4)
    score = np.round(1 / (1 + np.exp(-(x @ weights))), 4)
    ts = 1_795_824_000.0 + np.cumsum(rng.exponential(1 / 200, n_pred))
    labelled = rng.random(n_pred) < 0.3
    label_ts = ts + rng.uniform(5, 120, n_pred)
    records: list[tuple[float, bytes]] = []
    xs = x.tolist()
    for i in range(n_pred):
        model = f"model-{i % models}"
        records.append((ts[i], orjson.dumps({
            "type": "prediction", "schema": 1, "request_id": f"r{i}", "model": model, "model_version": "1",
            "ts": format_ts(ts[i]), "features": dict(zip(names, xs[i])), "prediction": int(score[i] >= 0.5),
            "score": float(score[i]), "latency_ms": 20.0, "attributes": {"group": "A" if i % 10 < 7 else "B"}})))
        if labelled[i]:
            records.append((label_ts[i], orjson.dumps({
                "type": "label", "schema": 1, "request_id": f"r{i}", "model": model, "ts": format_ts(label_ts[i]),
                "label": int(rng.random() < score[i])})))
    records.sort(key=lambda r: r[0])
    config = {"models": [{"name": name, "reference": "bench"} for name in references]}
    return [r for _t, r in records], {"config": config, "references": references}


def engine_memory(models: int, features: int, events_per_model: int = 20_000) -> dict[str, Any]:
    """tracemalloc of the engine: built (references + detectors), then after replaying the stream."""
    from tripwire.config import parse_config
    from tripwire.engine import Engine
    from tripwire.replay import run_records

    lines, setup = synthetic(models, features, events_per_model)
    config = parse_config(setup["config"])
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    engine = Engine(config, references=setup["references"])
    built = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.reset_peak()
    run_records(engine, lines, lambda *_: None, lambda *_: None)
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pending = sum(m.join.pending for m in engine.monitors.values())
    del engine
    return {"models": models, "features": features, "events": len(lines), "built_bytes": built,
            "retained_bytes": current - base, "peak_bytes": peak - base, "pending_labels": pending}


def memory_table(events_per_model: int = 20_000) -> dict[str, Any]:
    rows = [engine_memory(1, 12, events_per_model), engine_memory(1, 50, events_per_model),
            engine_memory(5, 12, events_per_model)]
    longer = engine_memory(1, 12, 2 * events_per_model)
    one, wide, five = rows
    per_pending = ((longer["retained_bytes"] - one["retained_bytes"]) / (longer["pending_labels"] - one["pending_labels"])
                   if longer["pending_labels"] > one["pending_labels"] else None)
    return {
        "rows": rows + [longer],
        "per_feature_built_bytes": (wide["built_bytes"] - one["built_bytes"]) / 38,
        "per_feature_peak_bytes": (wide["peak_bytes"] - one["peak_bytes"]) / 38,
        "per_model_built_bytes": five["built_bytes"] / 5,
        "per_model_peak_bytes": five["peak_bytes"] / 5,
        "per_pending_label_bytes": per_pending,
    }


# -- Kafka path (bench/kafka_throughput.py) ---------------------------------------------------
def broker_running() -> bool:
    return subprocess.run(["bash", "scripts/kafka.sh", "status"], cwd=REPO, capture_output=True).returncode == 0


def kafka(python: str = sys.executable, timeout: float = 900, module: str = "bench.kafka_throughput") -> dict[str, Any]:
    """``module`` (bench/kafka_throughput.py; bench/shard.py) in a child process against the project's broker
    (started here if none runs)."""
    started_here = False
    env = {**os.environ, "PYTHON": python}
    if not broker_running():
        start = subprocess.run(["bash", "scripts/kafka.sh", "start"], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=240)
        if start.returncode != 0 or not broker_running():
            return {"status": "skipped: no broker", "detail": (start.stderr or start.stdout)[-400:]}
        started_here = True
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "kafka.json"
            done = subprocess.run([python, "-m", module, "--json", str(out)], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=timeout)
            result: dict[str, Any] = {"status": "ok" if done.returncode == 0 and out.exists()
                                      else f"failed (exit {done.returncode})",
                                      "stdout": done.stdout[-3000:], "stderr": done.stderr[-1500:]}
            if out.exists():
                result["figures"] = json.loads(out.read_text())
            return result
    except subprocess.TimeoutExpired:
        return {"status": f"failed: timed out after {timeout:.0f} s"}
    finally:
        if started_here:
            subprocess.run(["bash", "scripts/kafka.sh", "stop"], cwd=REPO, capture_output=True, timeout=60)
