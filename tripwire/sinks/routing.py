"""Which alerts a sink takes: by status (firing, escalated, resolved, reference_changed) and severity."""

from __future__ import annotations

from typing import Any

from tripwire.alerts import SEVERITY_RANK


def route_status(alert: dict[str, Any]) -> str | None:
    """``firing``, ``escalated``, ``resolved`` or ``reference_changed``; None for anything else."""
    if alert.get("type") == "reference_changed":
        return "reference_changed"
    if alert.get("type") != "alert":
        return None
    if alert["status"] == "firing" and alert["incident_id"] != alert["alert_id"]:
        return "escalated"  # the same incident announced again at a higher severity
    return alert["status"]


def routes(settings: dict[str, Any], alert: dict[str, Any]) -> bool:
    """True when a sink with ``settings`` (``statuses``, ``min_severity``) takes ``alert``."""
    status = route_status(alert)
    if status is None or status not in settings["statuses"]:
        return False
    severity = alert.get("severity")
    return severity is None or SEVERITY_RANK[severity] >= SEVERITY_RANK[settings["min_severity"]]
