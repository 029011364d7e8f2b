"""Prometheus exposition of a worker, parsed by prometheus_client's own parser."""

from prometheus_client.parser import text_string_to_metric_families

from tripwire import demo
from tripwire.config import parse_config
from tripwire.engine import Engine
from tripwire.replay import run_records
from tripwire.streams.metrics import WorkerMetrics


def test_metrics_from_the_demo_parse_with_the_expected_series(demo_stream, demo_references):
    metrics = WorkerMetrics()
    engine = Engine(parse_config(demo.demo_config()), references=demo_references, on_window=metrics.observe_window)
    alerts = []
    summary = run_records(engine, demo_stream[0], lambda alert, _i: alerts.append(alert), lambda *_: None)
    for alert in alerts:
        metrics.observe_alert(alert)
    metrics.observe_records("tripwire.predictions", summary.records, summary.rejected)
    metrics.observe_event_time(1_795_827_000.0, now=1_795_827_002.5)
    metrics.observe_open_alerts(engine.open_alerts())
    metrics.sample_process()

    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("tripwire_events_total", (("topic", "tripwire.predictions"),))] == summary.records
    assert samples[("tripwire_records_rejected_total", ())] == 300
    firing_drift = sum(1 for a in alerts if a["kind"] == "data_drift" and a["status"] == "firing" and a["severity"] == "warning")
    assert samples[("tripwire_alerts_total", (("kind", "data_drift"), ("severity", "warning")))] == firing_drift
    assert samples[("tripwire_processing_lag_seconds", ())] == 2.5
    weight_psi = samples[("tripwire_window_statistic", (("model", "fuel-efficiency"), ("signal", "feature:weight"), ("statistic", "psi")))]
    assert weight_psi > 0.1  # the last window is after the covariate drift
    assert ("tripwire_window_statistic", (("model", "credit"), ("signal", "performance:accuracy"), ("statistic", "accuracy"))) in samples
    assert samples[("tripwire_process_resident_memory_bytes", ())] > 10_000_000
    assert sum(v for (name, _l), v in samples.items() if name == "tripwire_open_alerts") == len(engine.open_alerts())
    for family in families.values():
        assert family.name.startswith("tripwire_")
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)


def test_series_are_bounded():
    metrics = WorkerMetrics(max_series=3)
    metrics.observe_window({"model": "m", "stats": {f"feature:f{i}.psi": 0.1 for i in range(10)}})
    text = metrics.render().decode()
    assert text.count('tripwire_window_statistic{') == 3
    assert "tripwire_window_series_dropped_total 7.0" in text
