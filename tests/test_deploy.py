"""The Grafana dashboard and the Prometheus scrape config agree with the metrics the workers export.

``promtool`` (Debian: ``apt-get install -y prometheus``, which ``make test`` installs) checks the
scrape config and parses every dashboard query.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "tripwire.json"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"

# The worker's metrics (name -> labels), the contract between the exporter and the dashboard.
METRICS = {
    "tripwire_events_total": {"topic"},
    "tripwire_records_rejected_total": set(),
    "tripwire_alerts_total": {"kind", "severity"},
    "tripwire_processing_lag_seconds": set(),
    "tripwire_window_statistic": {"model", "signal", "statistic"},
    "tripwire_process_cpu_percent": set(),
    "tripwire_process_resident_memory_bytes": set(),
    "tripwire_recommended_replicas": {"service"},
}
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$model": ".*",
                     "$feature": "feature:.*", "$drift_statistic": "psi"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def queries(board: dict) -> list[str]:
    found = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return found + [a["expr"] for a in board["annotations"]["list"] if "expr" in a]


def concrete(expr: str) -> str:
    for name, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown dashboard variable in {expr}"
    return expr


def test_dashboard_reads_every_worker_metric_and_nothing_else():
    board = dashboard()
    used = {name for expr in queries(board) for name in re.findall(r"\btripwire_[a-z_]+", expr)}
    assert used == set(METRICS)
    for expr in queries(board):
        for name, selector in re.findall(r"\b(tripwire_[a-z_]+)\{([^}]*)\}", expr):
            labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
            assert labels <= METRICS[name], f"{name} has no label(s) {labels - METRICS[name]}: {expr}"
        for labels in re.findall(r"\bby \(([^)]*)\)", expr):
            assert {label.strip() for label in labels.split(",")} <= set().union(*METRICS.values())


def test_dashboard_is_importable_and_laid_out():
    board = dashboard()
    assert board["uid"] == "tripwire" and board["schemaVersion"] >= 36
    names = {v["name"] for v in board["templating"]["list"]}
    assert names == {"datasource", "model", "feature", "drift_statistic"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        box = panel["gridPos"]
        assert 0 <= box["x"] and box["x"] + box["w"] <= 24
        mine = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not cells & mine, f"panel {panel['title']!r} overlaps another"
        cells |= mine
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    for expr in queries(board):
        concrete(expr)


def test_prometheus_scrapes_the_workers_metrics_endpoint():
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "tripwire")
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"]
    up = [q for q in queries(dashboard()) if "up{" in q]
    assert up == ['sum(up{job="tripwire"})']


def test_promtool_accepts_the_config_and_every_dashboard_query(tmp_path):
    assert shutil.which("promtool"), "promtool is needed (Debian: apt-get install -y prometheus; make test installs it)"
    subprocess.run(["promtool", "check", "config", str(PROMETHEUS)], check=True, capture_output=True, timeout=60)
    lines = ["groups:", "- name: dashboard", "  rules:"]
    for i, expr in enumerate(queries(dashboard())):
        lines += [f"  - record: tripwire:dashboard_query:{i}", f"    expr: {json.dumps(concrete(expr))}"]
    rules = tmp_path / "rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    result = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_worker_exporter_exposes_what_the_dashboard_reads():
    from tripwire.streams import metrics
    exporter = metrics.WorkerMetrics()
    exporter.observe_records("tripwire.predictions", 10, rejected=1)
    exporter.observe_event_time(100.0, now=103.0)
    exporter.observe_alert({"status": "firing", "kind": "data_drift", "severity": "warning"})
    exporter.observe_window({"model": "m", "family": "data", "index": 0, "start": 0.0, "end": 1.0, "n": 10,
                             "stats": {"feature:weight.psi": 0.2, "feature:weight.fractions": [0.5, 0.5],
                                       "performance:mae": 2.0, "serving.latency_p95": 20.0}})
    exporter.sample_process()
    exporter.observe_capacity({"fuel-efficiency": 3})
    exposed: dict[str, set[str]] = {}
    for line in exporter.render().decode().splitlines():
        match = re.match(r"(tripwire_[a-z_]+)(?:\{([^}]*)\})? ", line)
        if match:
            exposed.setdefault(match.group(1), set()).update(re.findall(r'(\w+)="', match.group(2) or ""))
    for name, labels in METRICS.items():
        assert name in exposed, f"the dashboard reads {name}, the worker does not export it"
        assert exposed[name] == labels, f"{name}: exported labels {exposed[name]}, dashboard expects {labels}"


def test_compose_provisions_grafana_with_the_dashboard_and_prometheus():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    grafana = compose["grafana"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in grafana["volumes"]}
    assert mounts["./deploy/grafana/tripwire.json"] == "/var/lib/grafana/dashboards/tripwire.json"
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = yaml.safe_load((provisioning / "dashboards" / "tripwire.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert "9090:9090" in compose["prometheus"]["ports"]
    targets = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
    hosts = {t.split(":")[0] for job in targets for c in job["static_configs"] for t in c["targets"]}
    assert {"tripwire-worker-1", "tripwire-worker-2"} <= hosts <= set(compose) | {"localhost"}
