"""Merge the partitions' window summaries of sharded models and judge each window once.

The merged alerts are a function of the summaries only, never of their arrival order: a window
is judged when it is **complete** (every input partition's watermark has passed its end), its
summaries are merged in partition order (so float sums add in one canonical order), and windows
are judged in window order. A partition that has not reported yet (no traffic of the model so far)
holds every window back: :meth:`ShardMerger.waiting` says how many windows wait. A summary seen
before (same model, partition and window: a runner re-emits it after a restart) is dropped; the
first stands, the two are identical by construction.

Examples
--------
See ``tests/test_shard.py``: a model's events split over k simulated partitions give the same
count-based alerts for every k.
"""

from __future__ import annotations

from typing import Any

from tripwire.config import MonitorConfig
from tripwire.engine import Alert, Engine, ModelMonitor, WindowSink
from tripwire.shard.summary import JOIN_COUNTS, SCHEMA, merge_summary


class ShardMerger:
    """Pending summaries, per-partition watermarks and the judging monitor of every sharded model.

    Parameters
    ----------
    config
        The monitor configuration; only its ``sharded`` models are merged.
    partitions
        How many input partitions report (the input topic's partition count).
    references
        Given references by model name (as :class:`~tripwire.engine.Engine` takes them).
    on_window
        Called with each merged window's statistics, as an engine's ``on_window``.
    """

    def __init__(self, config: MonitorConfig, partitions: int, references: dict[str, dict[str, Any]] | None = None,
                 on_window: WindowSink | None = None) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        self.partitions = partitions
        engine = Engine(config, references, on_window=on_window)  # loads and checks the references once
        self.references = {name: monitor.reference for name, monitor in engine.monitors.items()}
        self.monitors: dict[str, ModelMonitor] = {m.name: engine.monitors[m.name] for m in config.models if m.sharded}
        for monitor in self.monitors.values():
            monitor.merged_join_stats = {}
        self._reset_state()

    def _reset_state(self) -> None:
        self.pending: dict[str, dict[int, dict[int, dict[str, Any]]]] = {name: {} for name in self.monitors}
        self.watermarks: dict[str, dict[int, float]] = {name: {} for name in self.monitors}
        self.judged_below: dict[str, int | None] = dict.fromkeys(self.monitors)  # windows below are judged
        self.duplicates = 0
        self.unknown = 0  # summaries of a model this configuration does not shard
        self.windows_judged = 0

    def add(self, summary: dict[str, Any]) -> list[Alert]:
        """Take one partition's window summary; the alerts of the windows it completes, in window order.

        Raises
        ------
        ValueError
            When ``summary`` is not a window summary of this configuration (the caller dead-letters it).
        """
        if summary.get("type") != "window_summary" or summary.get("schema") != SCHEMA:
            raise ValueError(f"not a window summary of schema {SCHEMA}")
        model = summary["model"]
        if model not in self.monitors:
            self.unknown += 1
            return []
        window, partition = int(summary["window"]), int(summary["partition"])
        if not 0 <= partition < self.partitions:
            raise ValueError(f"summary of partition {partition}, but the input has {self.partitions} partitions")
        watermarks = self.watermarks[model]
        watermarks[partition] = max(watermarks.get(partition, float(summary["watermark"])), float(summary["watermark"]))
        judged_below = self.judged_below[model]
        if (judged_below is not None and window < judged_below) or partition in self.pending[model].get(window, {}):
            self.duplicates += 1
        else:
            self.pending[model].setdefault(window, {})[partition] = summary
        return self._judge_complete(model)

    def waiting(self) -> int:
        """Windows with summaries that are not complete yet (some partition's watermark is before their end)."""
        return sum(len(windows) for windows in self.pending.values())

    def _judge_complete(self, model: str) -> list[Alert]:
        watermarks = self.watermarks[model]
        if len(watermarks) < self.partitions:
            return []
        low = min(watermarks.values())
        seconds = self.monitors[model].config.window_seconds
        alerts: list[Alert] = []
        pending = self.pending[model]
        for window in sorted(pending):
            if (window + 1) * seconds > low:
                break
            parts = pending.pop(window)
            alerts += self._judge(self.monitors[model], window, [parts[p] for p in sorted(parts)])
            self.judged_below[model] = window + 1
        return alerts

    def _judge(self, monitor: ModelMonitor, window: int, summaries: list[dict[str, Any]]) -> list[Alert]:
        """Merge one complete window's summaries (in partition order) and judge it like an unsharded window."""
        for summary in summaries:
            merge_summary(monitor, summary)
        versions = [s["model_version"] for s in summaries if s["model_version"] is not None]
        if versions:
            monitor.model_version = versions[0]  # (partition order: a version change shows in its first partition)
        seconds = monitor.config.window_seconds
        start, ts = window * seconds, (window + 1) * seconds
        end = max(s["end"] for s in summaries)
        monitor.merged_join_stats = {key: sum(s["join"][key] for s in summaries) for key in JOIN_COUNTS}
        alerts = monitor.judge_data_window(start, end, sum(s["n"] for s in summaries), ts)
        perf_n = sum(s["performance"]["n"] for s in summaries)
        if perf_n:
            perf = [s["performance"] for s in summaries if s["performance"]["n"]]
            monitor._perf_start = min(p["start"] for p in perf)
            perf_end = max(p["end"] for p in perf)
            alerts += self._watch_error(monitor, perf_end)
            alerts += monitor.judge_performance_window(monitor._perf_start, perf_end, perf_n, ts)
        monitor._reset_performance_window()
        self.windows_judged += 1
        return alerts

    @staticmethod
    def _watch_error(monitor: ModelMonitor, ts: float) -> list[Alert]:
        """The change detector of the error stream, fed the merged window's error (one value per window)."""
        detector = monitor.change.get("error")
        if detector is None:
            return []
        result = monitor.performance.result()
        if monitor.task == "classification":
            error = 1.0 - result["accuracy"]
        else:
            error = result["mae"] / (monitor.reference["baseline"].get("mae") or 1.0)
        return monitor._change_alarm("error", detector, ts) if detector.update(error) else []

    # -- checkpoint ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Pending summaries, watermarks and every judging monitor's state, as plain JSON-able data."""
        return {
            "partitions": self.partitions,
            "pending": {m: [[w, [parts[p] for p in sorted(parts)]] for w, parts in sorted(windows.items())]
                        for m, windows in self.pending.items()},
            "watermarks": {m: [[p, w] for p, w in sorted(marks.items())] for m, marks in self.watermarks.items()},
            "judged_below": self.judged_below,
            "counts": [self.duplicates, self.unknown, self.windows_judged],
            "monitors": {name: monitor.state() for name, monitor in self.monitors.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` output (of a merger with the same configuration and partitions)."""
        if state["partitions"] != self.partitions:
            raise ValueError(f"checkpoint of {state['partitions']} partitions, but the input has {self.partitions}")
        self._reset_state()
        for model in self.monitors:
            self.pending[model] = {int(w): {int(s["partition"]): s for s in parts}
                                   for w, parts in state["pending"].get(model, [])}
            self.watermarks[model] = {int(p): float(w) for p, w in state["watermarks"].get(model, [])}
            self.judged_below[model] = state["judged_below"].get(model)
            if model in state["monitors"]:
                self.monitors[model].restore(state["monitors"][model])
        self.duplicates, self.unknown, self.windows_judged = state["counts"]
