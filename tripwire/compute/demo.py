"""The demo's capacity story: three replicas of ``fuel-efficiency`` go through a crunch and an idle period.

A parallel stream of replica samples (what ``tripwire compute sample`` would publish every 15 s per
replica), beside the demo's event stream, which stays as it was: the capacity view joins the two
in event time (samples by their ``ts``, windows by their end) and advises by the HPA rule with the
default ``[capacity]`` settings (70 % target, 300 s scale-down stabilisation).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from tripwire.compute.capacity import CapacityMonitor
from tripwire.demo import DURATION_MINUTES, START
from tripwire.events import parse_ts

SERVICE = "fuel-efficiency"
REPLICAS = ("fuel-efficiency-0", "fuel-efficiency-1", "fuel-efficiency-2")
EVERY_SECONDS = 15.0
NORMAL, CRUNCH, IDLE = 0.52, 0.95, 0.12  # CPU utilization of a replica in each phase


@dataclass(frozen=True)
class CapacityIncident:
    name: str
    action: str  # the advice that counts as catching it
    at_minute: float
    until_minute: float
    utilization: float


INCIDENTS = (
    CapacityIncident("capacity crunch: fuel-efficiency replicas at 95 % CPU (6 min)", "scale_out", 24, 30, CRUNCH),
    CapacityIncident("idle period: fuel-efficiency replicas at 12 % CPU (12 min)", "scale_down", 34, 46, IDLE),
)


def samples(seed: int = 7) -> list[dict[str, Any]]:
    """The replica samples of the whole demo, in time order."""
    rng = np.random.default_rng(seed + 2_000)
    out = []
    for step in range(int(DURATION_MINUTES * 60 / EVERY_SECONDS)):
        for offset, replica in enumerate(REPLICAS):
            ts = START + step * EVERY_SECONDS + offset * 5.0
            minute = (ts - START) / 60
            level = next((i.utilization for i in INCIDENTS if i.at_minute <= minute < i.until_minute), NORMAL)
            cpu = float(np.clip(level + rng.normal(0, 0.03), 0.0, 1.0))
            out.append({"type": "replica", "schema": 1, "service": SERVICE, "replica": replica, "ts": ts,
                        "cpus": 2.0, "cpu_percent": round(100 * cpu, 2),
                        "memory_percent": round(float(38 + 20 * cpu + rng.normal(0, 1)), 2)})
    return out


class CapacityDemo:
    """Collects the engine's windows (``on_window``), then replays them with the samples in event time."""

    def __init__(self, seed: int = 7) -> None:
        self.seed = seed
        self.windows: list[dict[str, Any]] = []

    def observe_window(self, window: dict[str, Any]) -> None:
        if window["model"] == SERVICE:
            self.windows.append(window)

    def advise(self) -> list[dict[str, Any]]:
        monitor = CapacityMonitor()
        timeline = [(w["end"], 0, w) for w in self.windows] + [(s["ts"], 1, s) for s in samples(self.seed)]
        events = []
        for ts, kind, item in sorted(timeline, key=lambda entry: entry[:2]):
            if kind == 0:
                monitor.observe_window(item)
            elif monitor.observe_sample(item):
                events += monitor.advise(ts)
        return events


def record_times(stream: list[bytes]) -> list[float]:
    """Event time of every record (a malformed one takes its predecessor's), for record numbers."""
    times, last = [], START
    for record in stream:
        try:
            last = parse_ts(orjson.loads(record)["ts"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            pass
        times.append(last)
    return times


def score(events: list[dict[str, Any]], stream: list[bytes]) -> list[tuple[CapacityIncident, int, dict | None, int | None]]:
    """Per incident: its first record number, the first matching advice at or after it, and its record number."""
    times = record_times(stream)
    rows = []
    for incident in INCIDENTS:
        at = START + incident.at_minute * 60
        injected = bisect.bisect_left(times, at) + 1
        hit = next((e for e in events if e["action"] == incident.action and parse_ts(e["ts"]) >= at), None)
        index = bisect.bisect_left(times, parse_ts(hit["ts"])) + 1 if hit else None
        rows.append((incident, injected, hit, index))
    return rows
