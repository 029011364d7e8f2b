"""The report's model of a replay: every statistic of a model as a series over its windows.

:class:`WindowLog` keeps what the report needs of the engine's windows; :func:`build_series` turns
one model's windows and alerts into :class:`Series`, each with the threshold its detector uses
converted to the scale it is drawn on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Mapping, Sequence

from tripwire.config import DRIFT_STATISTICS, ModelConfig, MonitorConfig, Threshold
from tripwire.detectors.registry import families, family_of_statistic
from tripwire.findings import ERROR_METRICS, QUALITY_CHECKS, degradation
from tripwire.report.text import alert_time, anchor, fmt
from tripwire.statistic_keys import split_statistic

Window = Mapping[str, Any]
Alert = Mapping[str, Any]

STREAM_MODEL = "*"  # alerts about the input stream itself (dead-letter rate), not one model

GROUPS = {  # group -> (title, family switch in the config)
    "drift": ("feature drift", "drift"),
    "prediction": ("prediction drift", "drift"),
    "quality": ("data quality", "quality"),
    "performance": ("performance", "performance"),
    "estimated": ("estimated performance", "estimated"),
    "fairness": ("fairness", "fairness"),
    "serving": ("serving", "serving"),
    "change": ("change detector", "change"),
    "class": ("per class", None),  # a multi-class model's precision / recall of each class, as context
    "labels": ("labels", None),
}


def group_title(group: str) -> str:
    """A report group's title: a built-in one's, or a registered family's (its title, else its name)."""
    if group in GROUPS:
        return GROUPS[group][0]
    registered = next((f for f in families() if f.name == group), None)
    return (registered.title or registered.name) if registered is not None else group


def group_family(group: str) -> str | None:
    """The [detectors] switch of a report group (a registered family's group is its name)."""
    return GROUPS[group][1] if group in GROUPS else group


class WindowLog:
    """An ``on_window`` sink that keeps what the report needs, in bounded memory.

    Every scalar statistic of every window is kept; of the window histograms (``*.fractions``)
    only the one of the worst window so far per model and signal, by the drift statistic that
    alerts. A month-long replay of 50 features therefore costs scalars, not histograms.
    """

    def __init__(self, config: MonitorConfig | None = None) -> None:
        self.windows: list[dict[str, Any]] = []
        self._config = config
        self._best: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    def __call__(self, window: Window) -> None:
        stats = dict(window["stats"])
        model = window["model"]
        config = self._config.model(model) if self._config is not None else None
        preferred = config.drift_statistic if config is not None else "psi"
        for key in [k for k in stats if k.endswith(".fractions")]:
            signal = key.removesuffix(".fractions")
            value = stats.get(f"{signal}.{preferred}")
            if value is None:
                value = stats.get(f"{signal}.psi")
            best = self._best.get((model, signal))
            if value is not None and (best is None or value > best[0]):
                if best is not None:
                    best[1].pop(key, None)
                self._best[(model, signal)] = (value, stats)
            else:
                del stats[key]
        self.windows.append({**window, "stats": stats})


# -- the model of the page ----------------------------------------------------------------------
@dataclass(eq=False, slots=True)
class Point:
    x: float  # window end (event time, epoch s)
    y: float  # value as drawn
    a: float  # value the alert policy compares with the threshold
    window: Window


def _identity(value: float) -> float:
    return value


@dataclass(eq=False)
class Series:
    model: str
    signal: str
    statistic: str
    group: str
    detector: str | None = None
    threshold: Threshold | None = None  # on the alert's scale
    threshold_source: str = ""
    to_alert: Callable[[float], float] = _identity
    lines: list[tuple[str, float]] = field(default_factory=list)  # (severity, y) as drawn
    baseline: float | None = None
    include_zero: bool = True
    note: str = ""
    # Parallel columns, one entry per window (plain floats: cheap, and invisible to the garbage collector).
    xs: list[float] = field(default_factory=list)  # window end
    ys: list[float] = field(default_factory=list)  # value as drawn
    avals: list[float] = field(default_factory=list)  # value the alert policy compares
    wins: list[Window] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return anchor("s", self.model, self.signal, self.statistic)

    @property
    def label(self) -> str:
        return f"{self.signal} · {self.statistic}"

    def severity(self, point: Point) -> str | None:
        return self.threshold.severity(point.a) if self.threshold is not None else None

    def point(self, i: int) -> Point:
        return Point(self.xs[i], self.ys[i], self.avals[i], self.wins[i])

    @cached_property
    def worst(self) -> Point | None:  # read once the series is built
        if self.threshold is None:
            return None
        best, best_ratio = -1, -math.inf
        for i, value in enumerate(self.avals):
            r = ratio(value, self.threshold)
            if r is not None and r > best_ratio:
                best, best_ratio = i, r
        return self.point(best) if best >= 0 else None

    @cached_property
    def worst_ratio(self) -> float | None:
        point = self.worst
        return None if point is None else ratio(point.a, self.threshold)

    @property
    def state(self) -> str:
        fired = {a["severity"] for a in self.alerts if a["status"] == "firing"}
        if "critical" in fired:
            return "critical"
        if fired:
            return "warning"
        worst = self.worst_ratio
        return "crossed" if worst is not None and worst >= 1 else "ok"

    def firing_periods(self, until: float) -> list[tuple[float, float, str]]:
        """The spans this signal fired, as (start, end, severity), one per severity an incident reached.

        An escalation ends its incident's warning span where the critical one starts; the resolution
        ends the incident's last span, and an incident still firing runs to ``until``.
        """
        resolved = {a["incident_id"]: alert_time(a) for a in self.alerts if a["status"] == "resolved"}
        firing = sorted((a for a in self.alerts if a["status"] == "firing"), key=alert_time)
        periods = []
        for i, alert in enumerate(firing):
            incident = alert["incident_id"]
            escalation = next((b for b in firing[i + 1:] if b["incident_id"] == incident), None)
            end = alert_time(escalation) if escalation is not None else resolved.get(incident, until)
            periods.append((alert_time(alert), end, alert["severity"]))
        return periods

    @property
    def flat(self) -> bool:
        return not self.alerts and all(y == 0 for y in self.ys)


def ratio(value: float | None, threshold: Threshold | None) -> float | None:
    """How far a value went towards its first threshold: 1 is on the line, 2 twice as bad."""
    if threshold is None or value is None or not math.isfinite(value):
        return None
    limit = threshold.warning if threshold.warning is not None else threshold.critical
    if limit is None:
        return None
    if threshold.direction == "above":
        return value / limit if limit > 0 else 1.0 + value - limit
    if value > 0 and limit > 0:
        return limit / value
    return math.inf if value <= limit else 0.0


def _threshold(config: ModelConfig, detector: str, signal: str) -> tuple[Threshold | None, str]:
    try:
        threshold = config.threshold(detector, signal)
    except KeyError:  # a statistic no detector judges, e.g. latency_p50
        return None, ""
    if threshold.warning is None and threshold.critical is None:
        return None, ""
    if detector in config.signals.get(signal, {}):
        return threshold, "set for this signal"
    if detector in config.thresholds:
        return threshold, "set for this model"
    return threshold, "built-in default"


def _new_series(model: str, signal: str, statistic: str, config: ModelConfig,
                reference: Mapping[str, Any] | None) -> Series:
    baselines = (reference or {}).get("baseline") or {}
    if statistic in DRIFT_STATISTICS:
        group, detector = ("drift" if signal.startswith("feature:") else "prediction"), statistic
    elif statistic in QUALITY_CHECKS:
        group, detector = "quality", statistic
    elif signal.startswith("performance:"):
        group, detector = "performance", statistic
    elif signal.startswith("estimated:"):
        group, detector = "estimated", statistic
    elif signal.startswith("fairness:"):
        group, detector = "fairness", statistic
    elif signal == "serving":
        group, detector = "serving", statistic
    elif signal.startswith("change:"):
        group, detector = "change", config.change_method
    elif signal.startswith("class:"):
        group, detector = "class", None
    elif (registered := family_of_statistic(statistic)) is not None and signal.startswith(f"{registered.signal_prefix}:"):
        group, detector = registered.name, statistic
    else:
        group, detector = "labels", None
    series = Series(model, signal, statistic, group, detector)
    family = group_family(group)
    if detector is None or family is None or not config.enabled(family, signal):
        series.detector = None
        return series
    threshold, source = _threshold(config, detector, signal)
    if threshold is None:
        series.detector = None
        return series
    series.threshold, series.threshold_source = threshold, source
    levels = [(s, v) for s, v in (("warning", threshold.warning), ("critical", threshold.critical)) if v is not None]
    series.lines = list(levels)

    if group in ("performance", "estimated"):
        metric = signal.split(":", 1)[1]
        base = baselines.get(metric)
        if base is None:  # no baseline, no degradation: the engine does not judge it either
            series.detector, series.threshold, series.lines = None, None, []
            return series
        sign = 1.0 if metric in ERROR_METRICS else -1.0
        scale = abs(base) if base else 1.0
        series.to_alert = lambda y: degradation(metric, y, base)
        series.lines = [(s, base + sign * v * scale) for s, v in levels]
        series.baseline = base
        series.include_zero = False
        by = (lambda v: f"{v:.0%}" if v * 100 == round(v * 100) else f"{v:.1%}") if base else fmt
        series.note = (f"the alert compares how much worse than the baseline {fmt(base)} {metric} is"
                       f"{'' if base else ' (absolute, the baseline is 0)'}: "
                       + ", ".join(f"{s} at {by(v)} worse ({fmt(base + sign * v * scale)})" for s, v in levels))
    elif statistic == "missing_rate" and signal.startswith("feature:"):
        feature = ((reference or {}).get("features") or {}).get(signal.removeprefix("feature:")) or {}
        offset = float(feature.get("missing_rate") or 0.0)
        if offset:
            series.to_alert = lambda y: y - offset
            series.lines = [(s, v + offset) for s, v in levels]
            series.baseline = offset
            series.note = f"the alert compares the missing rate above the reference's {fmt(offset)}"
    elif threshold.direction == "below":
        series.include_zero = True
    return series


_UNPLANNED: Any = object()


def build_series(model: str, windows: Sequence[Window], alerts: Sequence[Alert], config: ModelConfig,
                 reference: Mapping[str, Any] | None) -> list[Series]:
    """Every statistic of one model as a series over its windows (in event-time order), alerts attached."""
    found: dict[tuple[str, str], Series] = {}
    plans: dict[str, Series | None] = {}  # stats key -> the series it feeds, None to skip; decided once

    def plan(key: str, stats: Mapping[str, Any]) -> Series | None:
        if key.endswith((".fractions", ".pvalue")):
            return None
        signal, statistic = split_statistic(key)
        if statistic in DRIFT_STATISTICS:
            chosen = config.drift_statistic if f"{signal}.{config.drift_statistic}" in stats else "psi"
            if statistic != chosen:
                return None  # the other drift statistics are in the tooltips
        series = found.get((signal, statistic))
        if series is None:
            series = found[(signal, statistic)] = _new_series(model, signal, statistic, config, reference)
        return series

    for window in sorted(windows, key=lambda w: (w["end"], w["family"], w["index"])):
        stats = window["stats"]
        x = float(window["end"])
        for key, value in stats.items():
            series = plans.get(key, _UNPLANNED)
            if series is _UNPLANNED:
                series = plans[key] = plan(key, stats)
            if series is None or type(value) not in (float, int):
                continue
            y = float(value)
            if y - y == 0:  # finite
                series.xs.append(x)
                series.ys.append(y)
                series.avals.append(series.to_alert(y))
                series.wins.append(window)
    by_detector = {(s.signal, s.detector): s for s in found.values() if s.detector is not None}
    for alert in alerts:
        series = by_detector.get((alert["signal"], alert["detector"]))
        if series is not None:
            series.alerts.append(alert)
    return list(found.values())


def rank_key(series: Series) -> tuple[float, int, str]:
    worst = series.worst_ratio
    return (-(worst if worst is not None else -math.inf), -len(series.alerts), series.label)

