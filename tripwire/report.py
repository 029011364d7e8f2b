"""The backtest report: one self-contained HTML page from a replay's windows and alerts.

``tripwire replay EVENTS --config monitor.toml --out alerts.jsonl --report report.html`` and
``tripwire demo --report report.html`` write it. Everything is inline (CSS, a few lines of
optional JS, SVG drawn here), so the file opens offline and can be attached to a ticket.
Rendering is pure: windows, alerts, config and references in, a string out, the same bytes for
the same inputs (no clock, no randomness).

Per model, worst first:

- every statistic that has a threshold, ranked by the largest value / threshold ratio it reached
  (on the scale the alert policy compares), each with a sparkline; expanding a row shows its
  timeline with the warning and critical lines, the windows that crossed them, the alerts
  (markers link to the alert table) and the firing periods shaded;
- the performance, estimated-performance and fairness series, drawn on their own scale with the
  baseline, and the thresholds converted to that scale;
- for each drifted feature (and the prediction / score), the reference histogram beside the
  histogram of the window where the drift was worst, on the bins the detector uses;
- the statistics without a threshold (latency p50, throughput, label lag, ...).

Then one table of every alert. Signals that stayed at zero in every window are listed by name
only, so a model with 50 features stays a page, not a book.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from html import escape
from typing import Any, Callable, Iterable, Mapping, Sequence

from tripwire.config import ModelConfig, MonitorConfig, Threshold
from tripwire.engine import ERROR_METRICS, QUALITY_CHECKS, degradation
from tripwire.events import parse_ts

__all__ = ["WindowLog", "render_report", "split_statistic"]

Window = Mapping[str, Any]
Alert = Mapping[str, Any]

DRIFT_STATISTICS = ("psi", "js", "wasserstein")
STREAM_MODEL = "*"  # alerts about the input stream itself (dead-letter rate), not one model
OPEN_ROWS = 6  # alerted signal rows open by default, per model
NOTABLE_RATIO = 0.5  # rows below half their warning threshold (and never alerting) fold away
MAX_POINTS = 400  # a longer series is decimated (min and max per bucket: spikes survive)
MAX_CATEGORIES = 24  # categorical histograms beyond this show the biggest shifts and one "others" bar

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
COLOURS = {"critical": "#c62828", "warning": "#d97706", "resolved": "#2e7d32", "series": "#1f5fbf",
           "reference": "#9aa5b1", "grid": "#e3e7ec", "axis": "#5b6670"}


def split_statistic(key: str) -> tuple[str, str]:
    """A window ``stats`` key as the (signal, statistic) pair that alerts and metrics use.

    ``signal`` is the alert's ``signal``; ``statistic`` is the alert's ``detector`` except for the
    change streams (``changes``: alarms per window) and the label bookkeeping (signal ``labels``).

    >>> split_statistic("feature:weight.psi"), split_statistic("performance:mae")
    (('feature:weight', 'psi'), ('performance:mae', 'mae'))
    >>> split_statistic("estimated:f1"), split_statistic("fairness:group.disparate_impact_ratio")
    (('estimated:f1', 'estimated_f1'), ('fairness:group', 'disparate_impact_ratio'))
    >>> split_statistic("serving.latency_p95"), split_statistic("change:error"), split_statistic("labels_pending")
    (('serving', 'latency_p95'), ('change:error', 'changes'), ('labels', 'labels_pending'))
    """
    if key.startswith("performance:"):
        return key, key.removeprefix("performance:")
    if key.startswith("estimated:"):
        return key, "estimated_" + key.removeprefix("estimated:")
    if key.startswith("change:"):
        return key, "changes"
    signal, dot, statistic = key.rpartition(".")
    return (signal, statistic) if dot else ("labels", key)


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
        return _anchor("s", self.model, self.signal, self.statistic)

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
    else:
        group, detector = "labels", None
    series = Series(model, signal, statistic, group, detector)
    family = GROUPS[group][1]
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
        series.to_alert = lambda y, metric=metric, base=base: degradation(metric, y, base)
        series.lines = [(s, base + sign * v * scale) for s, v in levels]
        series.baseline = base
        series.include_zero = False
        by = (lambda v: f"{v:.0%}" if v * 100 == round(v * 100) else f"{v:.1%}") if base else _fmt
        series.note = (f"the alert compares how much worse than the baseline {_fmt(base)} {metric} is"
                       f"{'' if base else ' (absolute, the baseline is 0)'}: "
                       + ", ".join(f"{s} at {by(v)} worse ({_fmt(base + sign * v * scale)})" for s, v in levels))
    elif statistic == "missing_rate" and signal.startswith("feature:"):
        feature = ((reference or {}).get("features") or {}).get(signal.removeprefix("feature:")) or {}
        offset = float(feature.get("missing_rate") or 0.0)
        if offset:
            series.to_alert = lambda y, offset=offset: y - offset
            series.lines = [(s, v + offset) for s, v in levels]
            series.baseline = offset
            series.note = f"the alert compares the missing rate above the reference's {_fmt(offset)}"
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


def _rank(series: Series) -> tuple[float, int, str]:
    worst = series.worst_ratio
    return (-(worst if worst is not None else -math.inf), -len(series.alerts), series.label)


# -- formatting --------------------------------------------------------------------------------
def _anchor(*parts: Any) -> str:
    return parts[0] + "-" + hashlib.sha1("\x1f".join(str(p) for p in parts[1:]).encode()).hexdigest()[:12]


def _fmt(value: float | None) -> str:
    if value is None:
        return "\u2013"
    if math.isinf(value):
        return "\u221e" if value > 0 else "-\u221e"
    if value == 0:
        return "0"
    size = abs(value)
    if size >= 10_000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:,.1f}"
    if size >= 0.001:
        return f"{value:.3g}"
    return f"{value:.2e}"


def _tick(value: float, step: float) -> str:
    """An axis label with as many decimals as the step needs (1,000 not 1,000.0; 0.25 not 0.250)."""
    value = round(value, 12)
    if value == 0:
        return "0"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    if step < 1 and round(step * 10 ** decimals, 9) % 1:
        decimals += 1
    return f"{value:,.{decimals}f}"


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _ratio_text(value: float | None) -> str:
    if value is None:
        return "\u2013"
    if math.isinf(value):
        return "\u221e\u00d7"
    return f"{value:.2f}\u00d7" if value < 10 else f"{value:,.0f}\u00d7"


def _time(ts: float, with_date: bool = True) -> str:
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return f"{moment:%Y-%m-%d %H:%M:%S}" if with_date else f"{moment:%H:%M:%S}"


def _short_ts(text: str) -> str:
    """``2026-11-28T00:10:21.309Z`` as ``2026-11-28 00:10:21`` (the full stamp is the cell's title)."""
    try:
        return _time(parse_ts(text))
    except ValueError:
        return text


def _alert_time(alert: Alert) -> float:
    return parse_ts(alert["ts"])


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


# -- SVG ---------------------------------------------------------------------------------------
def _decimate(series: Series, limit: int = MAX_POINTS) -> list[Point]:
    """At most ~``limit`` points: the min and the max of each bucket, in order (spikes survive)."""
    count = len(series.ys)
    if count <= limit:
        return [series.point(i) for i in range(count)]
    buckets = limit // 2
    size = count / buckets
    ys = series.ys
    keep: list[int] = []
    for b in range(buckets):
        chunk = range(int(b * size), int((b + 1) * size))
        if not chunk:
            continue
        low = min(chunk, key=ys.__getitem__)
        high = max(chunk, key=ys.__getitem__)
        keep += sorted({low, high})
    return [series.point(i) for i in keep]


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def _y_range(series: Series, points: Sequence[Point], lines: Iterable[float]) -> tuple[float, float]:
    values = [p.y for p in points] + list(lines) + ([series.baseline] if series.baseline is not None else [])
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if series.include_zero and lo > 0:
        lo = 0.0
    if hi == lo:
        hi = lo + (abs(lo) * 0.1 or 1.0)
    pad = (hi - lo) * 0.08
    return (lo if series.include_zero and lo == 0 else lo - pad), hi + pad


TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
              172800, 604800, 1209600, 2592000)


def _x_ticks(x0: float, x1: float, count: int = 7) -> list[tuple[float, str]]:
    span = max(x1 - x0, 1e-9)
    step = next((s for s in TIME_STEPS if span / s <= count), TIME_STEPS[-1])
    first = math.ceil(x0 / step) * step
    ticks = []
    t = first
    while t <= x1:
        moment = datetime.fromtimestamp(t, tz=timezone.utc)
        if step >= 86400:
            text = f"{moment:%m-%d}"
        elif span > 86400:
            text = f"{moment:%m-%d %H:%M}"
        elif step < 60:
            text = f"{moment:%H:%M:%S}"
        else:
            text = f"{moment:%H:%M}"
        ticks.append((t, text))
        t += step
    return ticks


def _incidents(series: Series, x1: float) -> list[tuple[float, float, str]]:
    """Firing periods: (firing ts, resolved ts or the end of the replay, severity)."""
    resolved = {a["incident_id"]: _alert_time(a) for a in series.alerts if a["status"] == "resolved"}
    return [(_alert_time(a), resolved.get(a["alert_id"], x1), a["severity"])
            for a in series.alerts if a["status"] == "firing"]


def _polyline(points: Sequence[Point], X: Callable[[float], float], Y: Callable[[float], float],
              css: str) -> str:
    if not points:
        return ""
    coords = " ".join(f"{_n(X(p.x))},{_n(Y(p.y))}" for p in points)
    return f'<polyline class="{css}" points="{coords}"/>'


def _point_title(series: Series, point: Point) -> str:
    window = point.window
    stats = window["stats"]
    severity = series.severity(point)
    parts = [f"{_time(window['start'])} \u2192 {_time(window['end'], False)} UTC, n = {window['n']:,}",
             f"{series.statistic} = {_fmt(point.y)}" + (f" ({severity})" if severity else "")]
    if point.a != point.y:
        parts.append(f"alert value {_fmt(point.a)}")
    if series.group in ("drift", "prediction"):
        others = [f"{s} {_fmt(stats[f'{series.signal}.{s}'])}" for s in DRIFT_STATISTICS
                  if s != series.statistic and stats.get(f"{series.signal}.{s}") is not None]
        pvalue = stats.get(f"{series.signal}.pvalue")
        parts.append(", ".join(others + ([f"p = {pvalue:.2g}"] if pvalue is not None else [])))
    return "\n".join(p for p in parts if p)


def _spread(labels: list[tuple[float, str, str]], low: float, high: float, gap: float = 11.0
            ) -> list[tuple[float, str, str]]:
    """Move labels apart vertically (at least ``gap``), keeping their order and staying in [low, high]."""
    placed = sorted(labels)
    for i in range(1, len(placed)):
        if placed[i][0] - placed[i - 1][0] < gap:
            placed[i] = (placed[i - 1][0] + gap, *placed[i][1:])
    overflow = (placed[-1][0] - high) if placed else 0.0
    if overflow > 0:
        placed = [(y - overflow, css, text) for y, css, text in placed]
        for i in range(len(placed) - 2, -1, -1):
            if placed[i + 1][0] - placed[i][0] < gap:
                placed[i] = (placed[i + 1][0] - gap, *placed[i][1:])
    return [(max(y, low - 4), css, text) for y, css, text in placed]


def timeline_svg(series: Series, x0: float, x1: float, width: int = 860, height: int = 160,
                 dots: bool = True) -> str:
    """The series over the model's time range, its threshold lines, alerts and firing periods.

    ``dots=False`` draws windows as dots only where they crossed a line (for the quiet rows: smaller).
    """
    left, right, top, bottom = 60, 92, 16, 24
    pw, ph = width - left - right, height - top - bottom
    points = _decimate(series)
    lo, hi = _y_range(series, points, (v for _s, v in series.lines))
    span_x = (x1 - x0) or 1.0

    def X(t: float) -> float:
        return left + (t - x0) / span_x * pw

    def Y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * ph

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{_e(series.model)} {_e(series.label)} over time">']
    for start, end, severity in _incidents(series, x1):
        out.append(f'<rect class="band {severity}" x="{_n(X(start))}" y="{top}" '
                   f'width="{_n(max(X(end) - X(start), 1.5))}" height="{ph}"/>')
    step = _nice_step(hi - lo, 4)
    v = math.ceil(lo / step) * step
    while v <= hi + 1e-12:
        y = Y(v)
        out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{_n(y)}" y2="{_n(y)}"/>'
                   f'<text class="tick" x="{left - 6}" y="{_n(y + 3.5)}" text-anchor="end">{_e(_tick(v, step))}</text>')
        v += step
    for t, text in _x_ticks(x0, x1):
        out.append(f'<line class="xtick" x1="{_n(X(t))}" x2="{_n(X(t))}" y1="{top + ph}" y2="{top + ph + 4}"/>'
                   f'<text class="tick" x="{_n(X(t))}" y="{height - 6}" text-anchor="middle">{text}</text>')
    out.append(f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>')
    labels: list[tuple[float, str, str]] = []  # (y, css, text) of the lines' labels at the right
    if series.baseline is not None:
        y = Y(series.baseline)
        out.append(f'<line class="baseline" x1="{left}" x2="{left + pw}" y1="{_n(y)}" y2="{_n(y)}"/>')
        labels.append((y, "lim", f"baseline {_fmt(series.baseline)}"))
    for severity, value in series.lines:
        y = Y(value)
        out.append(f'<line class="limit {severity}" x1="{left}" x2="{left + pw}" y1="{_n(y)}" y2="{_n(y)}"/>')
        labels.append((y, f"lim {severity}", f"{severity} {_fmt(value)}"))
    for y, css, text in _spread(labels, top, top + ph):
        out.append(f'<text class="{css}" x="{left + pw + 4}" y="{_n(y + 3.5)}">{_e(text)}</text>')
    out.append(_polyline(points, X, Y, "line"))
    shown = points if dots and len(points) <= 120 else [p for p in points if series.severity(p)]
    for point in shown:
        severity = series.severity(point) or "ok"
        out.append(f'<circle class="pt {severity}" cx="{_n(X(point.x))}" cy="{_n(Y(point.y))}" r="3">'
                   f'<title>{_e(_point_title(series, point))}</title></circle>')
    for alert in series.alerts:
        x = X(_alert_time(alert))
        css = "resolved" if alert["status"] == "resolved" else alert["severity"]
        out.append(f'<a href="#{_anchor("a", alert["alert_id"])}"><path class="marker {css}" '
                   f'd="M{_n(x - 5)},{top - 12} L{_n(x + 5)},{top - 12} L{_n(x)},{top - 3} Z">'
                   f'<title>{_e(alert["ts"])} {_e(alert["status"])} {_e(alert["severity"])}: '
                   f'{_e(alert["message"])}</title></path></a>')
    out.append("</svg>")
    return "".join(out)


def sparkline_svg(series: Series, width: int = 150, height: int = 28) -> str:
    points = _decimate(series, 120)
    lines = [v for s, v in series.lines if s == "warning"] or [v for _s, v in series.lines]
    lo, hi = _y_range(series, points, lines)
    xs = [p.x for p in points]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)

    def X(t: float) -> float:
        return 2 + (t - x0) / ((x1 - x0) or 1.0) * (width - 4)

    def Y(v: float) -> float:
        return 2 + (hi - v) / (hi - lo) * (height - 4)

    out = [f'<svg class="spark" viewBox="0 0 {width} {height}" aria-hidden="true">']
    for value in lines[:1]:
        out.append(f'<line class="limit warning" x1="0" x2="{width}" y1="{_n(Y(value))}" y2="{_n(Y(value))}"/>')
    out.append(_polyline(points, X, Y, "line"))
    for point in points:
        severity = series.severity(point)
        if severity:
            out.append(f'<circle class="pt {severity}" cx="{_n(X(point.x))}" cy="{_n(Y(point.y))}" r="2"/>')
    out.append("</svg>")
    return "".join(out)


def _ratio_bar(value: float | None) -> str:
    if value is None:
        return '<span class="ratio">\u2013</span>'
    fill = max(0.0, min(value, 3.0)) / 3.0 * 100
    css = "critical" if value >= 2 else "warning" if value >= 1 else "ok"
    return (f'<span class="ratio"><span class="bar"><span class="fill {css}" style="width:{fill:.0f}%"></span>'
            f'<span class="one"></span></span>{_ratio_text(value)}</span>')


# -- distributions -----------------------------------------------------------------------------
def _bin_labels(profile: Mapping[str, Any]) -> list[str]:
    if profile.get("kind") == "categorical":
        return [str(c) for c in profile["categories"]] + ["<other>"]
    edges = [float(e) for e in profile.get("edges") or []]
    if not edges:
        return ["all"]
    text = [f"{e:,.4g}" for e in edges]
    return [f"< {text[0]}"] + [f"{a}\u2013{b}" for a, b in zip(text, text[1:])] + [f"\u2265 {text[-1]}"]


def _reference_fractions(profile: Mapping[str, Any]) -> list[float]:
    if profile.get("kind") == "categorical":
        values = [float(f) for f in profile["categories"].values()] + [float(profile.get("other") or 0.0)]
    else:
        values = [float(f) for f in profile["fractions"]]
    total = sum(values) or 1.0
    return [v / total for v in values]


def _profile_for(reference: Mapping[str, Any] | None, signal: str) -> Mapping[str, Any] | None:
    if not reference:
        return None
    if signal.startswith("feature:"):
        return (reference.get("features") or {}).get(signal.removeprefix("feature:"))
    if signal.startswith("score:") and reference.get("class_score_profiles"):
        # A multi-class model's probability of one class: profiles are in the order of the classes.
        classes = [str(c) for c in reference["classes"]]
        name = signal.removeprefix("score:")
        return reference["class_score_profiles"][classes.index(name)] if name in classes else None
    return reference.get(f"{signal}_profile")


def histogram_svg(labels: Sequence[str], ref: Sequence[float], cur: Sequence[float], severity: str,
                  width: int = 860) -> str:
    if len(labels) > MAX_CATEGORIES:  # keep the biggest shifts in their order, sum the rest
        keep = sorted(sorted(range(len(labels)), key=lambda i: -abs(cur[i] - ref[i]))[:MAX_CATEGORIES - 1])
        rest = [i for i in range(len(labels)) if i not in set(keep)]
        labels = [labels[i] for i in keep] + [f"{len(rest)} others"]
        ref = [ref[i] for i in keep] + [sum(ref[i] for i in rest)]
        cur = [cur[i] for i in keep] + [sum(cur[i] for i in rest)]
    k = len(labels)
    rotate = k > 10 or max(len(label) for label in labels) * 6.2 > (width - 60) / k
    left, right, top = 48, 12, 22
    bottom = 74 if rotate else 34
    height = 150 + bottom
    pw, ph = width - left - right, height - top - bottom
    hi = max(max(ref), max(cur), 1e-9) * 1.12
    slot = pw / k
    bar = min(26.0, slot * 0.4)

    def Y(v: float) -> float:
        return top + (hi - v) / hi * ph

    out = [f'<svg class="hist" viewBox="0 0 {width} {height}" role="img" '
           'aria-label="reference and window histograms">',
           f'<rect class="key ref" x="{left}" y="4" width="10" height="10"/>'
           f'<text class="tick" x="{left + 14}" y="13">reference</text>',
           f'<rect class="key cur {severity}" x="{left + 86}" y="4" width="10" height="10"/>'
           f'<text class="tick" x="{left + 100}" y="13">worst window</text>']
    step = _nice_step(hi, 4)
    v = 0.0
    while v <= hi:
        out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{_n(Y(v))}" y2="{_n(Y(v))}"/>'
                   f'<text class="tick" x="{left - 6}" y="{_n(Y(v) + 3.5)}" text-anchor="end">{v * 100:.0f}%</text>')
        v += step
    for i, (label, r, c) in enumerate(zip(labels, ref, cur)):
        centre = left + slot * (i + 0.5)
        title = f"{label}: reference {_pct(r)}, window {_pct(c)} ({(c - r) * 100:+.1f} pts)"
        out.append(f'<g><title>{_e(title)}</title>'
                   f'<rect class="ref" x="{_n(centre - bar - 1)}" y="{_n(Y(r))}" width="{_n(bar)}" '
                   f'height="{_n(Y(0) - Y(r))}"/>'
                   f'<rect class="cur {severity}" x="{_n(centre + 1)}" y="{_n(Y(c))}" width="{_n(bar)}" '
                   f'height="{_n(Y(0) - Y(c))}"/></g>')
        short = label if len(label) <= 18 else label[:17] + "\u2026"
        if rotate:
            out.append(f'<text class="tick" transform="translate({_n(centre + 3)},{top + ph + 10}) rotate(-40)" '
                       f'text-anchor="end">{_e(short)}</text>')
        else:
            out.append(f'<text class="tick" x="{_n(centre)}" y="{top + ph + 16}" '
                       f'text-anchor="middle">{_e(short)}</text>')
    out.append(f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{_n(Y(0))}" y2="{_n(Y(0))}"/></svg>')
    return "".join(out)


def _distribution(series: Series, reference: Mapping[str, Any] | None) -> str | None:
    profile = _profile_for(reference, series.signal)
    key = f"{series.signal}.fractions"
    candidates = [i for i, w in enumerate(series.wins) if isinstance(w["stats"].get(key), list)]
    if profile is None or not candidates:
        return None
    worst = series.point(max(candidates, key=series.avals.__getitem__))  # first of equals, as WindowLog keeps
    labels, ref, cur = _bin_labels(profile), _reference_fractions(profile), list(worst.window["stats"][key])
    if not (len(labels) == len(ref) == len(cur)):
        return None
    severity = series.severity(worst) or "ok"
    window = worst.window
    shifts = sorted(range(len(labels)), key=lambda i: -abs(cur[i] - ref[i]))[:3]
    moved = "; ".join(f"{_e(labels[i])}: {_pct(ref[i])} \u2192 {_pct(cur[i])}" for i in shifts)
    pvalue = window["stats"].get(f"{series.signal}.pvalue")
    kind = "categories" if profile.get("kind") == "categorical" else "reference quantile bins, outer bins open-ended"
    return (f'<figure class="dist" id="{_anchor("d", series.model, series.signal)}" data-signal="{_e(series.signal)}" '
            f'data-search="{_e((series.model + " " + series.signal).lower())}">'
            f'<figcaption><b>{_e(series.signal)}</b> <span class="badge {series.state}">{series.state}</span> '
            f'worst window {_time(window["start"])} \u2192 {_time(window["end"], False)} UTC, n = {window["n"]:,}: '
            f'{_e(series.statistic.upper() if series.statistic != "wasserstein" else "Wasserstein")} {_fmt(worst.y)}'
            f'{f", p = {pvalue:.2g}" if pvalue is not None else ""} ({_ratio_text(ratio(worst.a, series.threshold))} '
            f'the threshold). <span class="muted">Biggest shifts \u2014 {moved}. Bins: {kind}.</span></figcaption>'
            f'{histogram_svg(labels, ref, cur, severity)}</figure>')


# -- HTML --------------------------------------------------------------------------------------
CSS = """
:root{--crit:#c62828;--warn:#d97706;--ok:#2e7d32;--blue:#1f5fbf;--muted:#5b6670;--line:#dfe3e8;--bg:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d2329;background:var(--bg)}
header{background:#1d2329;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:21px;font-weight:600}
header .facts{margin:0;color:#c9d1d9;font-size:13px}
header .facts b{color:#fff;font-weight:600}
main{padding:16px 28px 40px;max-width:1240px}
h2{font-size:18px;margin:0}
h3{font-size:14px;margin:18px 0 6px;color:#33404d;text-transform:uppercase;letter-spacing:.04em}
section.card{background:#fff;border:1px solid var(--line);border-radius:8px;margin:14px 0;padding:12px 16px}
section.model>details>summary{cursor:pointer;list-style:none;display:flex;gap:12px;align-items:baseline;flex-wrap:wrap}
section.model>details>summary::-webkit-details-marker{display:none}
section.model>details>summary::before{content:"\\25B8";color:var(--muted);transition:transform .15s}
section.model>details[open]>summary::before{transform:rotate(90deg)}
.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:#33404d;background:#fafbfc;position:sticky;top:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;font-weight:600;background:#e8ecf0;color:#33404d;white-space:nowrap}
.badge.critical{background:#fde7e7;color:var(--crit)}.badge.warning{background:#fdf0dc;color:#a35200}
.badge.resolved,.badge.ok{background:#e5f3e6;color:var(--ok)}.badge.crossed{background:#ece6f6;color:#5b3a91}
.badge.firing{background:#1d2329;color:#fff}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;background:#c6ced6}
.dot.critical{background:var(--crit)}.dot.warning{background:var(--warn)}.dot.crossed{background:#7e57c2}.dot.ok{background:#9ccc9f}
details.sig{border-bottom:1px solid var(--line)}
details.sig>summary{display:grid;grid-template-columns:14px 16px minmax(200px,1fr) 120px 150px 156px 150px;gap:8px;align-items:center;padding:4px 2px;cursor:pointer;list-style:none}
details.sig>summary::-webkit-details-marker{display:none}
details.sig>summary .caret{color:var(--muted);transition:transform .15s}
details.sig[open]>summary .caret{transform:rotate(90deg)}
details.sig>summary:hover{background:#f3f6fa}
.sighead{display:grid;grid-template-columns:14px 16px minmax(200px,1fr) 120px 150px 156px 150px;gap:8px;padding:2px;font-size:12px;color:var(--muted);border-bottom:1px solid var(--line)}
.signame{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.group{font-size:11px;color:var(--muted);font-family:system-ui,sans-serif;margin-left:6px}
.ratio{display:flex;align-items:center;gap:6px;font-variant-numeric:tabular-nums}
.bar{position:relative;display:inline-block;width:64px;height:8px;background:#eef1f4;border-radius:4px;overflow:hidden}
.bar .fill{position:absolute;left:0;top:0;bottom:0}.bar .fill.ok{background:#9ccc9f}.bar .fill.warning{background:var(--warn)}.bar .fill.critical{background:var(--crit)}
.bar .one{position:absolute;left:33.3%;top:0;bottom:0;width:1px;background:#1d2329}
.sigbody{padding:4px 0 10px 38px}
.note{font-size:12px;color:var(--muted);margin:2px 0 6px}
svg.chart{width:100%;max-width:860px;height:auto;display:block}
svg.spark{width:150px;height:28px;display:block}
svg.hist{width:100%;max-width:860px;height:auto;display:block}
svg text{font:11px system-ui,sans-serif;fill:#4a5560}
svg .tick{fill:#5b6670}
svg .grid{stroke:#e3e7ec;stroke-width:1}
svg .axis,svg .xtick{stroke:#9aa5b1;stroke-width:1}
svg .line{fill:none;stroke:var(--blue);stroke-width:1.6;stroke-linejoin:round}
svg.spark .line{stroke-width:1.2}
svg .limit{stroke-dasharray:5 4;stroke-width:1.2}
svg .limit.warning{stroke:var(--warn)}svg .limit.critical{stroke:var(--crit)}
svg.spark .limit{stroke-dasharray:3 3;opacity:.8}
svg .baseline{stroke:#6b7785;stroke-dasharray:1 3;stroke-width:1.5}
svg .lim.warning{fill:#a35200}svg .lim.critical{fill:var(--crit)}
svg .pt{stroke:#fff;stroke-width:1}
svg .pt.ok{fill:var(--blue)}svg .pt.warning{fill:var(--warn)}svg .pt.critical{fill:var(--crit)}
svg .band.warning{fill:#fdf0dc;opacity:.8}svg .band.critical{fill:#fde7e7;opacity:.9}
svg .marker.warning{fill:var(--warn)}svg .marker.critical{fill:var(--crit)}svg .marker.resolved{fill:var(--ok)}
svg .ref{fill:#b8c1cb}svg .cur{fill:var(--blue)}svg .cur.warning{fill:var(--warn)}svg .cur.critical{fill:var(--crit)}
figure.dist{margin:10px 0 18px}
figure.dist figcaption{font-size:13px;margin-bottom:4px}
.grid2{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:6px 18px}
.grid2 .panel h4{margin:8px 0 2px;font-size:13px;font-family:ui-monospace,Menlo,Consolas,monospace;font-weight:500}
.flat{font-size:12px;color:var(--muted);margin:8px 0}
.flat code{font-size:12px}
details.quiet>summary,details.sub>summary{cursor:pointer;color:#33404d;padding:6px 0;font-weight:600}
.legend{font-size:12px;color:var(--muted);margin:8px 0 0}
.legend svg{vertical-align:middle}
.tools{display:none;gap:8px;margin-top:10px}
.js .tools{display:flex}
.tools button,.tools input{font:inherit;font-size:13px;padding:3px 10px;border-radius:5px;border:1px solid #5b6670;background:#2b333b;color:#fff}
.tools input{background:#fff;color:#1d2329;min-width:260px}
.scroll{overflow-x:auto}
#alerts td{font-size:12.5px}
#alerts td.ts,#alerts td:nth-child(3){white-space:nowrap}
#alerts td.det{word-break:break-word;max-width:170px}
#alerts td.msg{min-width:300px}
#alerts tr:target{background:#fff7d6}
[hidden]{display:none!important}
@media print{.tools{display:none!important}}
"""

JS = """
(function(){
  var root=document.documentElement;root.classList.add('js');
  function openTo(el){for(;el;el=el.parentElement){if(el.tagName==='DETAILS'){el.open=true;}}}
  function onHash(){var id=decodeURIComponent(location.hash.slice(1));var el=id&&document.getElementById(id);
    if(el){openTo(el);el.scrollIntoView({block:'center'});}}
  window.addEventListener('hashchange',onHash);onHash();
  function all(open){document.querySelectorAll('details').forEach(function(d){d.open=open||d.classList.contains('keep');});}
  document.getElementById('expand').addEventListener('click',function(){all(true);});
  document.getElementById('collapse').addEventListener('click',function(){all(false);});
  var box=document.getElementById('filter');
  box.addEventListener('input',function(){var q=box.value.trim().toLowerCase();
    document.querySelectorAll('[data-search]').forEach(function(el){
      var hit=!q||el.getAttribute('data-search').indexOf(q)>=0;el.hidden=!hit;if(q&&hit){openTo(el.parentElement);}});});
  root.setAttribute('data-ready','1');
})();
"""


def _legend() -> str:
    def swatch(css: str) -> str:
        return f'<svg width="26" height="10"><line class="limit {css}" x1="0" x2="26" y1="5" y2="5"/></svg>'

    return ('<p class="legend">Ranked worst first by the largest <b>value / threshold</b> ratio a signal reached, on '
            f'the scale the alert policy compares (1\u00d7 is on the warning line). {swatch("warning")} warning, '
            f'{swatch("critical")} critical thresholds; dots are windows (coloured when they crossed a line); '
            '\u25bc markers are alerts (click: the alert in the table), shaded spans are firing periods. A window '
            'past a line without an alert was not significant after the multiple-testing correction, had too few '
            'samples, or belonged to an incident already firing. Times are event time, UTC.</p>')


def _threshold_note(series: Series) -> str:
    if series.threshold is None:
        return "no threshold"
    sign = "\u2265" if series.threshold.direction == "above" else "\u2264"
    limits = ", ".join(f"{s} {sign} {_fmt(v)}" for s, v in (("warning", series.threshold.warning),
                                                            ("critical", series.threshold.critical)) if v is not None)
    return f"{series.detector}: {limits} ({series.threshold_source})" + (f"; {series.note}" if series.note else "")


def _signal_row(series: Series, x0: float, x1: float, open_: bool, dots: bool = True) -> str:
    worst = series.worst
    fired = [a["severity"] for a in series.alerts if a["status"] == "firing"]
    badges = " ".join(f'<span class="badge {s}">{fired.count(s)} {s}</span>' for s in ("critical", "warning")
                      if s in fired) or '<span class="muted">no alert</span>'
    note = _threshold_note(series)
    search = f"{series.model} {series.signal} {series.statistic} {series.group}".lower()
    return (f'<details class="sig" id="{series.anchor}" data-search="{_e(search)}" '
            f'data-ratio="{series.worst_ratio or 0:.6g}"'
            f'{" open" if open_ else ""}><summary><span class="caret">\u25b8</span><span class="dot {series.state}" '
            f'title="{series.state}"></span><span class="signame" title="{_e(series.label)}">{_e(series.signal)} '
            f'<span class="muted">\u00b7 {_e(series.statistic)}</span>'
            f'<span class="group">{GROUPS[series.group][0]}</span>'
            f'</span><span class="num">{_fmt(worst.y if worst else None)}</span>{_ratio_bar(series.worst_ratio)}'
            f'{sparkline_svg(series)}<span>{badges}</span></summary><div class="sigbody">'
            f'<p class="note">{_e(note)}</p>{timeline_svg(series, x0, x1, dots=dots)}</div></details>')


def _signals_block(ranked: list[Series], x0: float, x1: float, open_rows: int) -> str:
    notable, quiet, flat = [], [], []
    for series in ranked:
        if series.alerts or (series.worst_ratio or 0) >= NOTABLE_RATIO:
            notable.append(series)
        else:
            (flat if series.flat else quiet).append(series)
    head = ('<div class="sighead"><span></span><span></span><span>signal \u00b7 statistic</span>'
            '<span class="num">worst value</span><span>worst / threshold</span><span>over time</span>'
            '<span>alerts</span></div>')
    out = [head]
    opened = 0
    for series in notable:
        open_ = bool(series.alerts) and opened < open_rows
        opened += open_
        out.append(_signal_row(series, x0, x1, open_))
    if not notable:
        out.append('<p class="muted">No signal came within half of its warning threshold.</p>')
    if quiet:
        out.append(f'<details class="quiet"><summary>{len(quiet)} more signal{"s" if len(quiet) != 1 else ""} '
                   f'stayed below half of their warning threshold</summary>'
                   + "".join(_signal_row(s, x0, x1, False, dots=False) for s in quiet) + "</details>")
    if flat:
        by_statistic: dict[str, list[str]] = {}
        for series in flat:
            by_statistic.setdefault(series.statistic, []).append(series.signal)
        items = "; ".join(f"<code>{_e(stat)}</code>: {_e(', '.join(sorted(signals)))}"
                          for stat, signals in sorted(by_statistic.items()))
        out.append(f'<p class="flat">Zero in every window ({len(flat)}): {items}</p>')
    return "".join(out)


def _panel(series: Series, x0: float, x1: float) -> str:
    limits = f'<p class="note">{_e(_threshold_note(series))}</p>'
    search = f"{series.model} {series.signal} {series.statistic}".lower()
    return (f'<div class="panel" data-search="{_e(search)}">'
            f'<h4><a href="#{series.anchor}">{_e(series.label)}</a> <span class="dot {series.state}"></span></h4>'
            f'{limits}{timeline_svg(series, x0, x1, width=620, height=150)}</div>')


def _context_row(series: Series, x0: float, x1: float) -> str:
    search = f"{series.model} {series.signal} {series.statistic}".lower()
    last = series.ys[-1] if series.ys else None
    values = series.ys
    return (f'<details class="sig" id="{series.anchor}" data-search="{_e(search)}"><summary>'
            '<span class="caret">\u25b8</span>'
            f'<span class="dot"></span><span class="signame">{_e(series.signal)} <span class="muted">\u00b7 '
            f'{_e(series.statistic)}</span></span><span class="num">{_fmt(max(values) if values else None)}</span>'
            f'<span class="muted">last {_fmt(last)}</span>{sparkline_svg(series)}'
            '<span class="muted">no threshold</span>'
            f'</summary><div class="sigbody">{timeline_svg(series, x0, x1, dots=False)}</div></details>')


@dataclass
class _ModelView:
    name: str
    windows: list[Window]
    alerts: list[Alert]
    series: list[Series]
    x0: float
    x1: float

    @property
    def judged(self) -> list[Series]:
        return sorted((s for s in self.series if s.threshold is not None), key=_rank)

    @property
    def worst(self) -> Series | None:
        judged = self.judged
        return judged[0] if judged and judged[0].worst_ratio is not None else None

    @property
    def anchor(self) -> str:
        return _anchor("m", self.name)


def _model_view(name: str, windows: list[Window], alerts: list[Alert], config: MonitorConfig,
                references: Mapping[str, Mapping[str, Any]]) -> _ModelView:
    model_config = config.model(name) or ModelConfig(name=name, reference="")
    series = build_series(name, windows, alerts, model_config, references.get(name))
    times = [w["start"] for w in windows] + [w["end"] for w in windows] + [_alert_time(a) for a in alerts]
    x0, x1 = (min(times), max(times)) if times else (0.0, 1.0)
    return _ModelView(name, windows, alerts, series, x0, x1 if x1 > x0 else x0 + 1)


def _model_section(view: _ModelView, references: Mapping[str, Mapping[str, Any]], open_rows: int) -> str:
    data = [w for w in view.windows if w["family"] == "data"]
    performance = [w for w in view.windows if w["family"] == "performance"]
    versions = sorted({str(w["model_version"]) for w in view.windows if w.get("model_version") is not None})
    firing = [a for a in view.alerts if a["status"] == "firing"]
    counts = " ".join(f'<span class="badge {s}">{sum(a["severity"] == s for a in firing)} {s}</span>'
                      for s in ("critical", "warning") if any(a["severity"] == s for a in firing))
    resolved = sum(a["status"] == "resolved" for a in view.alerts)
    worst = view.worst
    version = ", ".join(versions) or "\u2013"
    counts = counts or '<span class="badge ok">no alerts</span>'
    span = f'{_time(view.x0)} \u2192 {_time(view.x1)} UTC' if view.windows else "no window closed"
    summary = (f'<h2>{_e(view.name)}</h2><span class="muted">version {_e(version)} \u00b7 '
               f'{len(data)} data windows ({sum(w["n"] for w in data):,} events) \u00b7 {len(performance)} performance '
               f'windows ({sum(w["n"] for w in performance):,} labelled) \u00b7 {span}</span> {counts}'
               + (f' <span class="muted">{resolved} resolved</span>' if resolved else ""))
    parts = [f'<section class="card model" id="{view.anchor}" data-model="{_e(view.name)}"><details open class="keep">'
             f'<summary>{summary}</summary>']
    if worst is not None:
        parts.append(f'<p class="muted">Worst: <a href="#{worst.anchor}">{_e(worst.label)}</a> reached '
                     f'{_ratio_text(worst.worst_ratio)} its threshold.</p>')
    judged = view.judged
    parts.append(f'<h3>Signals, worst first ({len(judged)})</h3>')
    parts.append(_signals_block(judged, view.x0, view.x1, open_rows))
    matched = {id(a) for s in view.series for a in s.alerts}
    unmatched = [a for a in view.alerts if id(a) not in matched]
    if unmatched:
        parts.append(f'<p class="muted">{len(unmatched)} alert{"s" if len(unmatched) != 1 else ""} without a window '
                     'series (e.g. a change detector before its first performance window): '
                     + ", ".join(f'<a href="#{_anchor("a", a["alert_id"])}">{_e(a["signal"])} {_e(a["detector"])}</a>'
                                 for a in unmatched) + "</p>")

    outcome_groups = ("performance", "estimated", "fairness", "class")  # "class": a multi-class model's classes
    outcome = [s for s in view.series if s.group in outcome_groups]
    outcome.sort(key=lambda s: (outcome_groups.index(s.group), s.label))
    if outcome:
        parts.append('<details open class="sub perf"><summary>Performance and fairness</summary><div class="grid2">'
                     + "".join(_panel(s, view.x0, view.x1) for s in outcome) + "</div></details>")

    drifted = [s for s in judged if s.group in ("drift", "prediction")
               and (s.alerts or (s.worst_ratio or 0) >= 1)]
    figures = [f for f in (_distribution(s, references.get(view.name)) for s in drifted) if f]
    if figures:
        parts.append(f'<details open class="sub drift"><summary>Drifted: reference vs worst window '
                     f'({len(figures)})</summary>' + "".join(figures) + "</details>")

    context = sorted((s for s in view.series if s.threshold is None and s.group != "class"),
                     key=lambda s: (s.group, s.label))
    if context:
        parts.append(f'<details class="sub other"><summary>Statistics without a threshold ({len(context)})</summary>'
                     + "".join(_context_row(s, view.x0, view.x1) for s in context) + "</details>")
    parts.append("</details></section>")
    return "".join(parts)


def _stream_section(alerts: list[Alert]) -> str:
    rows = "".join(f'<li><a href="#{_anchor("a", a["alert_id"])}">{_e(a["ts"])}</a> '
                   f'<span class="badge {"resolved" if a["status"] == "resolved" else a["severity"]}">{_e(a["status"])}'
                   f'</span> {_e(a["message"])}</li>' for a in alerts)
    return (f'<section class="card model" id="{_anchor("m", STREAM_MODEL)}" data-model="{STREAM_MODEL}">'
            f'<h2>Input stream (all models)</h2><p class="muted">Records that broke the event contract '
            f'(<code>stream:deadletter</code>); they are in the dead-letter file beside the alerts.</p><ul>{rows}</ul>'
            f'</section>')


def _alerts_table(alerts: list[Alert], anchors: Mapping[tuple[str, str, str], str]) -> str:
    rows = []
    for number, alert in enumerate(alerts, 1):
        status = "resolved" if alert["status"] == "resolved" else alert["severity"]
        link = anchors.get((alert["model"], alert["signal"], alert["detector"]))
        signal = _e(alert["signal"]) if link is None else f'<a href="#{link}">{_e(alert["signal"])}</a>'
        window = alert.get("window") or {}
        search = " ".join(str(alert[k]) for k in ("model", "signal", "detector", "kind", "status", "severity"))
        rows.append(
            f'<tr id="{_anchor("a", alert["alert_id"])}" data-search="{_e(search.lower())}" '
            f'data-status="{_e(alert["status"])}">'
            f'<td class="num">{number}</td><td class="ts" title="{_e(alert["ts"])}">{_e(_short_ts(alert["ts"]))}</td>'
            f'<td><span class="badge {"firing" if alert["status"] == "firing" else "resolved"}">'
            f'{_e(alert["status"])}</span> '
            f'<span class="badge {status}">{_e(alert["severity"])}</span></td><td>{_e(alert["kind"])}</td>'
            f'<td>{_e(alert["model"])}</td><td>{signal}</td><td class="det">{_e(alert["detector"])}</td>'
            f'<td class="num">{_fmt(alert["value"])}</td><td class="num">{_fmt(alert.get("threshold"))}</td>'
            f'<td class="num">{int(window.get("n") or 0):,}</td><td class="msg">{_e(alert["message"])}</td></tr>')
    return ('<div class="scroll"><table id="alerts"><thead><tr><th class="num">#</th><th>event time (UTC)</th>'
            '<th>status</th>'
            '<th>kind</th><th>model</th><th>signal</th><th>detector</th><th class="num">value</th>'
            '<th class="num">threshold</th><th class="num">n</th><th>message</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div>")


def render_report(windows: Iterable[Window], alerts: Iterable[Alert], config: MonitorConfig,
                  references: Mapping[str, Mapping[str, Any]] | None = None, *,
                  title: str = "tripwire backtest report", facts: Sequence[tuple[str, Any]] = ()) -> str:
    """The report as one HTML document.

    ``windows`` are the engine's ``on_window`` dicts (from :class:`WindowLog` or as emitted),
    ``alerts`` the alert dicts in the order they fired, ``references`` the reference profile per
    model (for baselines and histograms; without one a model still gets its timelines), ``facts``
    the (label, value) pairs shown under the title.
    """
    windows = list(windows)
    alerts = list(alerts)
    references = references or {}
    names = [m.name for m in config.models]
    names += sorted({w["model"] for w in windows} - set(names))
    names += sorted({a["model"] for a in alerts if a["model"] != STREAM_MODEL} - set(names))
    views = [_model_view(name, [w for w in windows if w["model"] == name],
                         [a for a in alerts if a["model"] == name], config, references) for name in names]
    order = {name: i for i, name in enumerate(names)}
    views.sort(key=lambda v: (-(v.worst.worst_ratio if v.worst else -math.inf), order[v.name]))
    anchors = {(s.model, s.signal, s.detector): s.anchor for v in views for s in v.series if s.detector}
    stream_alerts = [a for a in alerts if a["model"] == STREAM_MODEL]

    firing = [a for a in alerts if a["status"] == "firing"]
    separator = " \u00b7 "
    fact_text = " \u00b7 ".join(f"{_e(label)} <b>{_e(f'{value:,}' if isinstance(value, int) else value)}</b>"
                                for label, value in facts)
    overview_rows = []
    for view in views:
        fired = [a for a in view.alerts if a["status"] == "firing"]
        worst = view.worst
        worst_link = "" if worst is None else f'<a href="#{worst.anchor}">{_e(worst.label)}</a>'
        overview_rows.append(
            f'<tr data-model="{_e(view.name)}"><td><a href="#{view.anchor}">{_e(view.name)}</a></td>'
            f'<td class="num">{sum(w["family"] == "data" for w in view.windows)}</td>'
            f'<td class="num">{sum(w["family"] == "performance" for w in view.windows)}</td>'
            f'<td class="num">{sum(a["severity"] == "critical" for a in fired)}</td>'
            f'<td class="num">{sum(a["severity"] == "warning" for a in fired)}</td>'
            f'<td class="num">{sum(a["status"] == "resolved" for a in view.alerts)}</td>'
            f'<td>{worst_link}</td>'
            f'<td>{_ratio_bar(worst.worst_ratio if worst else None)}</td></tr>')
    if stream_alerts:
        fired = [a for a in stream_alerts if a["status"] == "firing"]
        overview_rows.append(
            f'<tr data-model="{STREAM_MODEL}"><td><a href="#{_anchor("m", STREAM_MODEL)}">input stream</a></td>'
            f'<td class="num">\u2013</td><td class="num">\u2013</td>'
            f'<td class="num">{sum(a["severity"] == "critical" for a in fired)}</td>'
            f'<td class="num">{sum(a["severity"] == "warning" for a in fired)}</td>'
            f'<td class="num">{sum(a["status"] == "resolved" for a in stream_alerts)}</td>'
            f'<td>stream:deadletter</td><td></td></tr>')
    overview = ('<section class="card" id="overview"><h2>Models, worst first</h2><table class="overview"><thead><tr>'
                '<th>model</th><th class="num">data windows</th><th class="num">performance windows</th>'
                '<th class="num">critical</th><th class="num">warning</th><th class="num">resolved</th>'
                '<th>worst signal</th><th>worst / threshold</th></tr></thead><tbody>'
                + "".join(overview_rows) + "</tbody></table>" + _legend() + "</section>")
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="tripwire"><title>{_e(title)}</title><style>{CSS}</style></head><body>',
        f'<header><h1>{_e(title)}</h1><p class="facts">{fact_text}{separator if fact_text else ""}'
        f'alerts <b>{len(alerts):,}</b> ({len(firing):,} firing, {len(alerts) - len(firing):,} resolved)</p>'
        '<div class="tools"><button type="button" id="expand">Expand all</button>'
        '<button type="button" id="collapse">Collapse all</button>'
        '<input type="search" id="filter" placeholder="filter signals and alerts, e.g. weight or fairness" '
        'aria-label="filter"></div></header><main>',
        overview,
        *(_model_section(view, references, OPEN_ROWS if len(views) <= 2 else OPEN_ROWS // 2) for view in views),
        _stream_section(stream_alerts) if stream_alerts else "",
        f'<section class="card" id="alerts-section"><h2>Alerts ({len(alerts):,})</h2>'
        f'<p class="muted">In the order they fired; the signal links to its timeline.</p>'
        f'{_alerts_table(alerts, anchors)}</section>',
        f"</main><script>{JS}</script></body></html>\n",
    ]
    return "".join(parts)
