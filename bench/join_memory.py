"""Peak RSS of the engine holding 10^6 predictions that are never labelled: the label join's bound.

Each case runs in a fresh interpreter (``python -m bench.join_memory CASE N``) so that its peak
resident set is its own: one model (12 features), ``N`` predictions in batches, no label. The
records are made batch by batch and dropped, so the peak is the engine's. Cases: the default
``label_join_max_pending`` and, for comparison, a bound above ``N`` (what the join held before it
had one).

``python -m bench.join_memory`` prints both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.replay_throughput import vm_hwm_bytes

CASES = ("default bound", "no bound")


def measure(case: str, predictions: int) -> dict[str, Any]:
    """In this interpreter: replay ``predictions`` unlabelled predictions, return the peak RSS and the join's counts."""
    import orjson

    from bench.speed import synthetic
    from tripwire.config import MODEL_KEYS, parse_config
    from tripwire.engine import Engine
    from tripwire.events import format_ts

    _records, setup = synthetic(1, 12, 10)
    config = setup["config"]
    bound = MODEL_KEYS["label_join_max_pending"][1] if case == "default bound" else predictions + 1
    config["models"][0]["label_join_max_pending"] = bound
    engine = Engine(parse_config(config), references=setup["references"])
    template = next(r for r in map(orjson.loads, _records) if r["type"] == "prediction")
    del _records
    start_rss = _peak_rss_bytes()
    for first in range(0, predictions, 1000):
        batch = []
        for i in range(first, min(first + 1000, predictions)):
            template["request_id"], template["ts"] = f"r{i}", format_ts(1_795_824_000.0 + i / 200)
            batch.append(orjson.dumps(template))
        engine.process_records(batch)
    counts = engine.bookkeeping()
    return {"case": case, "predictions": predictions, "label_join_max_pending": bound,
            "peak_rss_bytes": _peak_rss_bytes(), "rss_before_bytes": start_rss,
            "pending": counts["join_pending"], "evicted": counts["join_evicted"]}


def _peak_rss_bytes() -> int:
    # VmHWM, not ru_maxrss: the child's ru_maxrss starts at the parent's (the whole bench's) at fork.
    return vm_hwm_bytes()


def run(predictions: int = 1_000_000) -> dict[str, Any]:
    """Both cases, each in its own interpreter."""
    rows = []
    for case in CASES:
        out = subprocess.run([sys.executable, "-m", "bench.join_memory", case, str(predictions)], check=True,
                             capture_output=True, text=True)
        rows.append(json.loads(out.stdout))
    return {"rows": rows}


def render(result: dict[str, Any]) -> list[list[str]]:
    """Rows for the speed / memory table of ``bench.run``."""
    return [[f"{row['predictions']:,} unlabelled predictions, one model × 12 features, {row['case']}",
             f"peak RSS {row['peak_rss_bytes'] / 2**20:,.0f} MiB",
             f"{row['rss_before_bytes'] / 2**20:,.0f} MiB before the first record",
             f"label_join_max_pending {row['label_join_max_pending']:,}: {row['pending']:,} held, "
             f"{row['evicted']:,} evicted"] for row in result["rows"]]


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(json.dumps(measure(sys.argv[1], int(sys.argv[2]))))
    else:
        for line in render(run()):
            print("  ".join(line))
