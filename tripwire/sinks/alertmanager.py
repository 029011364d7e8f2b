"""Alerts to Prometheus Alertmanager through its v2 API (``POST /api/v2/alerts``).

Each tripwire incident is one Alertmanager alert, identified (as Alertmanager does) by its labels:
``alertname`` (``tripwire_<kind>``), ``model``, ``kind``, ``signal``, ``severity``, ``detector``
(plus ``segment`` when there is one, and the configured extra labels). Alertmanager's grouping,
inhibition, silences and receivers work on those labels.

* ``firing`` -> the alert with ``startsAt`` = its event time and no ``endsAt``;
* an escalation (warning -> critical, same incident) -> the warning alert ends, the critical one starts;
* ``resolved`` and the alerts a ``reference_changed`` closed -> the same labels with ``endsAt``.

Alertmanager resolves an alert on its own ``resolve_timeout`` after the last time it heard of it,
so open alerts are re-sent every ``resend_seconds`` (Prometheus does the same). Event times in the
future (a replay of tomorrow's file) are clamped to now, so a resolve always resolves.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson

from tripwire.events import format_ts
from tripwire.sinks.delivery import DeliveryRunner, post_json, where
from tripwire.sinks.routing import routes

API_PATH = "/api/v2/alerts"
BATCH_SIZE = 64


def alert_labels(alert: dict[str, Any], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The Alertmanager labels of a tripwire alert (the identity of the incident at its severity)."""
    labels = {**(extra or {}), "alertname": f"tripwire_{alert['kind']}", "model": str(alert["model"]),
              "kind": alert["kind"], "signal": alert["signal"], "severity": alert["severity"],
              "detector": alert["detector"]}
    if alert.get("segment"):
        labels["segment"] = str(alert["segment"])
    return labels


def to_alertmanager(alert: dict[str, Any], *, extra_labels: dict[str, str] | None = None,
                    generator_url: str | None = None, starts: str | None = None,
                    ends: str | None = None) -> dict[str, Any]:
    """One postable Alertmanager alert; ``starts`` defaults to the alert's time, ``ends`` marks it resolved."""
    annotations = {"message": alert["message"], "alert_id": alert["alert_id"], "incident_id": alert["incident_id"],
                   "value": f"{alert['value']:.6g}" if isinstance(alert["value"], (int, float)) else str(alert["value"])}
    if alert.get("threshold") is not None:
        annotations["threshold"] = f"{alert['threshold']:.6g}"
    if alert.get("model_version") is not None:
        annotations["model_version"] = str(alert["model_version"])
    posted: dict[str, Any] = {"labels": alert_labels(alert, extra_labels), "annotations": annotations,
                              "startsAt": _not_future(starts or alert["ts"])}
    if ends is not None:
        posted["endsAt"] = _not_future(ends)
    if generator_url:
        posted["generatorURL"] = generator_url
    return posted


def _not_future(ts: str) -> str:
    now = format_ts(time.time())
    return min(ts, now)  # both are fixed-width UTC ISO strings, so they compare as times


class AlertmanagerSink:
    """Routes alerts to one Alertmanager; :meth:`submit` never blocks (see :mod:`.delivery`)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.url = settings["url"] + API_PATH
        self.runner = DeliveryRunner(f"alertmanager {where(settings['url'])}", self._post,
                                     buffer=settings["buffer_alerts"], batch_size=BATCH_SIZE,
                                     retry_seconds=settings["retry_seconds"],
                                     max_retry_seconds=settings["max_retry_seconds"],
                                     periodic=self._open_alerts, periodic_seconds=settings["resend_seconds"])
        self._open: dict[str, dict[str, Any]] = {}  # incident_id -> the latest firing alert of it
        self._lock = threading.Lock()

    def submit(self, alert: dict[str, Any]) -> None:
        for posted in self._translate(alert):
            self.runner.submit(posted)

    def _translate(self, alert: dict[str, Any]) -> list[dict[str, Any]]:
        kind = alert.get("type")
        if kind == "reference_changed":
            ended = self._closed_by(alert)  # no longer open (nor re-sent), routed or not
            return ended if routes(self.settings, alert) else []
        if kind != "alert":
            return []
        out = []
        with self._lock:
            previous = self._open.get(alert["incident_id"])
            if alert["status"] == "firing":
                self._open[alert["incident_id"]] = alert
                if previous is not None and previous["severity"] != alert["severity"]:
                    # Escalation: the severity is a label, so the warning alert ends as the critical one starts.
                    out.append(self._posted(previous, ends=alert["ts"]))
            else:
                self._open.pop(alert["incident_id"], None)
        if routes(self.settings, alert):
            if alert["status"] == "resolved":  # the same start as the firing alert it ends
                out.append(self._posted(alert, ends=alert["ts"], starts=previous["ts"] if previous else None))
            else:
                out.append(self._posted(alert, ends=None))
        return out

    def _closed_by(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        closed = set(event.get("closed_alerts") or [])
        with self._lock:
            ended = [a for a in self._open.values() if a["model"] == event["model"] and a["alert_id"] in closed]
            for alert in ended:
                del self._open[alert["incident_id"]]
        return [self._posted(alert, ends=event["ts"]) for alert in ended]

    def _posted(self, alert: dict[str, Any], ends: str | None, starts: str | None = None) -> dict[str, Any]:
        return to_alertmanager(alert, extra_labels=self.settings["labels"], generator_url=self.settings["generator_url"],
                               starts=starts, ends=ends)

    def _open_alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._posted(alert, None) for alert in self._open.values() if routes(self.settings, alert)]

    def _post(self, batch: list[dict[str, Any]]) -> None:
        post_json(self.url, orjson.dumps(batch), timeout=self.settings["timeout_seconds"])

    def close(self, timeout: float = 10.0) -> bool:
        return self.runner.close(timeout)
