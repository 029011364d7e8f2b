"""A detector family registered here, as a test fixture, reaches the alerts, the report, /metrics and the status page.

Nothing in engine.py, config.py, report/ or the exporter names these families: the registry
(tripwire.detectors.registry) is the only place they are made known. Their statistics are compared
with numpy on the generated values.
"""

from __future__ import annotations

import html
from typing import Any, Mapping

import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tripwire import demo
from tripwire.alerts import Finding
from tripwire.config import ConfigError, ModelConfig, parse_config
from tripwire.detectors.registry import DataWindow, Family, PerformanceWindow, Verdict, register, unregister
from tripwire.engine import Engine
from tripwire.events import format_ts
from tripwire.replay import run_records
from tripwire.report import WindowLog, build_series, render_report
from tripwire.report.text import anchor
from tripwire.streams.metrics import WorkerMetrics
from tripwire.streams.status import StatusBoard
from tripwire.thresholds import Threshold

MODEL = "fuel-efficiency"
WINDOW = 200


class MeanShift:
    """How far a numeric feature's window mean moved from the reference's, in reference standard deviations."""

    def __init__(self, config: ModelConfig, reference: Mapping[str, Any]) -> None:
        self.config = config
        self.profiles = {name: p for name, p in reference["features"].items() if p["kind"] == "numeric" and p["std"]}

    def judge(self, window: DataWindow) -> Verdict:
        findings, stats = [], {}
        for name, profile in self.profiles.items():
            values = [row[name] for row in window.rows if type(row.get(name)) in (int, float)]
            if not values:
                continue
            shift = abs(sum(values) / len(values) - profile["mean"]) / profile["std"]
            signal = f"shift:{name}"
            stats[f"{signal}.mean_shift_sd"] = shift
            findings.append(Finding(
                model=window.model, kind="data_drift", signal=signal, detector="mean_shift_sd", value=shift,
                threshold=self.config.threshold("mean_shift_sd", signal), window_start=window.start,
                window_end=window.end, n=len(values), message=f"mean of {name} moved {shift:.2f} sd"))
        return Verdict(findings, stats)


class ResidualBias:
    """The labelled outcomes' mean signed error (prediction - label), in units of the baseline MAE."""

    def __init__(self, config: ModelConfig, reference: Mapping[str, Any]) -> None:
        self.config = config
        self.scale = reference["baseline"]["mae"]

    def judge(self, window: PerformanceWindow) -> Verdict:
        bias = sum(o.prediction - o.label for o in window.outcomes) / len(window.outcomes) / self.scale
        finding = Finding(
            model=window.model, kind="performance", signal="bias:residual", detector="residual_bias", value=abs(bias),
            threshold=self.config.threshold("residual_bias", "bias:residual"), window_start=window.start,
            window_end=window.end, n=window.n, message=f"mean error is {bias:+.2f} baseline MAE")
        return Verdict([finding], {"bias:residual.residual_bias": abs(bias)})


@pytest.fixture
def toy_families():
    families = [Family("shift", "data", "shift", {"mean_shift_sd": Threshold(1.0, 2.0)}, MeanShift, "mean shift"),
                Family("bias", "performance", "bias", {"residual_bias": Threshold(0.5, 1.0)}, ResidualBias)]
    for family in families:
        register(family)
    yield families
    for family in families:
        unregister(family.name)


def fuel_stream(seed: int = 3) -> tuple[list[bytes], dict[str, np.ndarray]]:
    """600 predictions of the demo's fuel model, the last 200 on drifted cars, each labelled 30 s later.

    The labels are the true mpg plus 3 from the 400th prediction on: the model is biased from there.
    """
    rng = np.random.default_rng(seed)
    normal, drifted = demo.cars(rng, 400), demo.cars(rng, 200, drifted=True)
    cars = {k: np.concatenate([normal[k], drifted[k]]) for k in normal}
    predictions = np.round(demo.mpg_model(cars), 2)
    labels = np.round(predictions + rng.normal(0, 1.0, 600) + np.where(np.arange(600) >= 400, -3.0, 0.0), 2)
    records = []
    for i in range(600):
        ts = demo.START + i
        features = {k: demo._plain(v[i]) for k, v in cars.items()}
        records.append((ts, orjson.dumps({
            "type": "prediction", "schema": 1, "request_id": f"r{i}", "model": MODEL, "ts": format_ts(ts),
            "features": features, "prediction": float(predictions[i]), "latency_ms": 10.0})))
        records.append((ts + 30, orjson.dumps({"type": "label", "schema": 1, "request_id": f"r{i}", "model": MODEL,
                                               "ts": format_ts(ts + 30), "label": float(labels[i])})))
    records.sort(key=lambda r: r[0])
    return [record for _ts, record in records], {**cars, "prediction": predictions, "label": labels}


def config_data(**model: Any) -> dict[str, Any]:
    return {"models": [{"name": MODEL, "reference": f"demo:{MODEL}", "window_events": WINDOW,
                        "performance_window": WINDOW, "min_samples": 50, "resolve_windows": 1, **model}]}


def replay(config_dict: dict[str, Any], references: dict[str, Any], records: list[bytes]):
    config = parse_config(config_dict)
    log, metrics, board = WindowLog(config), WorkerMetrics(), StatusBoard("w1")

    def on_window(window: dict[str, Any]) -> None:
        log(window)
        metrics.observe_window(window)
        board.observe_window(window)

    engine = Engine(config, references={MODEL: references[MODEL]}, on_window=on_window)
    alerts: list[dict[str, Any]] = []
    run_records(engine, records, lambda alert, _i: alerts.append(alert), lambda *_: None)
    for alert in alerts:
        board.observe_alert(alert)
    return config, engine, log, (metrics, board), alerts


def test_a_registered_family_reaches_alerts_report_and_metrics(toy_families, demo_references):
    records, values = fuel_stream()
    # The test's own thresholds for the toy statistics: the configuration knows them from the registry.
    config, engine, log, (metrics, board), alerts = replay(
        config_data(detectors={"shift": True}, thresholds={"mean_shift_sd": {"warning": 0.5, "critical": 1.0}}),
        demo_references, records)

    reference = demo_references[MODEL]["features"]["weight"]
    expected = [abs(values["weight"][i:i + WINDOW].mean() - reference["mean"]) / reference["std"]
                for i in range(0, 600, WINDOW)]
    windows = [w for w in log.windows if w["family"] == "data"]
    assert [w["stats"]["shift:weight.mean_shift_sd"] for w in windows] == pytest.approx(expected, rel=1e-9)
    assert expected[0] < 0.5 and expected[1] < 0.5 and expected[2] > 1.0  # only the drifted window alerts

    toy = [a for a in alerts if a["signal"] == "shift:weight"]
    assert [(a["status"], a["severity"], a["detector"], a["kind"]) for a in toy] == [
        ("firing", "critical", "mean_shift_sd", "data_drift")]
    assert toy[0]["value"] == pytest.approx(expected[2], rel=1e-9) and toy[0]["threshold"] == 1.0
    assert toy[0]["window"]["start"] == format_ts(demo.START + 400)

    series = {(s.signal, s.statistic): s for s in build_series(MODEL, log.windows, alerts, config.models[0],
                                                               demo_references[MODEL])}
    shift = series[("shift:weight", "mean_shift_sd")]
    assert (shift.group, shift.detector, shift.threshold) == ("shift", "mean_shift_sd", Threshold(0.5, 1.0))
    assert [a["alert_id"] for a in shift.alerts] == [toy[0]["alert_id"]]
    page = html.unescape(render_report(log.windows, alerts, config, demo_references))
    assert "mean shift" in page and "shift:weight" in page  # the family's group title, its signal's row
    assert f'id="{anchor("a", toy[0]["alert_id"])}"' in page  # and the alert in the alert table

    gauges = {(s.labels["signal"], s.labels["statistic"]): s.value
              for family in text_string_to_metric_families(metrics.render().decode())
              if family.name == "tripwire_window_statistic" for s in family.samples}
    assert gauges[("shift:weight", "mean_shift_sd")] == pytest.approx(expected[2], rel=1e-9)
    assert engine.alerts_by_kind[("data_drift", "critical")] >= 1
    # The status page charts it, and shows the signal firing.
    status = board.models[MODEL]
    assert list(status["history"]["shift:weight.mean_shift_sd"]) == pytest.approx(expected, rel=1e-9)
    assert status["signals"]["shift:weight"]["status"] == "critical"


def test_a_performance_window_family_judges_the_outcomes_and_survives_a_checkpoint(toy_families, demo_references):
    records, values = fuel_stream()
    _config, _engine, _log, _metrics, alerts = replay(config_data(), demo_references, records)
    scale = demo_references[MODEL]["baseline"]["mae"]
    bias = np.abs([(values["prediction"][i:i + WINDOW] - values["label"][i:i + WINDOW]).mean() / scale
                   for i in range(0, 600, WINDOW)])
    assert bias[0] < 0.5 and bias[1] < 0.5 and bias[2] > 1.0
    toy = [a for a in alerts if a["signal"] == "bias:residual"]
    assert [(a["status"], a["severity"]) for a in toy] == [("firing", "critical")]
    assert toy[0]["value"] == pytest.approx(bias[2], rel=1e-9)

    # Stopped half-way through the biased window and restored from its checkpoint: the same alerts.
    config = parse_config(config_data())
    first = Engine(config, references={MODEL: demo_references[MODEL]})
    cut = records.index(next(r for r in records if b'"request_id":"r500"' in r and b'"label"' in r))
    resumed_alerts: list[dict[str, Any]] = []
    run_records(first, records[:cut], lambda alert, _i: resumed_alerts.append(alert), lambda *_: None)
    second = Engine(config, references={MODEL: demo_references[MODEL]})
    second.restore(orjson.loads(orjson.dumps(first.state())))
    run_records(second, records[cut:], lambda alert, _i: resumed_alerts.append(alert), lambda *_: None)
    assert resumed_alerts == alerts


def test_the_configuration_knows_a_family_only_once_registered(demo_references):
    with pytest.raises(ConfigError, match=r"thresholds\.mean_shift_sd: unknown detector 'mean_shift_sd'"):
        parse_config(config_data(thresholds={"mean_shift_sd": {"warning": 0.5}}))
    with pytest.raises(ConfigError, match=r"detectors has unknown detector family 'shift'"):
        parse_config(config_data(detectors={"shift": False}))
    with pytest.raises(ConfigError, match=r"unknown signal 'shift:weight'"):
        parse_config(config_data(signals={"shift:weight": {"enabled": False}}))


def test_a_registered_family_is_switched_off_per_model_and_per_signal(toy_families, demo_references):
    records, _values = fuel_stream()
    _c, _e, log, _m, alerts = replay(config_data(detectors={"shift": False}), demo_references, records)
    assert not [a for a in alerts if a["signal"].startswith("shift:")]
    assert not [k for w in log.windows for k in w["stats"] if k.startswith("shift:")]
    _c, _e, log, _m, alerts = replay(config_data(signals={"shift:weight": {"enabled": False}}), demo_references,
                                     records)
    assert not [a for a in alerts if a["signal"] == "shift:weight"]
    assert "shift:weight.mean_shift_sd" not in log.windows[0]["stats"]
    assert "shift:horsepower.mean_shift_sd" in log.windows[0]["stats"]  # the other signals stay


def test_a_name_taken_is_refused(toy_families):
    with pytest.raises(ValueError, match="already known"):
        register(Family("drift", "data", "drifty", {"x_stat": Threshold(1, 2)}, MeanShift))
    with pytest.raises(ValueError, match="signal prefix 'feature' is taken"):
        register(Family("other", "data", "feature", {"x_stat": Threshold(1, 2)}, MeanShift))
    with pytest.raises(ValueError, match="statistics psi are taken"):
        register(Family("other", "data", "other", {"psi": Threshold(1, 2)}, MeanShift))
