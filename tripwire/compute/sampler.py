"""The serving-host sampler: utilization of one replica of a service, published to the metrics topic.

A serving host runs ``tripwire compute sample --service NAME --replica ID`` beside the model. Every
interval it reads, with psutil, the CPU (of the process tree ``--pid`` and its children, or of the
whole host) as a percentage of the replica's CPUs (``--cpus``: its Kubernetes CPU request, say;
default: the CPUs it may run on), the memory, and through NVML each GPU's utilization and memory
when ``pynvml`` (``nvidia-ml-py``) is importable and finds a GPU; otherwise there is no ``gpus``
entry. A sample::

    {"type": "replica", "schema": 1, "service": "fuel-efficiency", "replica": "pod-7f9c", "ts": 1795824000.0,
     "time": "2026-11-28T00:00:00.000Z", "cpus": 2.0, "cpu_percent": 63.5, "memory_percent": 41.2,
     "rss_bytes": 512000000, "gpus": [{"index": 0, "utilization_percent": 71.0, "memory_percent": 38.5}]}

Records are keyed by the *service*, so that every replica of a service lands on one partition of
the metrics topic, which one worker owns: its capacity view sees them all. Name the service after
the model (the ``model`` of its prediction events) and the view also carries the model's request
rate and latency.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Callable

import orjson
import psutil

from tripwire.events import format_ts

log = logging.getLogger("tripwire.compute")


class GpuReader:
    """NVML readings of every GPU, or nothing when there is no NVML library or no GPU."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        try:
            import pynvml
        except ImportError:
            log.debug("no pynvml (nvidia-ml-py): GPU utilization not sampled")
            return
        try:
            pynvml.nvmlInit()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError as error:  # a driver-less host: NVML is installed but finds nothing
            log.debug("NVML found no GPU (%s): GPU utilization not sampled", error)
            return
        self._nvml = pynvml

    def read(self) -> list[dict[str, Any]]:
        readings = []
        for index, handle in enumerate(self.handles):
            try:
                rates = self._nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            except self._nvml.NVMLError as error:
                log.warning("GPU %d: no reading (%s)", index, error)
                continue
            readings.append({"index": index, "utilization_percent": float(rates.gpu),
                             "memory_percent": round(100.0 * memory.used / memory.total, 2)})
        return readings


class ProcessTreeCpu:
    """CPU of a process and its children (or of the host) since the previous reading, in percent of ``cpus``.

    Two figures per reading:

    * :meth:`percent`: CPU time the tree *got* (psutil). The same :class:`psutil.Process` object
      is kept per pid across readings, since its ``cpu_percent`` measures from its own previous call;
    * :meth:`demand_percent`: CPU time it got plus time its threads sat runnable, waiting for a
      CPU (Linux ``/proc/<pid>/task/<tid>/schedstat``): what it *wanted*. On a busy host a CPU-bound
      process gets a fraction of a core but wants all of it; sizing goes by the demand. None where
      the kernel does not report it, or for the host as a whole.

    The first reading only starts the interval.
    """

    def __init__(self, pid: int | None = None, cpus: float | None = None) -> None:
        self.process = psutil.Process(pid) if pid is not None else None  # NoSuchProcess names the pid
        if cpus is None:
            cpus = len(self.process.cpu_affinity()) if self.process is not None and hasattr(
                self.process, "cpu_affinity") else psutil.cpu_count()
        if not cpus or cpus <= 0:
            raise ValueError(f"cpus must be > 0, got {cpus}")
        self.cpus = float(cpus)
        self.tree: dict[int, psutil.Process] = {}
        self._schedstat: dict[tuple[int, int], int] = {}  # (pid, tid) -> ns on CPU + waiting, at the last reading
        self._demand: float | None = None
        self._last = time.monotonic()
        self.percent()

    def percent(self) -> float:
        """Percent of ``cpus`` used since the previous call (above 100 when the tree overran them)."""
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        if self.process is None:
            return psutil.cpu_percent(None) * (psutil.cpu_count() or 1) / self.cpus
        try:
            members = [self.process, *self.process.children(recursive=True)]
        except psutil.NoSuchProcess:
            raise ProcessLookupError(f"process {self.process.pid} is gone") from None
        total = 0.0
        alive = {}
        for member in members:
            tracked = self.tree.get(member.pid, member)
            try:
                total += tracked.cpu_percent(None)
            except psutil.NoSuchProcess:
                continue
            alive[member.pid] = tracked
        self.tree = alive
        self._demand = self._read_demand(elapsed)
        return total / self.cpus

    def demand_percent(self) -> float | None:
        """CPU wanted over the interval of the last :meth:`percent` call, in percent of ``cpus``."""
        return self._demand

    def _read_demand(self, elapsed: float) -> float | None:
        counters: dict[tuple[int, int], int] = {}
        for pid in self.tree:
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as stat:
                        on_cpu, waiting = stat.read().split()[:2]
                except (OSError, ValueError):
                    continue
                counters[(pid, int(tid))] = int(on_cpu) + int(waiting)
        if not counters:
            return None
        # A thread first seen now started within the interval: all its time counts.
        wanted = sum(value - self._schedstat.get(key, 0) for key, value in counters.items())
        first, self._schedstat = not self._schedstat, counters
        if first or elapsed <= 0:
            return None
        return 100.0 * wanted / 1e9 / elapsed / self.cpus

    def rss_bytes(self) -> int | None:
        if self.process is None:
            return None
        total = 0
        for member in self.tree.values():
            try:
                total += member.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total


class ReplicaSampler:
    """psutil (and NVML) readings of one replica; call :meth:`sample` on a timer."""

    def __init__(self, service: str, replica: str, *, pid: int | None = None, cpus: float | None = None) -> None:
        if not service or not replica:
            raise ValueError("a sample needs a non-empty service and replica")
        self.service = service
        self.replica = replica
        self.cpu = ProcessTreeCpu(pid, cpus)
        self.cpus = self.cpu.cpus
        self.gpus = GpuReader()

    def sample(self, now: float | None = None) -> dict[str, Any]:
        cpu = self.cpu.percent()
        demand = self.cpu.demand_percent()
        ts = time.time() if now is None else now
        sample: dict[str, Any] = {
            "type": "replica", "schema": 1, "service": self.service, "replica": self.replica, "ts": ts,
            "time": format_ts(ts), "cpus": self.cpus, "cpu_percent": round(cpu, 3),
            "cpu_demand_percent": None if demand is None else round(demand, 3),
            "memory_percent": psutil.virtual_memory().percent,
        }
        rss = self.cpu.rss_bytes()
        if rss is not None:
            sample["rss_bytes"] = rss
        gpus = self.gpus.read()
        if gpus:
            sample["gpus"] = gpus
        return sample


async def run_sampler(settings: Any, sampler: ReplicaSampler, *, interval: float = 5.0, count: int | None = None,
                      on_sample: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Publish a sample every ``interval`` seconds (``count`` of them, or until cancelled); returns how many."""
    from aiokafka import AIOKafkaProducer

    from tripwire.streams.topics import ensure_topics, running

    topic = settings.topics["metrics"]
    await ensure_topics(settings, [topic])
    sent = 0
    async with running(AIOKafkaProducer(**settings.client_kwargs(), acks="all", linger_ms=5)) as producer:
        next_at = time.monotonic()
        while count is None or sent < count:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            sample = sampler.sample()
            await producer.send_and_wait(topic, orjson.dumps(sample), key=sampler.service.encode())
            sent += 1
            if on_sample is not None:
                on_sample(sample)
    return sent
