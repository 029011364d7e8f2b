"""When a model needs retraining: a policy over the alerts it observes, and the request it emits.

:class:`RetrainPolicy` is a pure function of the sequence of alerts (and ``reference_changed``
events) it is given, with time taken from their event times ``ts``, never the wall clock: the same
alerts in the same order give the same requests, ids included, on every run and after a restart.
Per model it holds when, with the incidents open at that moment,

* at least ``on_drift_features`` features have a ``data_drift`` alert of at least ``severity`` open; or
* a ``performance`` alert of at least ``severity`` has been open for ``on_performance_windows``
  performance windows (the firing window counts as the first; later ones come from
  :meth:`RetrainPolicy.observe_window`, the engine's ``on_window`` sink); or
* ``on_estimated`` and an ``estimated_performance`` alert of at least ``severity`` is open.

Then it emits one ``retrain_requested`` event for the incident — unless one was already requested
for an incident still open (its evidence has not all resolved and no new model version took over),
or the last request of that model is less than ``min_interval_seconds`` of event time ago::

    {"type": "retrain_requested", "schema": 1, "request_id": "...", "model": "fuel-efficiency",
     "model_version": "1", "reference": "models:/fuel-efficiency/1", "reason": "data_drift",
     "evidence": [{"alert_id": "...", "kind": "data_drift", "signal": "feature:weight", "value": 0.41, ...}],
     "train": {"start": "1978-02-01T00:00:00.000Z", "end": "1978-07-02T00:00:00.000Z"}, "ts": "1978-07-02T00:00:00.000Z"}

``train`` is the event-time range of recent labelled data to train on: the ``training_window_seconds``
before the request. ``request_id`` is a hash of the model, its version and the evidence's incident
ids, so a restarted or replaying worker emits the same id and consumers deduplicate.

>>> policy = RetrainPolicy(parse_retrain({"on_drift_features": 2}, ["m"]))
>>> def drift(feature, ts):
...     return {"type": "alert", "alert_id": feature, "incident_id": feature, "status": "firing", "kind": "data_drift",
...             "severity": "critical", "model": "m", "model_version": "1", "signal": f"feature:{feature}",
...             "detector": "psi", "value": 0.5, "threshold": 0.25, "reference": "ref.json", "ts": ts}
>>> policy.observe(drift("a", "2026-01-01T00:00:00.000Z"))
[]
>>> [r["evidence"][1]["signal"] for r in policy.observe(drift("b", "2026-01-01T01:00:00.000Z"))]
['feature:b']
>>> policy.observe(drift("c", "2026-01-01T02:00:00.000Z"))  # the same incident: no second request
[]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from tripwire.alerts import SEVERITY_RANK, alert_id
from tripwire.config_values import (
    ConfigError,
    _bool,
    _non_negative_int,
    _non_negative_number,
    _one_of,
    _parse,
    _positive_number,
)
from tripwire.events import format_ts, parse_ts

# key -> (parser, default, description). Valid in [retrain] and in [retrain.models."<name>"].
RETRAIN_KEYS: dict[str, tuple[Callable[[Any], Any], Any, str]] = {
    "enabled": (_bool, True, "request retraining for this model"),
    "on_drift_features": (_non_negative_int, 3, "data_drift alerts on this many features open at once; 0 = off"),
    "on_performance_windows": (_non_negative_int, 2, "a performance alert open for this many performance windows; 0 = off"),
    "on_estimated": (_bool, True, "an estimated_performance alert open (no labels needed)"),
    "severity": (_one_of("warning", "critical"), "critical", "the least severe alert that counts as evidence"),
    "min_interval_seconds": (_non_negative_number, 86_400.0, "event time between two requests of one model"),
    "training_window_seconds": (_positive_number, 30 * 86_400.0, "event-time span of recent labelled data to train on"),
    "tag_mlflow": (_bool, True, "tag the registered model version (models:/ references) tripwire.retrain_requested"),
}
TAG = "tripwire.retrain_requested"


def parse_retrain(raw: Any, models: list[str], where: str = "config") -> dict[str, Any]:
    """``{"defaults": {...}, "models": {name: {...}}}``, every key filled in; errors name the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'retrain' must be a table")
    defaults = {key: default for key, (_parser, default, _doc) in RETRAIN_KEYS.items()}
    overrides = raw.get("models", {})
    for key, value in raw.items():
        if key == "models":
            continue
        if key not in RETRAIN_KEYS:
            raise ConfigError(f"{where}: retrain.{key}: unknown key; allowed: {', '.join([*RETRAIN_KEYS, 'models'])}")
        defaults[key] = _parse(RETRAIN_KEYS[key][0], value, f"{where}: retrain.{key}")
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: retrain.models must be a table of [retrain.models.\"<model name>\"] tables")
    per_model = {}
    for name, table in overrides.items():
        label = f"{where}: retrain.models.{name!r}"
        if name not in models:
            raise ConfigError(f"{label}: no such model; configured: {', '.join(models)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{label} must be a table")
        values = dict(defaults)
        for key, value in table.items():
            if key not in RETRAIN_KEYS:
                raise ConfigError(f"{label}.{key}: unknown key; allowed: {', '.join(RETRAIN_KEYS)}")
            values[key] = _parse(RETRAIN_KEYS[key][0], value, f"{label}.{key}")
        per_model[name] = values
    return {"defaults": defaults, "models": per_model}


@dataclass
class _ModelState:
    open: dict[str, dict[str, Any]] = field(default_factory=dict)  # incident_id -> latest firing alert
    performance_windows: dict[str, int] = field(default_factory=dict)  # incident_id -> windows seen open
    requested: set[str] = field(default_factory=set)  # incident ids of the request still in force
    last_request: float | None = None  # event time


class RetrainPolicy:
    """Per-model retraining decisions from alerts; see the module docstring for the rule."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self._models: dict[str, _ModelState] = {}
        self.suppressed = 0  # requests held back by min_interval_seconds

    def model_settings(self, model: str) -> dict[str, Any]:
        return self.settings["models"].get(model, self.settings["defaults"])

    def observe(self, alert: dict[str, Any]) -> list[dict[str, Any]]:
        """Take one alert or ``reference_changed`` event; return the requests it triggers (0 or 1)."""
        model = alert.get("model")
        if not isinstance(model, str) or model == "*":
            return []
        settings = self.model_settings(model)
        if not settings["enabled"]:
            return []
        state = self._models.setdefault(model, _ModelState())
        if alert.get("type") == "reference_changed":
            # A new version is monitored from scratch: its old incidents, and the request for them, are over.
            state.open.clear()
            state.performance_windows.clear()
            state.requested.clear()
            return []
        if alert.get("type") != "alert":
            return []
        incident = alert["incident_id"]
        if alert["status"] == "firing":
            state.open[incident] = alert
            state.performance_windows.setdefault(incident, 1)
        else:
            state.open.pop(incident, None)
            state.performance_windows.pop(incident, None)
        if state.requested and not state.requested & state.open.keys():
            state.requested.clear()  # every incident the request was about has resolved
        return self._decide(model, state, settings, alert)

    def observe_window(self, window: dict[str, Any]) -> list[dict[str, Any]]:
        """Count a closed performance window against the open performance alerts of its model."""
        model = window.get("model")
        state = self._models.get(model) if isinstance(model, str) else None
        if state is None or window.get("family") != "performance":
            return []
        counted = False
        for incident, alert in state.open.items():
            if alert["kind"] == "performance" and window["end"] > parse_ts(alert["window"]["end"]):
                state.performance_windows[incident] += 1
                counted = True
        if not counted:
            return []
        latest = max(state.open.values(), key=lambda a: a["ts"])
        return self._decide(window["model"], state, self.model_settings(window["model"]),
                            {**latest, "ts": format_ts(window["end"])})

    def _decide(self, model: str, state: _ModelState, settings: dict[str, Any],
                latest: dict[str, Any]) -> list[dict[str, Any]]:
        if state.requested:
            return []  # one request per incident
        reason, evidence = self._evidence(state, settings)
        if reason is None:
            return []
        now = parse_ts(latest["ts"])
        if state.last_request is not None and now - state.last_request < settings["min_interval_seconds"]:
            self.suppressed += 1
            return []
        state.requested = {alert["incident_id"] for alert in evidence}
        state.last_request = now
        return [self._request(model, reason, evidence, latest, now, settings)]

    @staticmethod
    def _evidence(state: _ModelState, settings: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
        least = SEVERITY_RANK[settings["severity"]]
        strong = sorted((a for a in state.open.values() if SEVERITY_RANK[a["severity"]] >= least),
                        key=lambda a: (a["ts"], a["incident_id"]))
        drift = [a for a in strong if a["kind"] == "data_drift"]
        if settings["on_drift_features"] and len({a["signal"] for a in drift}) >= settings["on_drift_features"]:
            return "data_drift", drift
        performance = [a for a in strong if a["kind"] == "performance"
                       and state.performance_windows[a["incident_id"]] >= settings["on_performance_windows"]]
        if settings["on_performance_windows"] and performance:
            return "performance", performance
        estimated = [a for a in strong if a["kind"] == "estimated_performance"]
        if settings["on_estimated"] and estimated:
            return "estimated_performance", estimated
        return None, []

    @staticmethod
    def _request(model: str, reason: str, evidence: list[dict[str, Any]], latest: dict[str, Any], now: float,
                 settings: dict[str, Any]) -> dict[str, Any]:
        version = latest.get("model_version")
        incidents = sorted(alert["incident_id"] for alert in evidence)
        return {
            "type": "retrain_requested",
            "schema": 1,
            "request_id": alert_id("retrain_requested", model, version, reason, *incidents),
            "model": model,
            "model_version": version,
            "reference": latest.get("reference"),
            "reason": reason,
            "evidence": [{key: alert.get(key) for key in ("alert_id", "incident_id", "kind", "signal", "detector",
                                                           "severity", "value", "threshold", "ts")}
                         for alert in evidence],
            "train": {"start": format_ts(now - settings["training_window_seconds"]), "end": format_ts(now)},
            "ts": format_ts(now),
        }
