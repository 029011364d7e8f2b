"""The HPA rule, its scale-down stabilisation and the capacity view, against hand-computed examples."""

from __future__ import annotations

import pytest

from tripwire.compute.capacity import CapacityMonitor, ScaleDownStabilizer, desired_replicas
from tripwire.compute.settings import CapacitySettings, capacity_settings
from tripwire.config import ConfigError, parse_config

T0 = 1_800_000_000.0


@pytest.mark.parametrize(("current", "utilization", "target", "bounds", "expected"), [
    (3, 0.9, 0.6, {}, 5),                    # ratio 1.5: ceil(4.5)
    (4, 0.66, 0.6, {}, 4),                   # ratio 1.1: on the tolerance, no change
    (4, 0.67, 0.6, {}, 5),                   # ratio 1.117: ceil(4.47)
    (4, 0.54, 0.6, {}, 4),                   # ratio 0.9: on the tolerance, no change
    (4, 0.53, 0.6, {}, 4),                   # ratio 0.883: ceil(3.53) = 4, out of tolerance but no fewer
    (10, 0.2, 0.5, {}, 4),                   # ceil(4.0): exact, no spurious extra replica
    (10, 0.21, 0.5, {}, 5),                  # ceil(4.2)
    (2, 0.35, 0.7, {}, 1),                   # ceil(1.0)
    (1, 0.0, 0.7, {}, 1),                    # never below min_replicas (1)
    (2, 0.01, 0.5, {"min_replicas": 2}, 2),
    (5, 1.0, 0.5, {"max_replicas": 8}, 8),   # ceil(10) capped
    (3, 0.9, 0.6, {"tolerance": 0.6}, 3),    # a wide tolerance swallows ratio 1.5
])
def test_desired_replicas_hand_computed(current, utilization, target, bounds, expected):
    assert desired_replicas(current, utilization, target, **bounds) == expected


def test_desired_replicas_rejects_nonsense():
    with pytest.raises(ValueError, match="current replicas"):
        desired_replicas(0, 0.5, 0.5)
    with pytest.raises(ValueError, match="target"):
        desired_replicas(2, 0.5, 0.0)


def test_stabilisation_keeps_the_highest_recommendation_of_the_window():
    stabilizer = ScaleDownStabilizer(300)
    steps = [(0, 5, 5), (100, 5, 3), (200, 5, 2), (300, 5, 2), (400, 5, 2), (410, 5, 7), (420, 7, 6)]
    got = [stabilizer.recommend(t, current=c, desired=d) for t, c, d in steps]
    # t=300 forgets t=0 (5): the highest left is t=100's 3; t=400 forgets t=100: 2. Up at once: 7.
    # t=420: 6 < current 7 and the window holds 7 -> 7.
    assert got == [5, 5, 5, 3, 2, 7, 7]


def test_stabilisation_of_zero_seconds_follows_the_rule():
    stabilizer = ScaleDownStabilizer(0)
    assert [stabilizer.recommend(t, current=4, desired=d) for t, d in [(0, 6), (1, 2), (2, 3)]] == [6, 2, 3]


def replica(service, name, ts, cpu, **extra):
    return {"type": "replica", "schema": 1, "service": service, "replica": name, "ts": ts, "cpu_percent": cpu, **extra}


def test_the_view_averages_replicas_and_counts_the_live_ones():
    monitor = CapacityMonitor(CapacitySettings(target_utilization=0.6, window_seconds=30, stabilization_seconds=60))
    for t in (0, 10, 20):
        monitor.observe_sample(replica("s", "a", T0 + t, 90.0))
        monitor.observe_sample(replica("s", "b", T0 + t, 60.0))
        monitor.observe_sample(replica("s", "c", T0 + t, 30.0))
    [event] = monitor.advise(T0 + 20)
    # mean 0.6 on target with 3 replicas: hold at 3.
    assert (event["action"], event["current_replicas"], event["desired_replicas"]) == ("hold", 3, 3)
    assert event["evidence"]["replicas"] == ["a", "b", "c"] and event["utilization"] == pytest.approx(0.6)
    # c stops reporting; a and b run hotter: 2 live replicas at mean 0.9 -> ceil(2 x 1.5) = 3.
    for t in (30, 40, 50, 60):
        monitor.observe_sample(replica("s", "a", T0 + t, 100.0))
        monitor.observe_sample(replica("s", "b", T0 + t, 80.0))
    [event] = monitor.advise(T0 + 60)
    assert (event["action"], event["current_replicas"], event["desired_replicas"]) == ("scale_out", 2, 3)
    assert event["window"]["n"] == 4 * 2 - 2  # samples within (30, 60]: t = 40, 50, 60 for a and b
    assert monitor.recommended == {"s": 3}
    assert monitor.advise(T0 + 60) == []  # unchanged advice, no new event


def test_demand_wins_over_cpu_time_and_gpu_can_drive_the_advice():
    monitor = CapacityMonitor(CapacitySettings(target_utilization=0.5))
    monitor.observe_sample(replica("s", "a", T0, 30.0, cpu_demand_percent=100.0))
    [event] = monitor.advise(T0)
    assert (event["metric"], event["desired_replicas"]) == ("cpu", 2)  # ceil(1 x 1.0 / 0.5)
    gpu = CapacityMonitor(CapacitySettings(target_utilization=0.5))
    gpu.observe_sample(replica("g", "a", T0, 10.0, gpus=[{"index": 0, "utilization_percent": 95.0}]))
    [event] = gpu.advise(T0)
    assert (event["metric"], event["desired_replicas"]) == ("gpu", 2)  # ceil(1 x 0.95 / 0.5)


def test_serving_stats_of_the_model_join_the_evidence():
    monitor = CapacityMonitor()
    for p95, rate in ((40.0, 8.0), (290.0, 8.4)):
        monitor.observe_window({"model": "fuel", "family": "data", "index": 0, "start": T0, "end": T0, "n": 1000,
                                "stats": {"serving.latency_p95": p95, "serving.throughput_per_s": rate}})
    monitor.observe_window({"model": "fuel", "family": "performance", "stats": {"performance.mae": 1.0}})
    monitor.observe_sample(replica("fuel", "a", T0, 95.0))
    [event] = monitor.advise(T0)
    assert event["evidence"]["latency_p95_ms"] == 290.0 and event["evidence"]["latency_p95_trend_ms"] == 250.0
    assert event["evidence"]["request_rate_per_s"] == 8.4
    assert "8.4 requests/s, latency p95 290 ms (+250.0 ms)" in event["message"]


def test_workers_scale_on_cpu_and_lag_growth_up_to_the_partition_count():
    settings = CapacitySettings(target_utilization=0.7, window_seconds=60)
    monitor = CapacityMonitor(settings, worker_partitions=4)

    def worker(name, t, cpu, lag):
        return {"type": "utilization", "worker": name, "app_id": "tw", "ts": T0 + t, "cpu_percent": cpu,
                "consumer_lag": lag, "memory_percent": 30.0}

    for t in (0, 5, 10):  # CPU fine (0.5), lag grows by 30,000 records per worker
        monitor.observe_sample(worker("w1", t, 50.0, 1_000 + 15_000 * t))
        monitor.observe_sample(worker("w2", t, 50.0, 1_000 + 15_000 * t))
    [event] = monitor.advise(T0 + 10)
    assert event["service"] == "tripwire:tw" and event["metric"] == "consumer_lag"
    assert (event["current_replicas"], event["desired_replicas"]) == (2, 3)
    assert event["evidence"]["consumer_lag_growth"] == 2 * 150_000
    for name in ("w3", "w4"):
        monitor.observe_sample(worker(name, 12, 99.0, 0))
    for t in (15, 20):
        for name in ("w1", "w2", "w3", "w4"):
            monitor.observe_sample(worker(name, t, 99.0, 500_000 + 1_000 * t))
    [event] = monitor.advise(T0 + 20)
    # ceil(4 x ~0.8 / 0.7) = 5, but 4 partitions keep at most 4 workers busy.
    assert (event["current_replicas"], event["desired_replicas"], event["action"]) == (4, 4, "hold")


def test_not_a_sample_is_ignored_and_a_silent_service_is_forgotten():
    monitor = CapacityMonitor(CapacitySettings(window_seconds=30))
    assert not monitor.observe_sample({"type": "replica", "service": "s", "ts": T0})  # no replica, no cpu
    assert not monitor.observe_sample({"type": "other", "ts": T0, "cpu_percent": 1.0})
    assert not monitor.observe_sample(replica("s", "a", float("nan"), 10.0))
    assert monitor.observe_sample(replica("s", "a", T0, 10.0))
    assert monitor.advise(T0) and monitor.recommended == {"s": 1}
    assert monitor.advise(T0 + 31) == [] and monitor.recommended == {}


def test_same_samples_same_events():
    def run():
        monitor = CapacityMonitor(CapacitySettings(stabilization_seconds=20, window_seconds=10))
        events = []
        for t in range(0, 60, 2):
            cpu = 95.0 if t < 20 else 5.0
            for name in ("a", "b"):
                monitor.observe_sample(replica("s", name, T0 + t, cpu))
            events += monitor.advise(T0 + t)
        return events

    first = run()
    assert [(e["action"], e["desired_replicas"]) for e in first] == [("scale_out", 3), ("hold", 2), ("scale_down", 1)]
    assert first == run()


def test_capacity_table_defaults_and_errors():
    models = [{"name": "m", "reference": "r.json"}]
    assert parse_config({"models": models}).capacity == {
        "target_utilization": 0.7, "tolerance": 0.1, "stabilization_seconds": 300.0, "window_seconds": 60.0,
        "min_replicas": 1, "max_replicas": 10, "low_utilization": 0.2, "memory_risk": 0.9}
    assert capacity_settings({"stabilization_seconds": 0}).stabilization_seconds == 0.0
    for table, message in (({"target_utilization": 0}, "capacity.target_utilization must be a number in (0, 1]"),
                           ({"tolerance": 1}, "capacity.tolerance must be a number in [0, 1)"),
                           ({"min_replicas": 3, "max_replicas": 2}, "capacity.min_replicas (3) is above"),
                           ({"target": 0.5}, "capacity.target: unknown key")):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                           .replace("]", r"\]")):
            parse_config({"models": models, "capacity": table}, where="m.toml")


def test_the_demo_crunch_scales_out_and_the_idle_period_scales_down_after_the_window():
    from tripwire.compute import demo as capacity_demo
    from tripwire.demo import START
    from tripwire.events import parse_ts

    events = capacity_demo.CapacityDemo(seed=7).advise()
    timed = [((parse_ts(e["ts"]) - START) / 60, e["action"], e["desired_replicas"]) for e in events]
    assert all(action == "hold" for minute, action, _d in timed if minute < 24)  # no advice before the crunch
    first_out = next(minute for minute, action, _d in timed if action == "scale_out")
    assert 24 <= first_out < 30
    # 3 replicas at 95 %: ceil(3 x 0.95 / 0.7) = 5 at the height of the crunch.
    assert max(d for minute, action, d in timed if action == "scale_out" and minute < 31) == 5
    first_down = next(minute for minute, action, _d in timed if action == "scale_down")
    assert first_down >= 34 + 300 / 60  # the 300 s stabilisation: not before the crunch's 3s left it
    # 3 replicas at 12 %: ceil(3 x 0.12 / 0.7) = 1.
    assert min(d for _minute, action, d in timed if action == "scale_down") == 1


def test_the_docstring_examples_hold():
    import doctest

    from tripwire.compute import capacity, settings

    assert doctest.testmod(capacity).failed == 0 and doctest.testmod(settings).failed == 0


def test_the_gauge_follows_the_view_and_drops_a_forgotten_service():
    from tripwire.streams.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    metrics.observe_capacity({"a": 2, "b": 3})
    metrics.observe_capacity({"b": 4})
    page = metrics.render().decode()
    assert 'tripwire_recommended_replicas{service="b"} 4.0' in page
    assert 'service="a"' not in page


def test_a_host_whose_clock_lags_neither_drops_nor_rewinds_another_service():
    monitor = CapacityMonitor(CapacitySettings(window_seconds=30))
    monitor.observe_sample(replica("ahead", "a", T0 + 100, 90.0))
    assert [e["service"] for e in monitor.advise(T0 + 100)] == ["ahead"]
    monitor.observe_sample(replica("behind", "b", T0 + 40, 50.0))  # 60 s behind: not "silent" for "ahead"
    assert [e["service"] for e in monitor.advise(T0 + 40)] == ["behind"]
    assert monitor.recommended == {"ahead": 2, "behind": 1}  # ceil(0.9 / 0.7) = 2; 0.5 / 0.7 -> 1
