"""How the report writes numbers, times and text into HTML and SVG."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from html import escape
from typing import Any, Mapping

from tripwire.events import parse_ts


def anchor(*parts: Any) -> str:
    return parts[0] + "-" + hashlib.sha1("\x1f".join(str(p) for p in parts[1:]).encode()).hexdigest()[:12]


def fmt(value: float | None) -> str:
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


def tick_text(value: float, step: float) -> str:
    """An axis label with as many decimals as the step needs (1,000 not 1,000.0; 0.25 not 0.250)."""
    value = round(value, 12)
    if value == 0:
        return "0"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    if step < 1 and round(step * 10 ** decimals, 9) % 1:
        decimals += 1
    return f"{value:,.{decimals}f}"


def pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def ratio_text(value: float | None) -> str:
    if value is None:
        return "\u2013"
    if math.isinf(value):
        return "\u221e\u00d7"
    return f"{value:.2f}\u00d7" if value < 10 else f"{value:,.0f}\u00d7"


def utc_time(ts: float, with_date: bool = True) -> str:
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}" if with_date else f"{moment:%H:%M:%S}"


def short_ts(text: str) -> str:
    """``2026-11-28T00:10:21.309Z`` as ``2026-11-28 00:10:21`` (the full stamp is the cell's title)."""
    try:
        return utc_time(parse_ts(text))
    except ValueError:
        return text


def alert_time(alert: Mapping[str, Any]) -> float:
    return parse_ts(alert["ts"])


def esc(text: Any) -> str:
    return escape(str(text), quote=True)


def num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")

