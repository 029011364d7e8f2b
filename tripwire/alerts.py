"""Alert policy: turn per-window findings into the alert lifecycle of the contract.

A signal fires once when it crosses its threshold and resolves once when it has been back under
it for ``resolve_windows`` windows; it does not alert again for every bad window, only when it
escalates from warning to critical (a second ``firing`` alert with the same ``incident_id``). Alert ids are a
hash of what identifies the incident, so a replaying or restarted worker emits the same ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from tripwire.events import format_ts
from tripwire.thresholds import Threshold

SEVERITY_RANK = {"warning": 1, "critical": 2}
_MAX_KEYS = 10_000  # signal keys a policy remembers hashed
KINDS = (
    "data_drift",
    "prediction_drift",
    "concept_drift",
    "performance",
    "fairness",
    "data_quality",
    "infrastructure",
    "estimated_performance",
)


@dataclass(slots=True)  # (not frozen: a frozen dataclass's __init__ costs four times as much, ~80 of them a window)
class Finding:
    """One detector's verdict on one window (or one event, for change detectors)."""

    model: str
    kind: str
    signal: str
    detector: str
    value: float
    threshold: Threshold
    window_start: float
    window_end: float
    n: int
    message: str
    segment: str | None = None
    evidence: dict[str, Any] | None = None
    significant: bool = True  # False when an effect is large but not statistically significant


def alert_id(*parts: Any) -> str:
    text = "\x1f".join("" if part is None else str(part) for part in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def encode_alert(alert: dict[str, Any]) -> bytes:
    """Canonical bytes (sorted keys), so the same alert is the same bytes on every run."""
    return orjson.dumps(alert, option=orjson.OPT_SORT_KEYS)


class AlertPolicy:
    """Per-signal alert state: ok or firing, cooldown, good windows since the last bad one."""

    def __init__(self, min_samples: int, resolve_windows: int = 2, cooldown_windows: int = 0) -> None:
        self.min_samples = min_samples
        self.resolve_windows = resolve_windows
        self.cooldown_windows = cooldown_windows
        self._open: dict[str, dict[str, Any]] = {}  # key -> the firing alert
        self._good: dict[str, int] = {}  # key -> consecutive good windows while firing
        self._cooldown: dict[str, int] = {}  # key -> windows left before it may fire again
        self._keys: dict[tuple[str, str, str, str | None], str] = {}  # the keys of the signals seen, hashed once

    def _key(self, model: str, signal: str, detector: str, segment: str | None) -> str:
        """The state key of a signal: :func:`alert_id` of what identifies it (hashed once per signal)."""
        parts = (model, signal, detector, segment)
        key = self._keys.get(parts)
        if key is None:
            if len(self._keys) >= _MAX_KEYS:  # (signals named after runs or sightings come and go)
                self._keys.clear()
            key = self._keys[parts] = alert_id(*parts)
        return key

    def would_act(self, model: str, signal: str, detector: str, n: int, value: float, threshold: Threshold,
                  significant: bool = True, segment: str | None = None) -> bool:
        """Whether :meth:`evaluate` of a window finding with these fields could alert or change this policy's state.

        When it is False, evaluate would return None and change nothing, so a window's judge need
        not build the finding (its message and evidence) at all.

        >>> policy = AlertPolicy(min_samples=10)
        >>> policy.would_act("m", "feature:x", "psi", 100, 0.01, Threshold(0.1, 0.25))
        False
        >>> policy.would_act("m", "feature:x", "psi", 100, 0.3, Threshold(0.1, 0.25))
        True
        """
        if n < self.min_samples:
            return False
        if significant and threshold.severity(value) is not None:
            return True
        key = self._key(model, signal, detector, segment)
        return key in self._open or bool(self._cooldown.get(key))

    def evaluate(self, finding: Finding, *, model_version: str | None, reference: str | None,
                 ts: float, min_samples: int | None = None) -> dict[str, Any] | None:
        """Return an alert to publish, or None. ``ts`` is the event time that produced the finding."""
        if finding.n < (self.min_samples if min_samples is None else min_samples):
            return None
        key = self._key(finding.model, finding.signal, finding.detector, finding.segment)
        severity = finding.threshold.severity(finding.value) if finding.significant else None
        firing = self._open.get(key)
        if firing is None:
            left = self._cooldown.get(key, 0)
            if left:
                self._cooldown[key] = left - 1
                return None
            if severity is None:
                return None
            alert = self._alert(finding, "firing", severity, model_version, reference, ts, None)
            self._open[key] = alert
            self._good[key] = 0
            return alert
        if severity is not None:
            self._good[key] = 0
            if SEVERITY_RANK[severity] <= SEVERITY_RANK[firing["severity"]]:
                return None
            # Escalation: the same incident, announced again at the higher severity.
            alert = self._alert(finding, "firing", severity, model_version, reference, ts, firing["incident_id"])
            self._open[key] = alert
            return alert
        self._good[key] += 1
        if self._good[key] < self.resolve_windows:
            return None
        del self._open[key]
        del self._good[key]
        self._cooldown[key] = self.cooldown_windows
        return self._alert(finding, "resolved", firing["severity"], model_version, reference, ts, firing["incident_id"])

    def open_alerts(self) -> list[dict[str, Any]]:
        return list(self._open.values())

    def to_dict(self) -> dict[str, Any]:
        return {"open": self._open, "good": self._good, "cooldown": self._cooldown}

    def restore(self, state: dict[str, Any]) -> None:
        self._open = dict(state["open"])
        self._good = dict(state["good"])
        self._cooldown = dict(state["cooldown"])

    @staticmethod
    def _alert(finding: Finding, status: str, severity: str, model_version: str | None,
               reference: str | None, ts: float, incident_id: str | None) -> dict[str, Any]:
        start = format_ts(finding.window_start)
        this_id = alert_id(finding.model, finding.signal, finding.detector, finding.segment, start, status, severity)
        limit = finding.threshold.limit(severity)
        return {
            "type": "alert",
            "schema": 1,
            "alert_id": this_id,
            "incident_id": incident_id or this_id,
            "status": status,
            "kind": finding.kind,
            "severity": severity,
            "model": finding.model,
            "model_version": model_version,
            "signal": finding.signal,
            "segment": finding.segment,
            "detector": finding.detector,
            "value": finding.value,
            "threshold": limit,
            "window": {"start": start, "end": format_ts(finding.window_end), "n": finding.n},
            "reference": reference,
            "evidence": finding.evidence or {},
            "ts": format_ts(ts),
            "message": finding.message if status == "firing" else f"resolved: {finding.message}",
        }
