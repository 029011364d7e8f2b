"""What ``tripwire.client`` adds to a prediction: latency of each ``log_prediction`` call.

    python -m bench.client_latency [--bootstrap 127.0.0.1:9092] [--calls 20000] [--rate 1000]

A serving loop at ``--rate`` calls per second: each call runs a scikit-learn linear model on one
row of 8 features (the bare predict), then ``Client.log_prediction`` with those features, the
prediction and the measured latency. Both are timed per call with ``perf_counter_ns``; the added
latency is the ``log_prediction`` call alone (the hand-off of its arguments to the client's sender
thread), in wall time and in the calling thread's CPU time (which a busy machine's scheduler
does not inflate: on a loaded box the wall-time p99 of the bare predict shows how much of a p99 is
time spent descheduled; the CPU time is read outside the wall-time window, it is a system call).

What the call hands off costs the process elsewhere, and that is measured too: each batch the
sender thread builds, validates and sends holds the GIL, and a serving thread that wants the GIL
meanwhile waits for the batch to end. The loop sleeps until each call is due (as a server waits on
its socket, GIL released) and records how late it resumed: the OS timer's delay plus any wait for
the GIL. The sender's batches are timed (how long each held the GIL), and a first scenario runs the
same loop with no client in the process, so that "resumed late" and the bare predict with a client
beside them can be compared with their figures without one. With the broker up,
the same call is also timed back to back, on warm caches. Scenarios:

- no client: the bare predict alone (the reference for the predict's own figures);
- broker up: a running broker (``--bootstrap``, else ``TRIPWIRE_KAFKA_BOOTSTRAP``; started and
  stopped with scripts/kafka.sh if none answers);
- broker down, buffering: nothing listens at the address; records pile up in the buffer;
- broker down, buffer full: a 1,000-record buffer, so most calls take the drop path.

Target: p99 added < 50 µs at 1,000 calls/s. Not a test: timings depend on the machine's load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET_P99_US = 50.0
FEATURES = ("weight", "horsepower", "displacement", "acceleration", "cylinders", "model_year", "origin_us",
            "origin_eu")


def percentiles(values_ns: np.ndarray) -> dict[str, float]:
    us = values_ns / 1000.0
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "max_us": float(us.max())}


def serving_loop(client: Any, calls: int, rate: float, warmup: int = 500) -> dict[str, Any]:
    """``calls`` paced predictions, each followed by ``log_prediction`` (none when ``client`` is None)."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(3)
    train = rng.normal(size=(500, len(FEATURES)))
    model = LinearRegression().fit(train, train @ rng.normal(size=len(FEATURES)))
    rows = rng.normal(size=(calls + warmup, len(FEATURES)))
    bare = np.empty(calls, dtype=np.int64)
    late = np.empty(calls, dtype=np.int64)
    added = np.empty(calls, dtype=np.int64)
    added_cpu = np.empty(calls, dtype=np.int64)
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    period = 1e9 / rate
    batches = sender_batches(client) if client is not None else None
    start = clock()
    tick = float(start)
    for i in range(calls + warmup):
        # Asleep until the request is due, as a server waits on its socket with the GIL released;
        # how late it resumes is the OS's timer plus any wait for the GIL (the sender's batches).
        # A loop that fell behind starts its schedule afresh: one stall is one late call, not the
        # many that would catch up after it.
        tick += period
        wait = tick - clock()
        if wait > 0:
            time.sleep(wait / 1e9)
        else:
            tick = clock()
        resumed = clock() - tick
        row = rows[i]
        features = dict(zip(FEATURES, row.tolist()))  # the service has its request's fields anyway
        t0 = clock()
        prediction = model.predict(row.reshape(1, -1))[0]
        t1 = clock()
        c1 = cpu()  # a system call: read outside the wall-time window
        t2 = clock()
        if client is not None:
            client.log_prediction("bench-model", prediction, features=features, latency_ms=(t1 - t0) / 1e6)
        t3 = clock()
        c2 = cpu()
        if i >= warmup:
            bare[i - warmup] = t1 - t0
            late[i - warmup] = resumed
            added[i - warmup] = t3 - t2
            added_cpu[i - warmup] = c2 - c1
    achieved = (calls + warmup) / ((clock() - start) / 1e9)
    result = {"calls": calls, "achieved_rate": achieved, "predict": percentiles(bare), "resumed_late": percentiles(late),
              "added": percentiles(added),
              "added_cpu": percentiles(added_cpu), "load_average": os.getloadavg(),
              "added_share_of_predict_p50": float(np.median(added) / np.median(bare))}
    if batches:
        held = np.array([ns for ns, _ in batches], dtype=np.int64)
        result["sender"] = {"batches": len(batches), "records": sum(n for _, n in batches), **percentiles(held)}
    return result


def sender_batches(client: Any) -> list[tuple[int, int]]:
    """Time each batch the client's sender thread builds and sends: (ns holding the GIL, records).

    A measuring wrapper around the private ``Client._drain`` (the thread looks it up on each
    wake); its own cost, a Python call, is counted in the batch, so the figures err high.
    """
    batches: list[tuple[int, int]] = []
    drain, clock = client._drain, time.perf_counter_ns

    def timed(limit: int | None = None) -> int:
        t0 = clock()
        done = drain(limit)
        if done:
            batches.append((clock() - t0, done))
        return done

    client._drain = timed
    return batches


def back_to_back(client: Any, calls: int) -> dict[str, Any]:
    """The same call repeated with nothing between: its cost on warm caches, for comparison.

    Paced at 1,000 calls/s, a busy machine's other processes run between two calls and evict
    what the call touches; its CPU time then measures the machine as much as the client.
    """
    features = dict(zip(FEATURES, np.random.default_rng(4).normal(size=len(FEATURES)).tolist()))
    prediction = np.float64(31.2)
    wall = np.empty(calls, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        client.log_prediction("bench-model", prediction, features=features, latency_ms=0.2)
        wall[i] = clock() - t0
    return percentiles(wall)


def reachable(bootstrap: str) -> bool:
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=2):
        return True
    return False


@contextlib.contextmanager
def broker(bootstrap: str | None, start: bool = True) -> Iterator[str | None]:
    """The broker to use: the one given if it answers, else one started here (and stopped after)."""
    bootstrap = bootstrap or os.environ.get("TRIPWIRE_KAFKA_BOOTSTRAP")
    if bootstrap and reachable(bootstrap):
        yield bootstrap
        return
    if not start:
        yield None
        return
    env = {**os.environ, "PYTHON": sys.executable}
    start = subprocess.run(["bash", "scripts/kafka.sh", "start"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
    try:
        yield start.stdout.strip().splitlines()[-1] if start.returncode == 0 else None
    finally:
        if start.returncode == 0:
            subprocess.run(["bash", "scripts/kafka.sh", "stop"], cwd=REPO, env=env, capture_output=True, timeout=120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(bootstrap: str | None = None, calls: int = 20_000, rate: float = 1000.0, *,
        start_broker: bool = True) -> dict[str, Any]:
    """Every scenario; "broker up" only with a broker (``start_broker``: start one if none answers)."""
    from tripwire.client import Client

    topic = f"bench.client.{os.getpid()}.{int(time.time())}"
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there: a broker that is down
    scenarios = [{"scenario": "no client (bare predict only)", **serving_loop(None, calls, rate)}]
    with broker(bootstrap, start_broker) as up:
        cases = ([("broker up", up, None)] if up else []) + [("broker down, buffering", nowhere, None),
                                                              ("broker down, buffer full (drops)", nowhere, 1000)]
        for name, address, buffer_events in cases:
            client = Client(address, topic=topic, buffer_events=buffer_events, delivery_timeout_s=600)
            try:
                result = serving_loop(client, calls, rate)
                if address == up:
                    result["back_to_back"] = back_to_back(client, calls)
            finally:
                client.close(timeout=10 if address == up else 0)
                stats = client.stats()
            scenarios.append({"scenario": name, **result,
                              "stats": {k: getattr(stats, k) for k in ("accepted", "delivered", "queued",
                                                                       "dropped_buffer_full", "invalid")}})
    return {"rate": rate, "target_p99_us": TARGET_P99_US, "broker": up or "none (broker-up scenario skipped)",
            "scenarios": scenarios}


def render(result: dict[str, Any]) -> str:
    rows = ["| scenario | calls/s | resumed late p50 / p99 (µs) | bare predict p50 / p99 (µs) | added by log_prediction p50 / p99 / max (µs) | "
            "its CPU time p50 / p99 (µs) | sender batches: GIL held p50 / p99 / max (µs) | delivered / dropped | "
            "load average |", "|---|---|---|---|---|---|---|---|---|"]
    for s in result["scenarios"]:
        p, a, c, w = s["predict"], s["added"], s["added_cpu"], s["resumed_late"]
        if "stats" not in s:  # the no-client reference
            rows.append(f"| {s['scenario']} | {s['achieved_rate']:,.0f} | {w['p50_us']:.1f} / {w['p99_us']:.1f} | {p['p50_us']:.1f} / {p['p99_us']:.1f} | – "
                        f"| – | – | – | {s['load_average'][0]:.1f} |")
            continue
        st, b = s["stats"], s.get("sender")
        batches = f"{b['p50_us']:.1f} / {b['p99_us']:.1f} / {b['max_us']:,.0f} ({b['records'] / b['batches']:.1f} " \
                  "records each)" if b else "–"
        rows.append(f"| {s['scenario']} | {s['achieved_rate']:,.0f} | {w['p50_us']:.1f} / {w['p99_us']:.1f} | {p['p50_us']:.1f} / {p['p99_us']:.1f} | "
                    f"{a['p50_us']:.1f} / {a['p99_us']:.1f} / {a['max_us']:,.0f} | {c['p50_us']:.1f} / {c['p99_us']:.1f} | "
                    f"{batches} | {st['delivered']:,} / {st['dropped_buffer_full']:,} | {s['load_average'][0]:.1f} |")
    rows += [f"\n{s['scenario']}, the same call {s['calls']:,} times back to back (warm caches): p50 "
             f"{s['back_to_back']['p50_us']:.1f} µs, p99 {s['back_to_back']['p99_us']:.1f} µs"
             for s in result["scenarios"] if "back_to_back" in s]
    return "\n".join(rows)


def target_rows(result: dict[str, Any]) -> list[list[str]]:
    """bench/run.py's target lines: p99 added under 50 µs in every scenario."""
    return [[f"client log_prediction p99 added < {TARGET_P99_US:.0f} µs at {result['rate']:,.0f}/s ({s['scenario']})",
             f"{s['added']['p99_us']:.1f} µs", "met" if s["added"]["p99_us"] < TARGET_P99_US else "MISSED"]
            for s in result["scenarios"] if "stats" in s]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", help="a running broker (default: TRIPWIRE_KAFKA_BOOTSTRAP, else start one)")
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per scenario")
    parser.add_argument("--rate", type=float, default=1000.0, help="calls per second")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = run(args.bootstrap, args.calls, args.rate)
    print(render(result))
    for row in target_rows(result):
        print(" | ".join(row))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
