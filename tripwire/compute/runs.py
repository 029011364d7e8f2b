"""Training runs: what MLflow's system metrics say about the compute a run had, and advice on it.

A run started with ``mlflow.start_run(log_system_metrics=True)`` records, every sampling interval
(``mlflow.set_system_metrics_sampling_interval`` or ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``),
``system/cpu_utilization_percentage``, ``system/system_memory_usage_percentage`` and, with a GPU
and ``nvidia-ml-py``, ``system/gpu_<i>_utilization_percentage`` and
``system/gpu_<i>_memory_usage_percentage`` (``system/<node>/...`` when a node id is set). Each
is summarised per run (mean, p95, share of samples under the low mark) and judged:

* CPU by the same rule as replicas (:func:`~tripwire.compute.capacity.desired_replicas`, CPUs
  for replicas): "CPU p95 18 % of 8 CPUs: 2 would do", or "... 3 would do" for a CPU-bound run.
  MLflow does not record the CPU count: tag the run ``tripwire.cpu_count`` (or log a
  ``cpu_count`` param), or pass ``cpus``; without it the advice is a share of the machine;
  MLflow's CPU metric is the whole host's (on a shared host or a Kubernetes node, everyone's):
  :func:`watch_process` adds the run's own process tree to MLflow's sampler as
  ``system/process_cpu_utilization_percentage`` (CPU time, percent of the run's CPUs) and
  ``system/process_cpu_demand_percentage`` (CPU time plus time waiting for a CPU: what it wanted,
  see :class:`~tripwire.compute.sampler.ProcessTreeCpu`); the advice goes by the demand when present;
* memory and GPU memory: "p95 97 %: at risk of running out" at or above ``memory_risk``;
* a GPU whose utilization p95 stays under the low mark: it idled.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tripwire.alerts import AlertPolicy, Finding
from tripwire.compute.capacity import desired_replicas
from tripwire.compute.settings import CapacitySettings
from tripwire.config import Threshold

SYSTEM_METRIC = re.compile(r"^system/(?:(?P<node>[^/]+)/)?(?P<name>(?:process_)?cpu_utilization_percentage|"
                           r"process_cpu_demand_percentage|system_memory_usage_percentage|"
                           r"gpu_(?P<gpu>\d+)_(?:utilization|memory_usage)_percentage)$")
CPU_COUNT_TAG = "tripwire.cpu_count"
ADVICE_TAG = "tripwire.compute.advice"


class UnknownExperiment(LookupError):
    """The tracking server has no experiment of that name."""


@dataclass(frozen=True)
class Usage:
    """One resource of one run: utilization percentages summarised."""

    n: int
    mean: float
    p95: float
    low_share: float  # share of the samples under the low mark

    @classmethod
    def of(cls, percentages: list[float], low_mark: float) -> Usage:
        values = np.asarray(percentages, dtype=float)
        return cls(len(values), float(values.mean()), float(np.percentile(values, 95)),
                   float((values < 100 * low_mark).mean()))


@dataclass(frozen=True)
class Advice:
    resource: str  # cpu, memory, gpu_<i>, gpu_<i>_memory
    action: str  # scale_down, scale_up, at_risk
    message: str
    value: float  # the p95 judged, in percent
    threshold: Threshold  # where the advice starts, in percent


@dataclass
class RunReport:
    run_id: str
    run_name: str
    status: str
    start: float | None  # epoch seconds
    end: float | None
    node: str | None
    cpu_count: int | None
    usage: dict[str, Usage] = field(default_factory=dict)
    advice: list[Advice] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.run_name or self.run_id[:8]}" + (f" [{self.node}]" if self.node else "")

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        for item in document["advice"]:
            threshold = item.pop("threshold")
            item["threshold"], item["direction"] = threshold["warning"], threshold["direction"]
        return document


def training_runs(experiment: str, *, tracking_uri: str | None = None, settings: CapacitySettings | None = None,
                  cpus: int | None = None) -> list[RunReport]:
    """Every run of ``experiment`` that logged system metrics, summarised and judged (oldest first)."""
    from mlflow import MlflowClient

    settings = settings or CapacitySettings()
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise UnknownExperiment(f"no MLflow experiment named {experiment!r} at {client.tracking_uri}")
    reports = []
    for run in _all_runs(client, found.experiment_id):
        series: dict[str | None, dict[str, list[float]]] = {}
        for key in sorted(run.data.metrics):
            match = SYSTEM_METRIC.match(key)
            if match is None:
                continue
            history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))
            values = [m.value for m in history if math.isfinite(m.value)]
            if values:
                series.setdefault(match["node"], {})[_resource(match["name"])] = values
        for by_resource in series.values():
            if "cpu" not in by_resource and "host_cpu" in by_resource:
                by_resource["cpu"] = by_resource.pop("host_cpu")  # the host's is all there is
        count = cpus or _cpu_count(run)
        for node, by_resource in sorted(series.items(), key=lambda item: item[0] or ""):
            report = RunReport(run.info.run_id, run.info.run_name or "", run.info.status,
                               _seconds(run.info.start_time), _seconds(run.info.end_time), node, count,
                               {name: Usage.of(values, settings.low_utilization) for name, values in by_resource.items()})
            report.advice = advise(report, settings)
            reports.append(report)
    return reports


def _all_runs(client: Any, experiment_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], order_by=["attributes.start_time ASC"], max_results=1000,
                                  page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _resource(metric: str) -> str:
    if metric == "process_cpu_demand_percentage":
        return "cpu_demand"
    if metric == "process_cpu_utilization_percentage":
        return "cpu"
    if metric == "cpu_utilization_percentage":
        return "host_cpu"
    if metric == "system_memory_usage_percentage":
        return "memory"
    return metric.removesuffix("_percentage").replace("_utilization", "").replace("_memory_usage", "_memory")


def watch_process(run_id: str | None = None, *, pid: int | None = None, cpus: int | None = None) -> None:
    """Sample the run's own process tree with MLflow's system metrics; tag its CPU count.

    Call it inside ``mlflow.start_run(log_system_metrics=True)``: MLflow's sampler of that run then
    also logs ``system/process_cpu_utilization_percentage``, the CPU of process ``pid`` (default:
    this one) and its children in percent of ``cpus`` (default: the CPUs it may run on), at the
    same interval as the host metrics. The run is tagged ``tripwire.cpu_count``.
    """
    import mlflow
    from mlflow.system_metrics.metrics.base_metrics_monitor import BaseMetricsMonitor
    from mlflow.tracking import fluent

    from tripwire.compute.sampler import ProcessTreeCpu

    if run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise RuntimeError("watch_process needs a run: call it inside mlflow.start_run(log_system_metrics=True)")
        run_id = active.info.run_id
    sampler = fluent.run_id_to_system_metrics_monitor.get(run_id)
    if sampler is None:
        raise RuntimeError(f"run {run_id} has no system-metrics sampler: start it with "
                           "mlflow.start_run(log_system_metrics=True)")
    cpu = ProcessTreeCpu(pid if pid is not None else os.getpid(), cpus)

    class ProcessMonitor(BaseMetricsMonitor):
        def collect_metrics(self) -> None:
            self._metrics["process_cpu_utilization_percentage"].append(cpu.percent())
            demand = cpu.demand_percent()
            if demand is not None:
                self._metrics["process_cpu_demand_percentage"].append(demand)

        def aggregate_metrics(self) -> dict[str, float]:
            return {k: round(sum(v) / len(v), 1) for k, v in self._metrics.items()}

    sampler.monitors.append(ProcessMonitor())  # its thread reads the list at every sample
    mlflow.MlflowClient().set_tag(run_id, CPU_COUNT_TAG, f"{cpu.cpus:g}")


def _cpu_count(run: Any) -> int | None:
    for raw in (run.data.tags.get(CPU_COUNT_TAG), run.data.params.get("cpu_count")):
        try:
            count = int(raw)
        except (TypeError, ValueError):
            continue
        if count > 0:
            return count
    return None


def _seconds(millis: int | None) -> float | None:
    return None if millis is None else millis / 1000.0


def advise(report: RunReport, settings: CapacitySettings) -> list[Advice]:
    """The advice on one run's usage; nothing for a resource that was sized right."""
    advice = []
    cpu, label = judged_cpu(report)
    if cpu is not None:
        advice += _cpu_advice(cpu, label, report.cpu_count, settings)
    for resource, usage in sorted(report.usage.items()):
        if resource == "host_cpu":
            continue  # the run's own CPU (watch_process) is judged instead
        if resource == "memory" or resource.endswith("_memory"):
            name = "memory" if resource == "memory" else f"GPU {resource.split('_')[1]} memory"
            if usage.p95 >= 100 * settings.memory_risk:
                advice.append(Advice(resource, "at_risk", f"{name} p95 {usage.p95:.0f} %: at risk of running out",
                                     usage.p95, Threshold(100 * settings.memory_risk, None)))
        elif resource.startswith("gpu_") and usage.p95 < 100 * settings.low_utilization:
            advice.append(Advice(resource, "scale_down",
                                 f"GPU {resource.split('_')[1]} p95 {usage.p95:.0f} %: it idled "
                                 f"{usage.low_share:.0%} of the time; a smaller GPU (or none) would do",
                                 usage.p95, Threshold(100 * settings.low_utilization, None, "below")))
    return advice


def judged_cpu(report: RunReport) -> tuple[Usage | None, str]:
    """The CPU figure the advice goes by: the run's demand when recorded, else its CPU time."""
    if "cpu_demand" in report.usage:
        return report.usage["cpu_demand"], "CPU demand"
    return report.usage.get("cpu"), "CPU"


def _cpu_advice(cpu: Usage, label: str, count: int | None, settings: CapacitySettings) -> list[Advice]:
    target, tolerance = settings.target_utilization, settings.tolerance
    up = Threshold(100 * target * (1 + tolerance), None)
    if count is None:
        # The machine as one unit: the share of it that would hold the p95 at the target.
        share = cpu.p95 / (100 * target)
        if abs(share - 1) <= tolerance:
            return []
        if share > 1:
            return [Advice("cpu", "scale_up", f"{label} p95 {cpu.p95:.0f} % of the machine: CPU-bound, "
                                              f"{share:.1f}x the CPUs would do (tag the run {CPU_COUNT_TAG} "
                                              "for a count)", cpu.p95, up)]
        return [Advice("cpu", "scale_down", f"{label} p95 {cpu.p95:.0f} % of the machine: {share:.0%} of its CPUs "
                                            f"would do (tag the run {CPU_COUNT_TAG} for a count)",
                       cpu.p95, Threshold(100 * target * (1 - tolerance), None, "below"))]
    needed = desired_replicas(count, cpu.p95 / 100, target, tolerance=tolerance)
    of = f"{label} p95 {cpu.p95:.0f} % of {count} CPU{'s' * (count != 1)}"
    if needed > count:
        return [Advice("cpu", "scale_up", f"{of}: CPU-bound, {needed} would do", cpu.p95, up)]
    if needed < count:
        # needed < count exactly when p95 / target is under both 1 - tolerance and (count - 1) / count.
        down = Threshold(100 * target * min(1 - tolerance, (count - 1) / count), None, "below")
        return [Advice("cpu", "scale_down", f"{of}: {needed} would do", cpu.p95, down)]
    return []


def tag_runs(reports: list[RunReport], *, tracking_uri: str | None = None) -> None:
    """Write the advice back to each run: ``tripwire.compute.advice`` and one tag per resource."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    for report in reports:
        prefix = f"tripwire.compute.{report.node}." if report.node else "tripwire.compute."
        client.set_tag(report.run_id, ADVICE_TAG if not report.node else prefix + "advice",
                       "; ".join(a.message for a in report.advice) or "sized right")
        for resource in report.usage:
            action = next((a.action for a in report.advice if a.resource == resource), "ok")
            client.set_tag(report.run_id, prefix + resource, action)


def run_alerts(reports: list[RunReport], experiment: str) -> list[dict[str, Any]]:
    """``infrastructure`` alerts (model = the experiment, signal ``training:<run id>``) for the advice."""
    policy = AlertPolicy(min_samples=1)
    alerts = []
    for report in reports:
        start = report.start or 0.0
        end = report.end or start
        for item in report.advice:
            usage = judged_cpu(report)[0] if item.resource == "cpu" else report.usage[item.resource]
            assert usage is not None
            finding = Finding(model=experiment, kind="infrastructure", signal=f"training:{report.run_id}",
                              segment=report.node, detector=f"{item.resource}_p95", value=item.value,
                              threshold=item.threshold, window_start=start, window_end=end, n=usage.n,
                              evidence={"run_name": report.run_name, "action": item.action, "mean": usage.mean,
                                        "low_share": usage.low_share, "cpu_count": report.cpu_count},
                              message=f"run {report.label}: {item.message}")
            alert = policy.evaluate(finding, model_version=None, reference=None, ts=end)
            if alert is not None:
                alerts.append(alert)
    return alerts


def render(reports: list[RunReport], settings: CapacitySettings) -> str:
    """The table ``tripwire compute runs`` prints."""
    low = f"<{100 * settings.low_utilization:.0f}%"
    lines = [f"{'run':<28} {'samples':>7} {'CPU* mean':>9} {'p95':>5} {low:>5} {'mem p95':>7} {'GPU p95':>7}  advice"]
    for report in reports:
        cpu, memory = judged_cpu(report)[0], report.usage.get("memory")
        gpus = [u.p95 for name, u in report.usage.items() if re.fullmatch(r"gpu_\d+", name)]
        n = max(u.n for u in report.usage.values())
        advice = "; ".join(a.message for a in report.advice) or "sized right"
        lines.append(f"{report.label[:28]:<28} {n:>7} {_pct(cpu.mean if cpu else None):>9} "
                     f"{_pct(cpu.p95 if cpu else None):>5} {_pct(100 * cpu.low_share if cpu else None):>5} "
                     f"{_pct(memory.p95 if memory else None):>7} "
                     f"{_pct(max(gpus) if gpus else None):>7}  {advice}")
    lines.append("CPU*: the run's CPU demand when watch_process recorded it, else its CPU time (else the host's)")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"
