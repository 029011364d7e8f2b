"""The report's SVG: a series' timeline and sparkline, the value / threshold bar, histograms."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Callable, Iterable, Mapping, Sequence

from tripwire.config import DRIFT_STATISTICS
from tripwire.report.data import Point, Series, ratio
from tripwire.report.text import alert_time, anchor, esc, fmt, num, pct, ratio_text, tick_text, utc_time

MAX_POINTS = 400  # a longer series is decimated (min and max per bucket: spikes survive)
MAX_CATEGORIES = 24  # categorical histograms beyond this show the biggest shifts and one "others" bar


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
    ticks: list[tuple[float, str]] = []
    t = first
    while t <= x1:
        moment = datetime.fromtimestamp(t, tz=UTC)
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


def _polyline(points: Sequence[Point], X: Callable[[float], float], Y: Callable[[float], float],
              css: str) -> str:
    if not points:
        return ""
    coords = " ".join(f"{num(X(p.x))},{num(Y(p.y))}" for p in points)
    return f'<polyline class="{css}" points="{coords}"/>'


def _point_title(series: Series, point: Point) -> str:
    window = point.window
    stats = window["stats"]
    severity = series.severity(point)
    parts = [f"{utc_time(window['start'])} \u2192 {utc_time(window['end'], False)} UTC, n = {window['n']:,}",
             f"{series.statistic} = {fmt(point.y)}" + (f" ({severity})" if severity else "")]
    if point.a != point.y:
        parts.append(f"alert value {fmt(point.a)}")
    if series.group in ("drift", "prediction"):
        others = [f"{s} {fmt(stats[f'{series.signal}.{s}'])}" for s in DRIFT_STATISTICS
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
           f'aria-label="{esc(series.model)} {esc(series.label)} over time">']
    for start, end, severity in series.firing_periods(x1):
        out.append(f'<rect class="band {severity}" x="{num(X(start))}" y="{top}" '
                   f'width="{num(max(X(end) - X(start), 1.5))}" height="{ph}"/>')
    step = _nice_step(hi - lo, 4)
    v = math.ceil(lo / step) * step
    while v <= hi + 1e-12:
        y = Y(v)
        out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{num(y)}" y2="{num(y)}"/>'
                   f'<text class="tick" x="{left - 6}" y="{num(y + 3.5)}" text-anchor="end">{esc(tick_text(v, step))}</text>')
        v += step
    for t, text in _x_ticks(x0, x1):
        out.append(f'<line class="xtick" x1="{num(X(t))}" x2="{num(X(t))}" y1="{top + ph}" y2="{top + ph + 4}"/>'
                   f'<text class="tick" x="{num(X(t))}" y="{height - 6}" text-anchor="middle">{text}</text>')
    out.append(f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>')
    labels: list[tuple[float, str, str]] = []  # (y, css, text) of the lines' labels at the right
    if series.baseline is not None:
        y = Y(series.baseline)
        out.append(f'<line class="baseline" x1="{left}" x2="{left + pw}" y1="{num(y)}" y2="{num(y)}"/>')
        labels.append((y, "lim", f"baseline {fmt(series.baseline)}"))
    for severity, value in series.lines:
        y = Y(value)
        out.append(f'<line class="limit {severity}" x1="{left}" x2="{left + pw}" y1="{num(y)}" y2="{num(y)}"/>')
        labels.append((y, f"lim {severity}", f"{severity} {fmt(value)}"))
    for y, css, text in _spread(labels, top, top + ph):
        out.append(f'<text class="{css}" x="{left + pw + 4}" y="{num(y + 3.5)}">{esc(text)}</text>')
    out.append(_polyline(points, X, Y, "line"))
    shown = points if dots and len(points) <= 120 else [p for p in points if series.severity(p)]
    for point in shown:
        severity = series.severity(point) or "ok"
        out.append(f'<circle class="pt {severity}" cx="{num(X(point.x))}" cy="{num(Y(point.y))}" r="3">'
                   f'<title>{esc(_point_title(series, point))}</title></circle>')
    for alert in series.alerts:
        x = X(alert_time(alert))
        css = "resolved" if alert["status"] == "resolved" else alert["severity"]
        out.append(f'<a href="#{anchor("a", alert["alert_id"])}"><path class="marker {css}" '
                   f'd="M{num(x - 5)},{top - 12} L{num(x + 5)},{top - 12} L{num(x)},{top - 3} Z">'
                   f'<title>{esc(alert["ts"])} {esc(alert["status"])} {esc(alert["severity"])}: '
                   f'{esc(alert["message"])}</title></path></a>')
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
        out.append(f'<line class="limit warning" x1="0" x2="{width}" y1="{num(Y(value))}" y2="{num(Y(value))}"/>')
    out.append(_polyline(points, X, Y, "line"))
    for point in points:
        severity = series.severity(point)
        if severity:
            out.append(f'<circle class="pt {severity}" cx="{num(X(point.x))}" cy="{num(Y(point.y))}" r="2"/>')
    out.append("</svg>")
    return "".join(out)


def ratio_bar(value: float | None) -> str:
    if value is None:
        return '<span class="ratio">\u2013</span>'
    fill = max(0.0, min(value, 3.0)) / 3.0 * 100
    css = "critical" if value >= 2 else "warning" if value >= 1 else "ok"
    return (f'<span class="ratio"><span class="bar"><span class="fill {css}" style="width:{fill:.0f}%"></span>'
            f'<span class="one"></span></span>{ratio_text(value)}</span>')



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
        out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{num(Y(v))}" y2="{num(Y(v))}"/>'
                   f'<text class="tick" x="{left - 6}" y="{num(Y(v) + 3.5)}" text-anchor="end">{v * 100:.0f}%</text>')
        v += step
    for i, (label, r, c) in enumerate(zip(labels, ref, cur)):
        centre = left + slot * (i + 0.5)
        title = f"{label}: reference {pct(r)}, window {pct(c)} ({(c - r) * 100:+.1f} pts)"
        out.append(f'<g><title>{esc(title)}</title>'
                   f'<rect class="ref" x="{num(centre - bar - 1)}" y="{num(Y(r))}" width="{num(bar)}" '
                   f'height="{num(Y(0) - Y(r))}"/>'
                   f'<rect class="cur {severity}" x="{num(centre + 1)}" y="{num(Y(c))}" width="{num(bar)}" '
                   f'height="{num(Y(0) - Y(c))}"/></g>')
        short = label if len(label) <= 18 else label[:17] + "\u2026"
        if rotate:
            out.append(f'<text class="tick" transform="translate({num(centre + 3)},{top + ph + 10}) rotate(-40)" '
                       f'text-anchor="end">{esc(short)}</text>')
        else:
            out.append(f'<text class="tick" x="{num(centre)}" y="{top + ph + 16}" '
                       f'text-anchor="middle">{esc(short)}</text>')
    out.append(f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{num(Y(0))}" y2="{num(Y(0))}"/></svg>')
    return "".join(out)


def distribution_figure(series: Series, reference: Mapping[str, Any] | None) -> str | None:
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
    moved = "; ".join(f"{esc(labels[i])}: {pct(ref[i])} \u2192 {pct(cur[i])}" for i in shifts)
    pvalue = window["stats"].get(f"{series.signal}.pvalue")
    kind = "categories" if profile.get("kind") == "categorical" else "reference quantile bins, outer bins open-ended"
    return (f'<figure class="dist" id="{anchor("d", series.model, series.signal)}" data-signal="{esc(series.signal)}" '
            f'data-search="{esc((series.model + " " + series.signal).lower())}">'
            f'<figcaption><b>{esc(series.signal)}</b> <span class="badge {series.state}">{series.state}</span> '
            f'worst window {utc_time(window["start"])} \u2192 {utc_time(window["end"], False)} UTC, n = {window["n"]:,}: '
            f'{esc(series.statistic.upper() if series.statistic != "wasserstein" else "Wasserstein")} {fmt(worst.y)}'
            f'{f", p = {pvalue:.2g}" if pvalue is not None else ""} ({ratio_text(ratio(worst.a, series.threshold))} '
            f'the threshold). <span class="muted">Biggest shifts \u2014 {moved}. Bins: {kind}.</span></figcaption>'
            f'{histogram_svg(labels, ref, cur, severity)}</figure>')

