"""Start-up of the command line: wall time of ``tripwire --help`` and of ``tripwire replay`` of a 10-line file.

    python -m bench.startup [--repeat 5]

Each command runs in a fresh process (the console script installed beside this interpreter), best
of ``--repeat``: what a user waits for before anything is printed or written.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tripwire import demo
from tripwire.demo import write_demo_config


def best_wall_seconds(command: list[str], repeat: int) -> float:
    """Shortest wall time of ``command`` over ``repeat`` runs; an error if it fails."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - started)
    return best


def run(repeat: int = 5) -> dict[str, Any]:
    tripwire = Path(sys.executable).with_name("tripwire")
    if not tripwire.exists():
        raise SystemExit(f"no tripwire console script beside {sys.executable} (pip install -e . first)")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        config = write_demo_config(directory)
        events = directory / "events.jsonl"
        events.write_bytes(b"\n".join(demo.generate(7)[0][:10]) + b"\n")
        replay = [str(tripwire), "replay", str(events), "--config", str(config), "--out", str(directory / "alerts.jsonl"),
                  "--no-progress"]
        return {"repeat": repeat, "help_seconds": best_wall_seconds([str(tripwire), "--help"], repeat),
                "replay_10_lines_seconds": best_wall_seconds(replay, repeat)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command; the best counts (default 5)")
    result = run(parser.parse_args().repeat)
    print(f"tripwire --help                    {result['help_seconds']:.3f} s (best of {result['repeat']})")
    print(f"tripwire replay of a 10-line file  {result['replay_10_lines_seconds']:.3f} s (best of {result['repeat']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
