"""Alert routing: the ``[sinks]`` of a config, started by the worker (and ``tripwire replay --sinks``).

:func:`start_sinks` builds every configured sink; its :meth:`AlertSinks.submit` is what the worker
calls for each alert (and ``reference_changed`` event): it only appends to each sink's buffer.
"""

from __future__ import annotations

from typing import Any, Callable

from tripwire.sinks.alertmanager import AlertmanagerSink
from tripwire.sinks.webhook import WebhookSink


class AlertSinks:
    """Every configured sink behind one non-blocking ``submit``."""

    def __init__(self, sinks: list[Any]) -> None:
        self.sinks = sinks

    def submit(self, alert: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.submit(alert)

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is buffered (each sink at most ``timeout`` seconds); True when all arrived."""
        return all([sink.close(timeout) for sink in self.sinks])

    def summary(self) -> str:
        return "; ".join(sink.runner.summary() for sink in self.sinks)


def start_sinks(sinks: dict[str, list[dict[str, Any]]] | None) -> AlertSinks | None:
    """The sinks of a parsed ``[sinks]`` table (``config.sinks``), or None when none is configured."""
    built: list[Any] = [AlertmanagerSink(s) for s in (sinks or {}).get("alertmanager", [])]
    built += [WebhookSink(s) for s in (sinks or {}).get("webhook", [])]
    for sink in built:
        sink.runner.start()
    return AlertSinks(built) if built else None


__all__ = ["AlertSinks", "AlertmanagerSink", "WebhookSink", "start_sinks"]


def fan_out(*sinks: Callable[[dict[str, Any]], None] | None) -> Callable[[dict[str, Any]], None] | None:
    """One sink (of windows or alerts) that feeds every given one in order (None when none is given)."""
    live = [sink for sink in sinks if sink is not None]
    if len(live) <= 1:
        return live[0] if live else None

    def feed_all(item: dict[str, Any]) -> None:
        for sink in live:
            sink(item)

    return feed_all
