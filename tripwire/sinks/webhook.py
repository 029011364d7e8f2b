"""Alerts as JSON POSTs to any HTTP endpoint, with a Slack-compatible ``text`` line.

One POST per alert: ``{"text": "...", "alert_id": "...", "alert": {the alert or reference_changed event}}``
with the header ``Idempotency-Key: <alert_id>``. A Slack (or Mattermost, Teams workflow, ...)
incoming webhook shows ``text``; anything else reads ``alert``. A retried POST may arrive twice
with the same ``alert_id``; receivers deduplicate on it.
"""

from __future__ import annotations

from typing import Any

import orjson

from tripwire.alerts import alert_id
from tripwire.sinks.delivery import DeliveryRunner, post_json, where
from tripwire.sinks.routing import route_status, routes


def slack_text(alert: dict[str, Any]) -> str:
    """One line a person can act on, e.g. ``[FIRING critical] fuel-efficiency data_drift feature:weight: ...``."""
    status = route_status(alert)
    if status == "reference_changed":
        closed = len(alert.get("closed_alerts") or [])
        return (f"[REFERENCE CHANGED] {alert['model']}: now monitored against {alert.get('reference')} "
                f"(version {alert.get('previous_version')} -> {alert.get('model_version')}); "
                f"{closed} open alert(s) closed")
    head = f"[{str(status).upper()} {alert['severity']}] {alert['model']}"
    if alert.get("model_version") is not None:
        head += f" v{alert['model_version']}"
    segment = f" [{alert['segment']}]" if alert.get("segment") else ""
    return f"{head} {alert['kind']} {alert['signal']}{segment} ({alert['detector']}): {alert['message']}"


def webhook_payload(alert: dict[str, Any], text: bool = True) -> dict[str, Any]:
    alert_id = alert.get("alert_id") or _event_id(alert)
    payload: dict[str, Any] = {"alert_id": alert_id, "alert": alert}
    if text:
        payload["text"] = slack_text(alert)
    return payload


def _event_id(event: dict[str, Any]) -> str:
    """A deterministic id for events that carry none (reference_changed): what identifies the change."""
    return alert_id(event.get("type"), event.get("model"), event.get("model_version"), event.get("reference"),
                    event.get("ts"))


class WebhookSink:
    """Routes alerts to one HTTP endpoint; :meth:`submit` never blocks (see :mod:`.delivery`)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.runner = DeliveryRunner(f"webhook {where(settings['url'])}", self._post, buffer=settings["buffer_alerts"],
                                     retry_seconds=settings["retry_seconds"],
                                     max_retry_seconds=settings["max_retry_seconds"])

    def submit(self, alert: dict[str, Any]) -> None:
        if routes(self.settings, alert):
            self.runner.submit(webhook_payload(alert, self.settings["text"]))

    def _post(self, batch: list[dict[str, Any]]) -> None:
        for payload in batch:  # batch_size is 1: one message per POST, as chat webhooks expect
            post_json(self.settings["url"], orjson.dumps(payload),
                      headers={**self.settings["headers"], "Idempotency-Key": payload["alert_id"]},
                      timeout=self.settings["timeout_seconds"])

    def close(self, timeout: float = 10.0) -> bool:
        return self.runner.close(timeout)
