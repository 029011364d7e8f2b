"""Serving replicas on a real broker: two samplers watch a real CPU load, a real worker advises.

Two replicas of a service each run a bounded busy loop (it stops when the test drops a flag file,
or after five minutes); ``tripwire compute sample`` watches each loop's process and publishes to the
metrics topic; a ``tripwire worker`` subprocess keeps the capacity view. The test waits for a
scale-out advice on the alerts topic, ends the load, and waits for the scale-down that the
stabilisation window allows only once the busy samples left it. Nothing is timed: every wait is
for a record on the broker, and the window is judged on the samples' own timestamps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.request import urlopen

import orjson

from tripwire.config import load_config
from tripwire.reference import save_reference
from tripwire.streams.topics import kafka_settings, read_topic

BOOTSTRAP = os.environ.get("TRIPWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
RUN = uuid.uuid4().hex[:8]
WAIT = 240.0  # seconds a step may take on a busy machine before the test gives up
STABILIZATION = 6.0
LOAD = """\
import os, sys, time
flag, cap = sys.argv[1], time.monotonic() + 300
while not os.path.exists(flag) and time.monotonic() < cap:
    sum(range(20_000))
time.sleep(3600)
"""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(directory: Path, references: dict, web_port: int) -> Path:
    save_reference(references["fuel-efficiency"], directory / "fuel-efficiency.json")
    topics = {role: f"tc{RUN}.{role}" for role in
              ("events", "alerts", "deadletter", "metrics", "checkpoints")}
    lines = ['[[models]]', 'name = "fuel-efficiency"', 'reference = "fuel-efficiency.json"', "",
             "[kafka]", f'bootstrap_servers = "{BOOTSTRAP}"', "partitions = 2", "", "[kafka.topics]"]
    lines += [f'{role} = "{topic}"' for role, topic in topics.items()]
    lines += ["", "[worker]", f'app_id = "tripwire-compute-{RUN}"', "utilization_seconds = 1.0",
              "session_timeout_seconds = 6.0", f"web_port = {web_port}", "",
              "[capacity]", "target_utilization = 0.5", f"stabilization_seconds = {STABILIZATION}",
              "window_seconds = 3.0", "max_replicas = 6"]
    path = directory / "monitor.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Process:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def wait_for(condition, what: str, processes: list[Process]):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for running in processes:
            if running.process.poll() is not None:
                raise AssertionError(f"{running.log.name} exited with {running.process.returncode} while waiting "
                                     f"for {what}:\n{running.log.read_text(errors='replace')[-3000:]}")
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    logs = "\n".join(p.log.read_text(errors="replace")[-2000:] for p in processes)
    raise AssertionError(f"timed out after {WAIT:.0f} s waiting for {what}\n{logs}")


def test_a_cpu_load_gets_scale_out_then_scale_down_after_the_stabilisation_window(tmp_path, demo_references):
    import asyncio

    port = free_port()
    config_path = write_config(tmp_path, demo_references, port)
    settings = kafka_settings(load_config(config_path))
    flag = tmp_path / "load-ends"
    loads = [Process([sys.executable, "-c", LOAD, str(flag)], tmp_path / f"load-{i}.log") for i in (1, 2)]
    cli = [sys.executable, "-m", "tripwire.cli"]
    samplers = [Process(cli + ["compute", "sample", "--service", "svc", "--replica", f"r{i}", "--config",
                               str(config_path), "--pid", str(load.process.pid), "--cpus", "1", "--interval", "1"],
                        tmp_path / f"sampler-{i}.log") for i, load in enumerate(loads, 1)]
    worker = Process(cli + ["worker", "--config", str(config_path)], tmp_path / "worker.log")
    everything = [*loads, *samplers, worker]

    def advice() -> list[dict]:
        try:
            records = asyncio.run(read_topic(settings, settings.topics["alerts"]))
        except Exception:  # the topic is not there before the worker created it
            return []
        events = [orjson.loads(r.value) for r in records]
        return [e for e in events if e.get("type") == "capacity" and e["service"] == "svc"]

    try:
        # The samplers start one after the other: the first advice may be for r1 alone.
        events = wait_for(lambda: [e for e in advice() if e["action"] == "scale_out" and e["current_replicas"] == 2],
                          "scale-out advice for both replicas", everything)
        out = events[0]
        # Each loop wants its whole CPU: ceil(2 x ~1.0 / 0.5) = 4 (3 if one sample caught a loop slower).
        assert out["desired_replicas"] >= 3
        assert out["evidence"]["replicas"] == ["r1", "r2"] and out["metric"] == "cpu"
        assert out["utilization"] > 0.5
        flag.touch()  # the load ends; the loops sleep
        events = wait_for(lambda: (lambda a: a if any(e["action"] == "scale_down" for e in a) else None)(advice()),
                          "scale-down advice", everything)
        metrics_page = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        flag.touch()
        for running in reversed(everything):
            running.stop()

    from tripwire.events import parse_ts

    down = next(e for e in events if e["action"] == "scale_down")
    assert (down["current_replicas"], down["desired_replicas"]) == (2, 1)  # ceil(2 x ~0 / 0.5) -> min 1
    last_out = max(parse_ts(e["ts"]) for e in events if e["action"] == "scale_out")
    # Stabilised: not before the last scale-out recommendation left the window (sample time).
    assert parse_ts(down["ts"]) - last_out >= STABILIZATION
    actions = [e["action"] for e in events]
    print("advice for svc:", [(e["ts"], e["action"], e["current_replicas"], e["desired_replicas"]) for e in events])
    assert actions.index("scale_out") < actions.index("scale_down")
    # Between them, the quiet samples were held at the replicas there are, not dropped at once.
    assert "hold" in actions[actions.index("scale_out"):actions.index("scale_down")]
    assert 'tripwire_recommended_replicas{service="svc"}' in metrics_page
