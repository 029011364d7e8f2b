"""Worker utilization alerts: sustained CPU / memory / loop lag, growing consumer lag (no Kafka)."""

from __future__ import annotations

from tripwire.config import Threshold, parse_config
from tripwire.streams.utilization import Sampler, UtilizationMonitor

T0 = 1_800_000_000.0
CALM = {"cpu_percent": 20.0, "memory_percent": 40.0, "event_loop_lag_ms": 2.0, "consumer_lag": 0}


def feed(monitor: UtilizationMonitor, samples: list[dict], every: float = 5.0, start: float = T0) -> list[dict]:
    alerts = []
    for i, sample in enumerate(samples):
        alerts += monitor.update({**sample, "ts": start + i * every})
    return alerts


def test_sustained_cpu_fires_once_and_resolves_once():
    monitor = UtilizationMonitor("w1", window_seconds=60)
    hot = {**CALM, "cpu_percent": 97.0}
    alerts = feed(monitor, [hot] * 36 + [CALM] * 36)  # 3 hot minutes, then 3 calm ones
    assert [(a["status"], a["detector"], a["severity"]) for a in alerts] == [
        ("firing", "cpu_percent", "critical"), ("resolved", "cpu_percent", "critical")]
    firing = alerts[0]
    assert (firing["kind"], firing["model"], firing["signal"]) == ("infrastructure", "*", "worker:w1")
    assert firing["value"] == 97.0 and firing["threshold"] == 95.0 and firing["window"]["n"] == 12
    assert "w1" in firing["message"] and alerts[1]["incident_id"] == firing["alert_id"]


def test_a_spike_is_not_sustained():
    monitor = UtilizationMonitor("w1", window_seconds=60)
    spiky = [{**CALM, "cpu_percent": 99.0 if i % 4 == 0 else 30.0, "event_loop_lag_ms": 3000.0 if i == 5 else 1.0}
             for i in range(60)]
    assert feed(monitor, spiky) == []


def test_memory_and_event_loop_lag_use_their_thresholds():
    monitor = UtilizationMonitor("w2", window_seconds=30)
    bad = {**CALM, "memory_percent": 88.0, "event_loop_lag_ms": 400.0}
    alerts = feed(monitor, [bad] * 8)
    assert {(a["detector"], a["severity"]) for a in alerts} == {("memory_percent", "warning"),
                                                                 ("event_loop_lag_ms", "warning")}


def test_growing_consumer_lag_fires_steady_lag_does_not():
    growing = UtilizationMonitor("w3", window_seconds=60)
    alerts = feed(growing, [{**CALM, "consumer_lag": 2_000 * i} for i in range(30)])
    assert [(a["detector"], a["severity"]) for a in alerts] == [("consumer_lag_growth", "warning")]
    assert alerts[0]["evidence"]["last"] > alerts[0]["evidence"]["first"]
    steady = UtilizationMonitor("w3", window_seconds=60)
    assert feed(steady, [{**CALM, "consumer_lag": 50_000 + (i % 3) * 100} for i in range(30)]) == []


def test_thresholds_from_the_worker_table_and_deterministic_ids():
    config = parse_config({"models": [{"name": "m", "reference": "r.json"}],
                           "worker": {"thresholds": {"cpu_percent": {"warning": 50, "critical": False}}}})
    assert config.worker.thresholds["cpu_percent"] == Threshold(50, None)
    samples = [{**CALM, "cpu_percent": 60.0}] * 14
    first = feed(UtilizationMonitor("w4", window_seconds=60, thresholds=config.worker.thresholds), samples)
    again = feed(UtilizationMonitor("w4", window_seconds=60, thresholds=config.worker.thresholds), samples)
    assert [a["severity"] for a in first] == ["warning"] and first == again


def test_sampler_reads_this_process():
    sampler = Sampler("w5")
    sample = sampler.sample(event_loop_lag_ms=1.5, consumer_lag=10, partitions=[0, 2])
    assert sample["worker"] == "w5" and sample["partitions"] == [0, 2] and sample["consumer_lag"] == 10
    assert 0 <= sample["memory_percent"] <= 100 and sample["rss_bytes"] > 10_000_000
    assert sample["cpu_percent"] >= 0 and sample["host_cpu_percent"] >= 0 and sample["cpu_count"] >= 1


def test_the_module_docstring_example_holds():
    import doctest

    from tripwire.streams import utilization

    assert doctest.testmod(utilization).failed == 0
