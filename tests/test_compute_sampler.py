"""The replica sampler on real processes: CPU demand of a busy loop and of a sleeper, no GPU here."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from tripwire.compute.sampler import GpuReader, ProcessTreeCpu, ReplicaSampler

READY = "import time\nprint('ready', flush=True)\n"  # measure after the interpreter's start-up
BUSY = READY + "end = time.monotonic() + 120\nwhile time.monotonic() < end:\n    pass\n"
SLEEP = READY + "time.sleep(120)\n"


@pytest.fixture
def child():
    started = []

    def start(code: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        started.append(process)
        assert process.stdout.readline() == b"ready\n"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(10)


def test_a_busy_loop_wants_its_cpu_and_a_sleeper_does_not(child):
    busy, sleeper = child(BUSY), child(SLEEP)
    busy_cpu, sleeper_cpu = ProcessTreeCpu(busy.pid, cpus=1), ProcessTreeCpu(sleeper.pid, cpus=1)
    time.sleep(2.0)
    busy_cpu.percent()
    sleeper_cpu.percent()
    # Demand = on a CPU + waiting for one: a spinning thread is one or the other all the time,
    # however busy the machine is (it only shifts time from the first to the second).
    assert busy_cpu.demand_percent() == pytest.approx(100.0, abs=35.0)
    assert sleeper_cpu.demand_percent() < 10.0


def test_the_tree_includes_children_and_the_sample_has_no_gpus_without_nvml(child):
    parent = child("import subprocess, sys\nprint('ready', flush=True)\n"
                   f"subprocess.run([sys.executable, '-c', {BUSY!r}], stdout=subprocess.DEVNULL)\n")
    deadline = time.monotonic() + 60
    while not psutil.Process(parent.pid).children() and time.monotonic() < deadline:
        time.sleep(0.1)
    sampler = ReplicaSampler("svc", "r1", pid=parent.pid, cpus=2)
    time.sleep(2.0)
    sample = sampler.sample(now=1_800_000_000.0)
    assert (sample["service"], sample["replica"], sample["cpus"], sample["ts"]) == ("svc", "r1", 2.0, 1_800_000_000.0)
    assert sample["time"] == "2027-01-15T08:00:00.000Z"
    # The busy grandchild wants one of the two CPUs.
    assert sample["cpu_demand_percent"] == pytest.approx(50.0, abs=20.0)
    assert sample["rss_bytes"] > 1_000_000 and 0 < sample["memory_percent"] <= 100
    assert "gpus" not in sample and GpuReader().handles == []  # no GPU on this machine: skipped, no error


def test_a_missing_process_is_a_clear_error():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)
    with pytest.raises(psutil.NoSuchProcess):
        ReplicaSampler("svc", "r1", pid=gone.pid)
    with pytest.raises(ValueError, match="non-empty service"):
        ReplicaSampler("", "r1")
