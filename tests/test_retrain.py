"""The retraining policy on alert sequences made by the real alert policy (event time only)."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from tripwire import retrain
from tripwire.alerts import AlertPolicy, Finding, alert_id
from tripwire.config import ConfigError, Threshold, parse_config
from tripwire.events import format_ts, parse_ts
from tripwire.retrain import RetrainPolicy, parse_retrain

T0 = parse_ts("2026-06-01T00:00:00Z")
HOUR = 3600.0
DAY = 86_400.0


class Alerts:
    """Alerts of one model from :class:`AlertPolicy`: ``bad`` / ``good`` windows per signal at event times."""

    def __init__(self, model: str = "fuel", version: str = "1") -> None:
        self.model = model
        self.version = version
        self.policy = AlertPolicy(min_samples=10, resolve_windows=1)

    def window(self, signal: str, value: float, ts: float, kind: str = "data_drift",
               detector: str = "psi") -> dict[str, Any] | None:
        finding = Finding(model=self.model, kind=kind, signal=signal, detector=detector, value=value,
                          threshold=Threshold(0.1, 0.25), window_start=ts - HOUR, window_end=ts, n=100,
                          message=f"{signal} {detector} {value}")
        return self.policy.evaluate(finding, model_version=self.version, reference=f"models:/{self.model}/{self.version}",
                                    ts=ts)


def feed(policy: RetrainPolicy, alerts: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    return [request for alert in alerts if alert is not None for request in policy.observe(alert)]


def policy(**settings: Any) -> RetrainPolicy:
    return RetrainPolicy(parse_retrain(settings, ["fuel", "credit"]))


def test_docstring_example() -> None:
    assert doctest.testmod(retrain).failed == 0


def test_three_critical_drift_features_make_one_request_with_evidence_and_training_range() -> None:
    stream = Alerts()
    rule = policy(training_window_seconds=10 * DAY)
    before = feed(rule, [stream.window("feature:weight", 0.5, T0), stream.window("feature:horsepower", 0.15, T0 + 1),
                         stream.window("feature:displacement", 0.6, T0 + 2)])
    assert before == []  # horsepower is only a warning: two critical features so far
    third = stream.window("feature:origin", 0.4, T0 + HOUR)
    (request,) = feed(rule, [third])
    assert request["type"] == "retrain_requested" and request["reason"] == "data_drift"
    assert request["model"] == "fuel" and request["model_version"] == "1" and request["reference"] == "models:/fuel/1"
    assert [e["signal"] for e in request["evidence"]] == ["feature:weight", "feature:displacement", "feature:origin"]
    assert [e["value"] for e in request["evidence"]] == [0.5, 0.6, 0.4]
    assert request["evidence"][2]["alert_id"] == third["alert_id"]
    assert request["ts"] == format_ts(T0 + HOUR)
    assert request["train"] == {"start": format_ts(T0 + HOUR - 10 * DAY), "end": format_ts(T0 + HOUR)}
    incidents = sorted(e["incident_id"] for e in request["evidence"])
    assert request["request_id"] == alert_id("retrain_requested", "fuel", "1", "data_drift", *incidents)

    # The same incident goes on: more features, an escalation, one resolve -> no second request.
    more = [stream.window("feature:acceleration", 0.9, T0 + 2 * HOUR), stream.window("feature:horsepower", 0.5, T0 + 3 * HOUR),
            stream.window("feature:weight", 0.0, T0 + 4 * HOUR)]
    assert all(more) and feed(rule, more) == []


def test_the_same_alerts_give_the_same_request_ids() -> None:
    def run() -> list[str]:
        stream, rule = Alerts(), policy(on_drift_features=2, min_interval_seconds=0)
        alerts = [stream.window(f"feature:{name}", value, T0 + i * HOUR)
                  for i, (name, value) in enumerate([("a", 0.5), ("b", 0.5), ("a", 0.0), ("b", 0.0), ("c", 0.3),
                                                     ("d", 0.3)])]
        return [r["request_id"] for r in feed(rule, alerts)]

    first = run()
    assert len(first) == 2 and first[0] != first[1]  # two incidents, two requests
    assert run() == first


def test_min_interval_holds_back_a_new_incident_in_event_time() -> None:
    stream, rule = Alerts(), policy(on_drift_features=1, min_interval_seconds=DAY)
    assert len(feed(rule, [stream.window("feature:a", 0.5, T0)])) == 1
    assert feed(rule, [stream.window("feature:a", 0.0, T0 + HOUR)]) == []  # resolved: the incident is over
    assert feed(rule, [stream.window("feature:b", 0.5, T0 + 2 * HOUR)]) == []  # a new one, too soon
    assert rule.suppressed == 1
    # Still open a day later (event time): the next alert of the model re-evaluates and it goes out.
    (request,) = feed(rule, [stream.window("feature:c", 0.5, T0 + DAY + HOUR)])
    assert [e["signal"] for e in request["evidence"]] == ["feature:b", "feature:c"]


def test_a_new_model_version_ends_the_incident() -> None:
    stream, rule = Alerts(), policy(on_drift_features=1, min_interval_seconds=0)
    assert len(feed(rule, [stream.window("feature:a", 0.5, T0)])) == 1
    assert feed(rule, [stream.window("feature:b", 0.5, T0 + HOUR)]) == []
    changed = {"type": "reference_changed", "schema": 1, "model": "fuel", "model_version": "2",
               "reference": "models:/fuel/2", "closed_alerts": [], "ts": format_ts(T0 + 2 * HOUR)}
    assert rule.observe(changed) == []
    fresh = Alerts(version="2")
    (request,) = feed(rule, [fresh.window("feature:a", 0.5, T0 + 3 * HOUR)])
    assert request["model_version"] == "2"


def test_performance_alert_must_stay_open_for_n_performance_windows() -> None:
    stream, rule = Alerts(), policy(on_performance_windows=3)
    fired = stream.window("performance:mae", 0.4, T0, kind="performance", detector="mae")
    assert feed(rule, [fired]) == []

    def window(end: float, family: str = "performance") -> dict[str, Any]:
        return {"model": "fuel", "model_version": "1", "family": family, "index": 0, "start": end - HOUR, "end": end,
                "n": 100, "stats": {}}

    assert rule.observe_window(window(T0)) == []  # the firing window itself does not count twice
    assert rule.observe_window(window(T0 + HOUR, family="data")) == []
    assert rule.observe_window(window(T0 + HOUR)) == []  # 2 of 3
    (request,) = rule.observe_window(window(T0 + 2 * HOUR))
    assert request["reason"] == "performance" and request["ts"] == format_ts(T0 + 2 * HOUR)
    assert [e["alert_id"] for e in request["evidence"]] == [fired["alert_id"]]
    assert rule.observe_window(window(T0 + 3 * HOUR)) == []

    immediate = policy(on_performance_windows=1)
    assert len(feed(immediate, [Alerts().window("performance:mae", 0.4, T0, kind="performance", detector="mae")])) == 1


def test_estimated_performance_and_per_model_settings() -> None:
    def estimated(model: str) -> dict[str, Any] | None:
        return Alerts(model).window("estimated:accuracy", 0.3, T0, kind="estimated_performance", detector="cbpe")

    rule = RetrainPolicy(parse_retrain({"models": {"credit": {"on_estimated": False}}}, ["fuel", "credit"]))
    assert [r["reason"] for r in feed(rule, [estimated("fuel"), estimated("credit")])] == ["estimated_performance"]
    off = RetrainPolicy(parse_retrain({"models": {"fuel": {"enabled": False}}}, ["fuel", "credit"]))
    assert feed(off, [estimated("fuel")]) == []
    warnings = policy(severity="warning", on_drift_features=1)
    assert len(feed(warnings, [Alerts().window("feature:a", 0.15, T0)])) == 1


@pytest.mark.parametrize("table, message", [
    ({"on_drift_features": -1}, "retrain.on_drift_features must be an integer >= 0"),
    ({"severity": "high"}, "retrain.severity must be one of"),
    ({"every": 3}, "retrain.every: unknown key"),
    ({"models": {"nope": {}}}, "retrain.models.'nope': no such model"),
    ({"models": {"m": {"min_interval_seconds": "1d"}}}, "retrain.models.'m'.min_interval_seconds must be a number"),
])
def test_retrain_config_errors_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"models": [{"name": "m", "reference": "r.json"}], "retrain": table})


def test_retrain_config_defaults() -> None:
    config = parse_config({"models": [{"name": "m", "reference": "r.json"}], "retrain": {}})
    assert config.retrain["defaults"] == {"enabled": True, "on_drift_features": 3, "on_performance_windows": 2,
                                          "on_estimated": True, "severity": "critical", "min_interval_seconds": 86_400.0,
                                          "training_window_seconds": 30 * DAY, "tag_mlflow": True}
    assert parse_config({"models": [{"name": "m", "reference": "r.json"}]}).retrain is None
