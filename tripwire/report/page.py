"""The report page: the overview, a section per model, the alert table, as one HTML string."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from tripwire.config import ModelConfig, MonitorConfig
from tripwire.report.assets import CSS, JS
from tripwire.report.data import STREAM_MODEL, Alert, Series, Window, build_series, group_title, rank_key
from tripwire.report.draw import distribution_figure, ratio_bar, sparkline_svg, timeline_svg
from tripwire.report.text import alert_time, anchor, esc, fmt, ratio_text, short_ts, utc_time

OPEN_ROWS = 6  # alerted signal rows open by default, per model
NOTABLE_RATIO = 0.5  # rows below half their warning threshold (and never alerting) fold away


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
    limits = ", ".join(f"{s} {sign} {fmt(v)}" for s, v in (("warning", series.threshold.warning),
                                                            ("critical", series.threshold.critical)) if v is not None)
    return f"{series.detector}: {limits} ({series.threshold_source})" + (f"; {series.note}" if series.note else "")


def _signal_row(series: Series, x0: float, x1: float, open_: bool, dots: bool = True) -> str:
    worst = series.worst
    fired = [a["severity"] for a in series.alerts if a["status"] == "firing"]
    badges = " ".join(f'<span class="badge {s}">{fired.count(s)} {s}</span>' for s in ("critical", "warning")
                      if s in fired) or '<span class="muted">no alert</span>'
    note = _threshold_note(series)
    search = f"{series.model} {series.signal} {series.statistic} {series.group}".lower()
    return (f'<details class="sig" id="{series.anchor}" data-search="{esc(search)}" '
            f'data-ratio="{series.worst_ratio or 0:.6g}"'
            f'{" open" if open_ else ""}><summary><span class="caret">\u25b8</span><span class="dot {series.state}" '
            f'title="{series.state}"></span><span class="signame" title="{esc(series.label)}">{esc(series.signal)} '
            f'<span class="muted">\u00b7 {esc(series.statistic)}</span>'
            f'<span class="group">{group_title(series.group)}</span>'
            f'</span><span class="num">{fmt(worst.y if worst else None)}</span>{ratio_bar(series.worst_ratio)}'
            f'{sparkline_svg(series)}<span>{badges}</span></summary><div class="sigbody">'
            f'<p class="note">{esc(note)}</p>{timeline_svg(series, x0, x1, dots=dots)}</div></details>')


def _signals_block(ranked: list[Series], x0: float, x1: float, open_rows: int) -> str:
    notable: list[Series] = []
    quiet: list[Series] = []
    flat: list[Series] = []
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
        items = "; ".join(f"<code>{esc(stat)}</code>: {esc(', '.join(sorted(signals)))}"
                          for stat, signals in sorted(by_statistic.items()))
        out.append(f'<p class="flat">Zero in every window ({len(flat)}): {items}</p>')
    return "".join(out)


def _panel(series: Series, x0: float, x1: float) -> str:
    limits = f'<p class="note">{esc(_threshold_note(series))}</p>'
    search = f"{series.model} {series.signal} {series.statistic}".lower()
    return (f'<div class="panel" data-search="{esc(search)}">'
            f'<h4><a href="#{series.anchor}">{esc(series.label)}</a> <span class="dot {series.state}"></span></h4>'
            f'{limits}{timeline_svg(series, x0, x1, width=620, height=150)}</div>')


def _context_row(series: Series, x0: float, x1: float) -> str:
    search = f"{series.model} {series.signal} {series.statistic}".lower()
    last = series.ys[-1] if series.ys else None
    values = series.ys
    return (f'<details class="sig" id="{series.anchor}" data-search="{esc(search)}"><summary>'
            '<span class="caret">\u25b8</span>'
            f'<span class="dot"></span><span class="signame">{esc(series.signal)} <span class="muted">\u00b7 '
            f'{esc(series.statistic)}</span></span><span class="num">{fmt(max(values) if values else None)}</span>'
            f'<span class="muted">last {fmt(last)}</span>{sparkline_svg(series)}'
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
        return sorted((s for s in self.series if s.threshold is not None), key=rank_key)

    @property
    def worst(self) -> Series | None:
        judged = self.judged
        return judged[0] if judged and judged[0].worst_ratio is not None else None

    @property
    def anchor(self) -> str:
        return anchor("m", self.name)


def _model_view(name: str, windows: list[Window], alerts: list[Alert], config: MonitorConfig,
                references: Mapping[str, Mapping[str, Any]]) -> _ModelView:
    model_config = config.model(name) or ModelConfig(name=name, reference="")
    series = build_series(name, windows, alerts, model_config, references.get(name))
    times = [w["start"] for w in windows] + [w["end"] for w in windows] + [alert_time(a) for a in alerts]
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
    span = f'{utc_time(view.x0)} \u2192 {utc_time(view.x1)} UTC' if view.windows else "no window closed"
    summary = (f'<h2>{esc(view.name)}</h2><span class="muted">version {esc(version)} \u00b7 '
               f'{len(data)} data windows ({sum(w["n"] for w in data):,} events) \u00b7 {len(performance)} performance '
               f'windows ({sum(w["n"] for w in performance):,} labelled) \u00b7 {span}</span> {counts}'
               + (f' <span class="muted">{resolved} resolved</span>' if resolved else ""))
    parts = [f'<section class="card model" id="{view.anchor}" data-model="{esc(view.name)}"><details open class="keep">'
             f'<summary>{summary}</summary>']
    if worst is not None:
        parts.append(f'<p class="muted">Worst: <a href="#{worst.anchor}">{esc(worst.label)}</a> reached '
                     f'{ratio_text(worst.worst_ratio)} its threshold.</p>')
    judged = view.judged
    parts.append(f'<h3>Signals, worst first ({len(judged)})</h3>')
    parts.append(_signals_block(judged, view.x0, view.x1, open_rows))
    matched = {id(a) for s in view.series for a in s.alerts}
    unmatched = [a for a in view.alerts if id(a) not in matched]
    if unmatched:
        parts.append(f'<p class="muted">{len(unmatched)} alert{"s" if len(unmatched) != 1 else ""} without a window '
                     'series (e.g. a change detector before its first performance window): '
                     + ", ".join(f'<a href="#{anchor("a", a["alert_id"])}">{esc(a["signal"])} {esc(a["detector"])}</a>'
                                 for a in unmatched) + "</p>")

    outcome_groups = ("performance", "estimated", "fairness", "class")  # "class": a multi-class model's classes
    outcome = [s for s in view.series if s.group in outcome_groups]
    outcome.sort(key=lambda s: (outcome_groups.index(s.group), s.label))
    if outcome:
        parts.append('<details open class="sub perf"><summary>Performance and fairness</summary><div class="grid2">'
                     + "".join(_panel(s, view.x0, view.x1) for s in outcome) + "</div></details>")

    drifted = [s for s in judged if s.group in ("drift", "prediction")
               and (s.alerts or (s.worst_ratio or 0) >= 1)]
    figures = [f for f in (distribution_figure(s, references.get(view.name)) for s in drifted) if f]
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
    rows = "".join(f'<li><a href="#{anchor("a", a["alert_id"])}">{esc(a["ts"])}</a> '
                   f'<span class="badge {"resolved" if a["status"] == "resolved" else a["severity"]}">{esc(a["status"])}'
                   f'</span> {esc(a["message"])}</li>' for a in alerts)
    return (f'<section class="card model" id="{anchor("m", STREAM_MODEL)}" data-model="{STREAM_MODEL}">'
            f'<h2>Input stream (all models)</h2><p class="muted">Records that broke the event contract '
            f'(<code>stream:deadletter</code>); they are in the dead-letter file beside the alerts.</p><ul>{rows}</ul>'
            f'</section>')


def _alerts_table(alerts: list[Alert], anchors: Mapping[tuple[str, str, str], str]) -> str:
    rows = []
    for number, alert in enumerate(alerts, 1):
        status = "resolved" if alert["status"] == "resolved" else alert["severity"]
        link = anchors.get((alert["model"], alert["signal"], alert["detector"]))
        signal = esc(alert["signal"]) if link is None else f'<a href="#{link}">{esc(alert["signal"])}</a>'
        window = alert.get("window") or {}
        search = " ".join(str(alert[k]) for k in ("model", "signal", "detector", "kind", "status", "severity"))
        rows.append(
            f'<tr id="{anchor("a", alert["alert_id"])}" data-search="{esc(search.lower())}" '
            f'data-status="{esc(alert["status"])}">'
            f'<td class="num">{number}</td><td class="ts" title="{esc(alert["ts"])}">{esc(short_ts(alert["ts"]))}</td>'
            f'<td><span class="badge {"firing" if alert["status"] == "firing" else "resolved"}">'
            f'{esc(alert["status"])}</span> '
            f'<span class="badge {status}">{esc(alert["severity"])}</span></td><td>{esc(alert["kind"])}</td>'
            f'<td>{esc(alert["model"])}</td><td>{signal}</td><td class="det">{esc(alert["detector"])}</td>'
            f'<td class="num">{fmt(alert["value"])}</td><td class="num">{fmt(alert.get("threshold"))}</td>'
            f'<td class="num">{int(window.get("n") or 0):,}</td><td class="msg">{esc(alert["message"])}</td></tr>')
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
    views.sort(key=lambda v: (-((v.worst.worst_ratio or 0.0) if v.worst else -math.inf), order[v.name]))
    anchors = {(s.model, s.signal, s.detector): s.anchor for v in views for s in v.series if s.detector}
    stream_alerts = [a for a in alerts if a["model"] == STREAM_MODEL]

    firing = [a for a in alerts if a["status"] == "firing"]
    separator = " \u00b7 "
    fact_text = " \u00b7 ".join(f"{esc(label)} <b>{esc(f'{value:,}' if isinstance(value, int) else value)}</b>"
                                for label, value in facts)
    overview_rows = []
    for view in views:
        fired = [a for a in view.alerts if a["status"] == "firing"]
        worst = view.worst
        worst_link = "" if worst is None else f'<a href="#{worst.anchor}">{esc(worst.label)}</a>'
        overview_rows.append(
            f'<tr data-model="{esc(view.name)}"><td><a href="#{view.anchor}">{esc(view.name)}</a></td>'
            f'<td class="num">{sum(w["family"] == "data" for w in view.windows)}</td>'
            f'<td class="num">{sum(w["family"] == "performance" for w in view.windows)}</td>'
            f'<td class="num">{sum(a["severity"] == "critical" for a in fired)}</td>'
            f'<td class="num">{sum(a["severity"] == "warning" for a in fired)}</td>'
            f'<td class="num">{sum(a["status"] == "resolved" for a in view.alerts)}</td>'
            f'<td>{worst_link}</td>'
            f'<td>{ratio_bar(worst.worst_ratio if worst else None)}</td></tr>')
    if stream_alerts:
        fired = [a for a in stream_alerts if a["status"] == "firing"]
        overview_rows.append(
            f'<tr data-model="{STREAM_MODEL}"><td><a href="#{anchor("m", STREAM_MODEL)}">input stream</a></td>'
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
        f'<meta name="generator" content="tripwire"><title>{esc(title)}</title><style>{CSS}</style></head><body>',
        f'<header><h1>{esc(title)}</h1><p class="facts">{fact_text}{separator if fact_text else ""}'
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
