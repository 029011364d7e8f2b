"""Training-run advice from real MLflow runs with system-metrics logging (sqlite store, no mocks).

Two real runs sample themselves every second: one spins CPU-bound busy loops, one sleeps. The
command must tell them apart. Host CPU is shared with whatever else runs on the machine, so the
runs also record their own process tree (``watch_process``) and the advice goes by its CPU demand.
"""

from __future__ import annotations

import subprocess
import sys
import time

import mlflow
import numpy as np
import orjson
import pytest
from mlflow import MlflowClient  # noqa: E402

from tripwire.cli import main  # noqa: E402
from tripwire.compute.runs import CPU_COUNT_TAG, run_alerts, training_runs, watch_process  # noqa: E402
from tripwire.compute.settings import CapacitySettings  # noqa: E402

BUSY_LOOP = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two real training runs with system metrics sampled every second; the store's URI."""
    root = tmp_path_factory.mktemp("mlflow-compute")
    uri = f"sqlite:///{root}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("training")
    mlflow.set_system_metrics_sampling_interval(1)
    mlflow.set_system_metrics_samples_before_logging(1)
    try:
        with mlflow.start_run(run_name="cpu-bound", log_system_metrics=True) as busy:
            watch_process(cpus=1)
            loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(seconds=6)]) for _ in range(2)]
            for loop in loops:
                assert loop.wait(120) == 0
        with mlflow.start_run(run_name="mostly-idle", log_system_metrics=True) as idle:
            watch_process(cpus=2)
            time.sleep(6)
    finally:
        mlflow.set_system_metrics_sampling_interval(None)
        mlflow.set_system_metrics_samples_before_logging(None)
    return uri, busy.info.run_id, idle.info.run_id


def test_the_command_tells_a_cpu_bound_run_from_an_idle_one(store, tmp_path, capsys):
    uri, busy, idle = store
    alerts_path = tmp_path / "alerts.jsonl"
    assert main(["compute", "runs", "--experiment", "training", "--tracking-uri", uri, "--tag",
                 "--alerts", str(alerts_path)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    # Two busy loops want two CPUs of the one the run had: ceil(1 x >=1.5 / 0.7) >= 3.
    assert "CPU demand p95" in lines["cpu-bound"] and "of 1 CPU: CPU-bound" in lines["cpu-bound"]
    # A sleeping run wants next to nothing of its two: ceil(2 x <0.35 / 0.7) = 1.
    assert "of 2 CPUs: 1 would do" in lines["mostly-idle"]

    client = MlflowClient(uri)
    assert client.get_run(busy).data.tags["tripwire.compute.cpu"] == "scale_up"
    assert client.get_run(idle).data.tags["tripwire.compute.cpu"] == "scale_down"
    assert client.get_run(idle).data.tags[CPU_COUNT_TAG] == "2"
    assert "1 would do" in client.get_run(idle).data.tags["tripwire.compute.advice"]

    alerts = [orjson.loads(line) for line in alerts_path.read_bytes().splitlines()]
    by_run = {a["signal"]: a for a in alerts}
    assert set(by_run) == {f"training:{busy}", f"training:{idle}"}
    assert {a["kind"] for a in alerts} == {"infrastructure"} and {a["model"] for a in alerts} == {"training"}
    assert by_run[f"training:{busy}"]["evidence"]["action"] == "scale_up"
    assert by_run[f"training:{idle}"]["evidence"]["action"] == "scale_down"
    assert by_run[f"training:{idle}"]["threshold"] == pytest.approx(35.0)  # 70 % x (2 - 1) / 2


def test_the_summary_matches_the_metric_history(store):
    uri, busy, idle = store
    settings = CapacitySettings()
    reports = {r.run_id: r for r in training_runs("training", tracking_uri=uri, settings=settings)}
    client = MlflowClient(uri)
    for run_id in (busy, idle):
        for resource, key in (("cpu_demand", "system/process_cpu_demand_percentage"),
                              ("cpu", "system/process_cpu_utilization_percentage"),
                              ("host_cpu", "system/cpu_utilization_percentage"),
                              ("memory", "system/system_memory_usage_percentage")):
            values = np.array([m.value for m in client.get_metric_history(run_id, key)])
            usage = reports[run_id].usage[resource]
            assert usage.n == len(values) >= 2
            assert usage.mean == pytest.approx(values.mean())
            assert usage.p95 == pytest.approx(np.percentile(values, 95))
            assert usage.low_share == pytest.approx(np.mean(values < 20.0))
    assert reports[busy].usage["cpu_demand"].p95 > 100.0 > 35.0 > reports[idle].usage["cpu_demand"].p95


def test_hand_logged_history_memory_at_risk_and_an_oversized_machine(store, tmp_path):
    uri, _busy, _idle = store
    client = MlflowClient(uri)
    experiment = client.create_experiment("oversized")
    run = client.create_run(experiment, run_name="big-box").info.run_id
    client.set_tag(run, CPU_COUNT_TAG, "8")
    t0 = int(time.time() * 1000)
    cpu = [10.0, 12.0, 15.0, 18.0, 16.0, 14.0, 11.0, 13.0, 17.0, 18.0]
    memory = [90.0, 92.0, 95.0, 96.0, 97.0, 97.5, 97.0, 96.5, 97.0, 97.2]
    for step, (c, m) in enumerate(zip(cpu, memory)):
        client.log_metric(run, "system/cpu_utilization_percentage", c, timestamp=t0 + 1000 * step, step=step)
        client.log_metric(run, "system/system_memory_usage_percentage", m, timestamp=t0 + 1000 * step, step=step)
    client.set_terminated(run)
    [report] = training_runs("oversized", tracking_uri=uri)
    p95_cpu = np.percentile(cpu, 95)  # 18.0: ceil(8 x 0.18 / 0.7) = ceil(2.06) = 3
    assert report.usage["cpu"].p95 == pytest.approx(p95_cpu)
    messages = [a.message for a in report.advice]
    assert messages == ["CPU p95 18 % of 8 CPUs: 3 would do",
                        f"memory p95 {np.percentile(memory, 95):.0f} %: at risk of running out"]
    alerts = run_alerts([report], "oversized")
    assert [(a["detector"], a["severity"]) for a in alerts] == [("cpu_p95", "warning"), ("memory_p95", "warning")]
    # A 25 % target: ceil(8 x 0.18 / 0.25) = ceil(5.76) = 6
    [tighter] = training_runs("oversized", tracking_uri=uri, settings=CapacitySettings(target_utilization=0.25))
    assert tighter.advice[0].message == "CPU p95 18 % of 8 CPUs: 6 would do"


def test_unknown_experiment_and_bad_arguments_exit_2(store, capsys):
    uri, _busy, _idle = store
    assert main(["compute", "runs", "--experiment", "no-such-experiment", "--tracking-uri", uri]) == 2
    assert "no MLflow experiment named 'no-such-experiment'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["compute", "runs", "--experiment", "training", "--cpus", "0"])
    assert exit_info.value.code == 2


def test_json_output_one_document_per_run(store, capsys):
    uri, busy, idle = store
    assert main(["compute", "runs", "--experiment", "training", "--tracking-uri", uri, "--json"]) == 0
    documents = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["run_id"] for d in documents] == [busy, idle]
    assert documents[1]["cpu_count"] == 2 and documents[1]["advice"][0]["action"] == "scale_down"
