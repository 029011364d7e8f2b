"""Capacity view per service and scale advice by the Kubernetes HPA rule.

The rule (Kubernetes' Horizontal Pod Autoscaler, ``autoscaling/v2``)::

    desired = ceil(current x utilization / target)

unchanged while ``|utilization / target - 1| <= tolerance``, clamped to ``[min_replicas,
max_replicas]``. With several metrics (CPU, GPU) the largest desired count wins. Scaling up
applies at once; scaling down is *stabilised*: the advice is the highest recommendation of the
last ``stabilization_seconds``, so one quiet minute does not remove replicas that the next busy
one needs.

Everything here is pure and deterministic: time is the samples' own ``ts`` (epoch seconds), never
the clock, so a replay of the same samples gives the same advice.

>>> desired_replicas(4, 0.9, 0.5)          # ceil(4 x 0.9 / 0.5) = ceil(7.2)
8
>>> desired_replicas(4, 0.52, 0.5)         # ratio 1.04: within the 0.1 tolerance
4
>>> desired_replicas(4, 0.05, 0.5, min_replicas=2)
2
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeGuard

import numpy as np

from tripwire.alerts import alert_id
from tripwire.compute.settings import CapacitySettings
from tripwire.config import DEFAULT_THRESHOLDS
from tripwire.events import format_ts

WORKER_SERVICE_PREFIX = "tripwire:"  # the monitor's own workers, as a service per app id
# Growth of the summed consumer lag over the window that adds a worker (the worker's own alert threshold).
LAG_GROWTH_RECORDS = float(DEFAULT_THRESHOLDS["consumer_lag_growth"].warning or 10_000)


def desired_replicas(current: int, utilization: float, target: float, *, tolerance: float = 0.1,
                     min_replicas: int = 1, max_replicas: int | None = None) -> int:
    """Replicas that bring ``utilization`` (0-1, averaged over ``current`` replicas) to ``target``."""
    if current < 1:
        raise ValueError(f"current replicas must be at least 1, got {current}")
    if not target > 0:
        raise ValueError(f"target utilization must be > 0, got {target}")
    ratio = utilization / target
    if round(abs(ratio - 1.0), 9) <= tolerance:  # rounded: 0.66 / 0.6 is 1.1000000000000003
        desired = current
    else:
        # Rounded first so that 2 x 0.35 / 0.7 is 1, not ceil(1.0000000000000002) = 2.
        desired = math.ceil(round(current * ratio, 9))
    desired = max(desired, min_replicas)
    return desired if max_replicas is None else min(desired, max_replicas)


class ScaleDownStabilizer:
    """Kubernetes' scale-down stabilisation window over one stream of recommendations.

    A recommendation above the current count is taken at once; one below it only as far as the
    highest recommendation of the last ``seconds`` (recommendations older than ``now - seconds``
    are forgotten) allows.

    >>> stabilizer = ScaleDownStabilizer(300)
    >>> [stabilizer.recommend(t, current=4, desired=d) for t, d in [(0, 4), (60, 2), (240, 2), (300, 2)]]
    [4, 4, 4, 2]
    >>> stabilizer.recommend(310, current=2, desired=6)   # scale up: immediate
    6
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._history: deque[tuple[float, int]] = deque()

    def recommend(self, now: float, *, current: int, desired: int) -> int:
        while self._history and self._history[0][0] <= now - self.seconds:
            self._history.popleft()
        self._history.append((now, desired))  # after the pruning: the current one always counts
        if desired >= current:
            return desired
        return min(current, max(d for _t, d in self._history))


@dataclass
class _Sample:
    ts: float
    replica: str
    metrics: dict[str, float]  # metric -> utilization 0-1 (cpu, gpu)
    memory: float | None  # 0-1
    consumer_lag: float | None


@dataclass
class _Service:
    stabilizer: ScaleDownStabilizer
    samples: deque[_Sample] = field(default_factory=deque)
    last_advice: tuple[int, int] | None = None  # (current, desired) of the last emitted event
    judged_at: float | None = None


def normalize_sample(sample: Mapping[str, Any]) -> tuple[str, _Sample] | None:
    """(service, sample) from a replica sample or a worker utilization sample; None if it is neither."""
    ts, cpu = sample.get("ts"), sample.get("cpu_percent")
    if not _number(ts) or not _number(cpu):
        return None
    kind = sample.get("type")
    if kind == "replica":
        service, replica = sample.get("service"), sample.get("replica")
        lag = None
    elif kind == "utilization":  # a tripwire worker: cpu_percent is of one core, its whole capacity
        service, replica = f"{WORKER_SERVICE_PREFIX}{sample.get('app_id', 'tripwire')}", sample.get("worker")
        lag = sample.get("consumer_lag")
    else:
        return None
    if not (isinstance(service, str) and service and isinstance(replica, str) and replica):
        return None
    # Sized by what the replica wanted (CPU time + time waiting for a CPU) when the sampler could tell.
    demand = sample.get("cpu_demand_percent")
    metrics = {"cpu": float(demand if _number(demand) else cpu) / 100.0}
    readings = [g.get("utilization_percent") for g in sample.get("gpus") or [] if isinstance(g, dict)]
    gpus = [float(g) for g in readings if _number(g)]
    if gpus:
        metrics["gpu"] = max(gpus) / 100.0
    memory = sample.get("memory_percent")
    return service, _Sample(float(ts), replica, metrics, float(memory) / 100.0 if _number(memory) else None,
                            float(lag) if _number(lag) else None)


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class CapacityMonitor:
    """Utilization samples per service and replica, the model's serving stats -> ``capacity`` events.

    Feed it replica samples (``tripwire compute sample``), the worker's own utilization samples
    and the engine's windows; call :meth:`advise` with the time of the latest sample. A replica's
CPU utilization is its ``cpu_demand_percent`` when the sample has one (see
:class:`~tripwire.compute.sampler.ProcessTreeCpu`), else its ``cpu_percent``. An event is
    emitted when a service's (current, desired) pair changes; :attr:`recommended` holds the latest
    advice of every service (the Prometheus gauge).

    Examples
    --------
    >>> from tripwire.compute.settings import CapacitySettings
    >>> monitor = CapacityMonitor(CapacitySettings(target_utilization=0.5, stabilization_seconds=120))
    >>> def busy(t, cpu):
    ...     for replica in ("a", "b"):
    ...         monitor.observe_sample({"type": "replica", "service": "s", "replica": replica, "ts": t,
    ...                                 "cpu_percent": cpu})
    ...     return [(e["action"], e["current_replicas"], e["desired_replicas"]) for e in monitor.advise(t)]
    >>> busy(0, 90.0)          # ceil(2 x 0.9 / 0.5) = 4
    [('scale_out', 2, 4)]
    >>> busy(60, 10.0)         # quiet: 1 would do, but the stabilisation window holds the 2 there are
    [('hold', 2, 2)]
    >>> busy(110, 10.0)        # no change, no event
    []
    >>> busy(120, 10.0)        # the busy sample left the 120 s window: ceil(2 x 0.1 / 0.5) = 1
    [('scale_down', 2, 1)]
    """

    def __init__(self, settings: CapacitySettings | None = None, *, worker_partitions: int | None = None) -> None:
        self.settings = settings or CapacitySettings()
        self.worker_partitions = worker_partitions
        self.services: dict[str, _Service] = {}
        self.serving: dict[str, deque[dict[str, Any]]] = {}  # model -> its last two windows' serving stats
        self.recommended: dict[str, int] = {}

    def observe_sample(self, sample: Mapping[str, Any]) -> bool:
        """Add one sample; False (and nothing kept) when it is not a sample this view understands."""
        parsed = normalize_sample(sample)
        if parsed is None:
            return False
        service, entry = parsed
        state = self.services.get(service)
        if state is None:
            state = self.services[service] = _Service(ScaleDownStabilizer(self.settings.stabilization_seconds))
        state.samples.append(entry)
        return True

    def observe_window(self, window: Mapping[str, Any]) -> None:
        """An engine window (the ``on_window`` sink): keep the model's request rate and latency."""
        stats = window.get("stats") or {}
        if "serving.throughput_per_s" not in stats and "serving.latency_p95" not in stats:
            return
        history = self.serving.setdefault(window["model"], deque(maxlen=2))
        history.append({"end": window.get("end"), "latency_p95_ms": stats.get("serving.latency_p95"),
                        "request_rate_per_s": stats.get("serving.throughput_per_s")})

    def advise(self, now: float) -> list[dict[str, Any]]:
        """Capacity events of the services whose advice changed, judged at sample time ``now``."""
        events = []
        for service in sorted(self.services):
            state = self.services[service]
            if state.judged_at is not None and now < state.judged_at:
                continue  # a sample from a host whose clock lags: this service was judged later already
            while state.samples and state.samples[0].ts <= now - self.settings.window_seconds:
                state.samples.popleft()
            if not state.samples:
                del self.services[service]  # silent for a whole window: gone, or its sampler is
                self.recommended.pop(service, None)
                continue
            live = [s for s in state.samples if s.ts <= now]
            if not live:
                continue  # its samples are all ahead of this one's time: judged at theirs
            state.judged_at = now
            event = self._judge(service, state, live, now)
            self.recommended[service] = event["desired_replicas"]
            pair = (event["current_replicas"], event["desired_replicas"])
            if pair != state.last_advice:
                state.last_advice = pair
                events.append(event)
        return events

    def _judge(self, service: str, state: _Service, samples: list[_Sample], now: float) -> dict[str, Any]:
        settings = self.settings
        by_replica: dict[str, list[_Sample]] = {}
        for sample in samples:
            by_replica.setdefault(sample.replica, []).append(sample)
        current = len(by_replica)
        is_worker = service.startswith(WORKER_SERVICE_PREFIX)
        ceiling = settings.max_replicas
        if is_worker and self.worker_partitions:
            ceiling = min(ceiling, self.worker_partitions)  # a worker beyond the partition count idles
        floor = min(settings.min_replicas, ceiling)
        utilization: dict[str, float] = {}
        wanted: dict[str, int] = {}
        for metric in ("cpu", "gpu"):
            per_replica = [np.mean([s.metrics[metric] for s in rows if metric in s.metrics])
                           for rows in by_replica.values() if any(metric in s.metrics for s in rows)]
            if not per_replica:
                continue
            utilization[metric] = float(np.mean(per_replica))  # the HPA's average over the replicas
            wanted[metric] = desired_replicas(current, utilization[metric], settings.target_utilization,
                                              tolerance=settings.tolerance, min_replicas=floor, max_replicas=ceiling)
        lag_growth = None
        if is_worker:
            lags = [[s.consumer_lag for s in rows if s.consumer_lag is not None] for rows in by_replica.values()]
            lag_growth = sum(values[-1] - values[0] for values in lags if len(values) >= 2)
            if lag_growth >= LAG_GROWTH_RECORDS:
                wanted["consumer_lag"] = min(ceiling, max(current + 1, floor))
        metric = max(wanted, key=lambda m: (wanted[m], m == "cpu"))
        raw = wanted[metric]
        desired = state.stabilizer.recommend(now, current=current, desired=raw)
        action = "scale_out" if desired > current else "scale_down" if desired < current else "hold"
        cpu = [s.metrics["cpu"] for s in samples]
        memory = [s.memory for s in samples if s.memory is not None]
        evidence: dict[str, Any] = {
            "replicas": sorted(by_replica),
            "cpu_mean": round(utilization["cpu"], 4),
            "cpu_p95": round(float(np.percentile(cpu, 95)), 4),
            "memory_p95": round(float(np.percentile(memory, 95)), 4) if memory else None,
            "recommended_now": raw,
        }
        if "gpu" in utilization:
            evidence["gpu_mean"] = round(utilization["gpu"], 4)
        if lag_growth is not None:
            evidence["consumer_lag_growth"] = lag_growth
        evidence.update(self._serving_evidence(service))
        start = samples[0].ts
        event = {
            "type": "capacity", "schema": 1,
            "capacity_id": alert_id("capacity", service, format_ts(now), current, desired),
            "service": service, "ts": format_ts(now), "action": action,
            "current_replicas": current, "desired_replicas": desired, "metric": metric,
            "utilization": round(utilization.get(metric, utilization["cpu"]), 4),
            "target_utilization": settings.target_utilization,
            "window": {"start": format_ts(start), "end": format_ts(now), "n": len(samples)},
            "evidence": evidence,
        }
        event["message"] = _message(event, stabilized=raw < desired)
        return event

    def _serving_evidence(self, service: str) -> dict[str, Any]:
        history = self.serving.get(service)
        if not history:
            return {}
        last = history[-1]
        trend = None
        if len(history) == 2 and last["latency_p95_ms"] is not None and history[0]["latency_p95_ms"] is not None:
            trend = round(last["latency_p95_ms"] - history[0]["latency_p95_ms"], 3)
        return {"request_rate_per_s": last["request_rate_per_s"], "latency_p95_ms": last["latency_p95_ms"],
                "latency_p95_trend_ms": trend}


def _message(event: dict[str, Any], *, stabilized: bool) -> str:
    service, current, desired = event["service"], event["current_replicas"], event["desired_replicas"]
    evidence = event["evidence"]
    names = {"cpu": "CPU", "gpu": "GPU", "consumer_lag": "consumer lag"}
    if event["metric"] == "consumer_lag":
        why = f"consumer lag grew by {evidence['consumer_lag_growth']:,.0f} records in the window"
    else:
        why = (f"{names[event['metric']]} {100 * event['utilization']:.0f} % (p95 {100 * evidence['cpu_p95']:.0f} %) "
               f"against a {100 * event['target_utilization']:.0f} % target")
    if evidence.get("request_rate_per_s") is not None:
        why += f"; {evidence['request_rate_per_s']:.3g} requests/s"
    if evidence.get("latency_p95_ms") is not None:
        trend = evidence.get("latency_p95_trend_ms")
        why += f", latency p95 {evidence['latency_p95_ms']:.0f} ms" + (f" ({trend:+.1f} ms)" if trend is not None else "")
    if event["action"] == "hold":
        held = f" (held by the scale-down stabilisation window; now {evidence['recommended_now']} would do)" \
            if stabilized else ""
        fit = "replica fits" if current == 1 else "replicas fit"
        return f"{service}: {current} {fit}{held}: {why}"
    verb = "scale out" if event["action"] == "scale_out" else "scale down"
    return f"{service}: {verb} {current} -> {desired} replica{'s' * (desired != 1)}: {why}"
