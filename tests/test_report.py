"""The backtest report: rendered from the demo's replay, checked in a real headless browser.

The browser is Debian's ``chromium`` (``apt-get install -y chromium``). Without one on PATH the
browser tests are skipped, unless ``TRIPWIRE_REQUIRE_BROWSER=1`` (the project's test setup sets
it), which makes a missing browser a failure.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser

import numpy as np
import orjson
import pandas as pd
import pytest

from tripwire import demo
from tripwire.alerts import AlertPolicy, Finding
from tripwire.cli import main
from tripwire.config import parse_config
from tripwire.engine import Engine
from tripwire.reference import build_reference, save_reference
from tripwire.replay import run_records
from tripwire.report import WindowLog, build_series, ratio, render_report, split_statistic

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
T0 = 1_795_824_000.0


# -- helpers -----------------------------------------------------------------------------------
class Dom(HTMLParser):
    """What the tests look for in a (dumped) page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.root: dict[str, str | None] = {}
        self.models: list[str] = []
        self.alert_rows: list[str] = []
        self.linked_alert_signals = 0
        self.figures: list[str] = []
        self.charts = 0
        self.open_rows = 0
        self._in_alerts_body = False
        self._cell = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "html":
            self.root = a
        elif tag == "section" and "model" in classes:
            self.models.append(a["data-model"])
        elif tag == "table" and a.get("id") == "alerts":
            self._in_table = True
        elif tag == "tbody" and getattr(self, "_in_table", False):
            self._in_alerts_body = True
        elif tag == "tr" and self._in_alerts_body:
            self.alert_rows.append(a["id"])
            self._cell = 0
        elif tag == "td" and self._in_alerts_body:
            self._cell += 1
        elif tag == "a" and self._in_alerts_body and self._cell == 6:
            self.linked_alert_signals += 1
        elif tag == "figure" and "dist" in classes:
            self.figures.append(a["data-signal"])
        elif tag == "svg" and "chart" in classes:
            self.charts += 1
        elif tag == "details" and "sig" in classes and "open" in a:
            self.open_rows += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_alerts_body = False
        if tag == "table":
            self._in_table = False


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    message = "no headless browser on PATH; install one with: apt-get update && apt-get install -y chromium"
    if os.environ.get("TRIPWIRE_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def run_browser(tmp_path, *args: str) -> subprocess.CompletedProcess:
    command = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'browser-profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, demo_stream, demo_references):
    """``tripwire replay --report`` on the demo stream, as a user runs it."""
    folder = tmp_path_factory.mktemp("replay")
    for name, reference in demo_references.items():
        save_reference(reference, folder / f"{name}.json")
    config = folder / "monitor.toml"
    config.write_text("[defaults]\nperformance_window = 1000\n\n"
                      '[[models]]\nname = "fuel-efficiency"\nreference = "fuel-efficiency.json"\n\n'
                      '[[models]]\nname = "credit"\nreference = "credit.json"\n\n'
                      '[[models]]\nname = "triage"\nreference = "triage.json"\n')
    events = folder / "events.jsonl"
    events.write_bytes(b"\n".join(demo_stream[0]) + b"\n")
    report = folder / "report.html"
    code = main(["replay", str(events), "--config", str(config), "--out", str(folder / "alerts.jsonl"),
                 "--report", str(report), "--no-progress"])
    assert code == 0
    alerts = [orjson.loads(line) for line in (folder / "alerts.jsonl").read_bytes().splitlines()]
    return folder, report, alerts


def demo_windows(stream, references):
    config = parse_config(demo.demo_config())
    log, raw = WindowLog(config), []
    engine = Engine(config, references=references, on_window=lambda w: (log(w), raw.append(w)))
    alerts = []
    run_records(engine, stream, lambda alert, _index: alerts.append(alert), lambda *_: None)
    return config, log, raw, alerts


# -- the page ----------------------------------------------------------------------------------
def test_demo_replay_report_has_every_model_every_alert_and_the_drifted_features(replayed):
    _folder, report, alerts = replayed
    page = report.read_text(encoding="utf-8")
    dom = Dom(page)
    assert dom.models[:2] == ["fuel-efficiency", "credit"]  # worst first: the covariate drift is the worst
    assert sorted(dom.models) == sorted(["fuel-efficiency", "credit", "triage", "*"])
    assert len(dom.alert_rows) == len(alerts) == len(set(dom.alert_rows)) > 10
    # every model alert links to the timeline of its signal (the dead-letter rate has no window series)
    assert dom.linked_alert_signals == sum(a["model"] != "*" for a in alerts)
    for feature in ("feature:weight", "feature:horsepower"):
        assert feature in dom.figures
    assert dom.charts >= 20


def test_report_is_self_contained_and_deterministic(replayed, demo_stream, demo_references):
    _folder, report, _alerts = replayed
    page = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href|action)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page and "<link" not in page
    assert page.count("<script>") == 1 and "<script src" not in page
    config, log, _raw, alerts = demo_windows(demo_stream[0], demo_references)
    first = render_report(log.windows, alerts, config, demo_references, title="t", facts=[("records", 1)])
    second = render_report(log.windows, alerts, config, demo_references, title="t", facts=[("records", 1)])
    assert first == second


def test_histogram_is_the_worst_window_and_the_log_keeps_only_that_one(demo_stream, demo_references):
    config, log, raw, alerts = demo_windows(demo_stream[0], demo_references)
    weight = [w for w in raw if w["model"] == "fuel-efficiency" and w["family"] == "data"]
    worst = max(weight, key=lambda w: w["stats"]["feature:weight.psi"])
    kept = [w for w in log.windows if "feature:weight.fractions" in w["stats"]]
    assert len(kept) == 1 and kept[0]["index"] == worst["index"]
    assert kept[0]["stats"]["feature:weight.fractions"] == worst["stats"]["feature:weight.fractions"]
    fractions = worst["stats"]["feature:weight.fractions"]
    profile = demo_references["fuel-efficiency"]["features"]["weight"]
    assert len(fractions) == len(profile["edges"]) + 1 and math.isclose(sum(fractions), 1.0)
    assert all(w["stats"] is not k["stats"] for w, k in zip(raw, log.windows))  # the engine's dicts untouched
    page = render_report(log.windows, alerts, config, demo_references)
    figure = re.search(r'<figure class="dist"[^>]*data-signal="feature:weight".*?</figure>', page, re.S).group(0)
    assert f"PSI {worst['stats']['feature:weight.psi']:.3g}" in figure
    assert figure.count('class="ref"') == figure.count('class="cur ') == len(fractions)


def test_statistic_keys_map_to_alert_signal_and_detector():
    assert split_statistic("feature:a.b.psi") == ("feature:a.b", "psi")  # dots in a feature name
    assert split_statistic("change:feature:weight") == ("change:feature:weight", "changes")
    assert split_statistic("prediction.pvalue") == ("prediction", "pvalue")


def test_thresholds_are_drawn_on_the_scale_of_the_statistic():
    config = parse_config({"models": [{"name": "m", "reference": "r", "thresholds": {"accuracy": {"warning": 0.05}},
                                       "signals": {"feature:x": {"missing_rate": {"critical": 0.3}}}}]}).models[0]
    reference = {"baseline": {"accuracy": 0.8, "mae": 2.0}, "features": {"x": {"missing_rate": 0.1}}}
    windows = [{"model": "m", "family": "performance", "index": i, "start": T0 + i, "end": T0 + i + 1, "n": 500,
                "stats": {"performance:accuracy": acc, "performance:mae": mae,
                          "fairness:g.disparate_impact_ratio": dir_, "feature:x.missing_rate": missing}}
               for i, (acc, mae, dir_, missing) in enumerate([(0.8, 2.0, 0.95, 0.1), (0.7, 2.6, 0.5, 0.45)])]
    series = {(s.signal, s.statistic): s for s in build_series("m", windows, [], config, reference)}
    accuracy = series[("performance:accuracy", "accuracy")]
    assert accuracy.baseline == 0.8 and [round(v, 6) for _s, v in accuracy.lines] == [0.76, 0.72]
    assert accuracy.avals == pytest.approx([0.0, 0.125]) and accuracy.worst_ratio == pytest.approx(2.5)
    mae = series[("performance:mae", "mae")]
    assert [round(v, 6) for _s, v in mae.lines] == [2.2, 2.5] and mae.state == "crossed"
    fairness = series[("fairness:g", "disparate_impact_ratio")]
    assert fairness.threshold.direction == "below" and fairness.worst_ratio == pytest.approx(0.8 / 0.5)
    missing = series[("feature:x", "missing_rate")]
    assert [(s, round(v, 6)) for s, v in missing.lines] == [("warning", 0.15), ("critical", 0.4)]
    assert missing.threshold_source == "set for this signal" and missing.worst_ratio == pytest.approx(0.35 / 0.05)
    assert ratio(0.0, fairness.threshold) == math.inf and ratio(None, fairness.threshold) is None


def test_an_escalation_shows_in_the_row_and_the_chart_until_it_resolves():
    """weight fires (warning), escalates (critical), resolves: the row counts both, the chart shades both spans."""
    config = parse_config({"models": [{"name": "m", "reference": "r",
                                       "thresholds": {"psi": {"warning": 0.1, "critical": 0.25}}}]})
    model = config.models[0]
    policy = AlertPolicy(min_samples=100, resolve_windows=2)
    windows, alerts = [], []
    for i, psi in enumerate([0.01, 0.02, 0.15, 0.6, 0.7, 0.01, 0.02, 0.01, 0.02, 0.01]):
        start, end = T0 + 60 * i, T0 + 60 * i + 60
        windows.append({"model": "m", "family": "data", "index": i, "start": start, "end": end, "n": 500,
                        "stats": {"feature:weight.psi": psi}})
        finding = Finding(model="m", kind="data_drift", signal="feature:weight", detector="psi", value=psi,
                          threshold=model.threshold("psi", "feature:weight"), window_start=start,
                          window_end=end, n=500, message=f"PSI of weight is {psi}")
        alert = policy.evaluate(finding, model_version="1", reference="r", ts=end)
        if alert is not None:
            alerts.append(alert)
    assert [(a["status"], a["severity"]) for a in alerts] == [("firing", "warning"), ("firing", "critical"),
                                                              ("resolved", "critical")]
    (weight,) = build_series("m", windows, alerts, model, None)
    x1 = windows[-1]["end"]
    assert weight.firing_periods(x1) == [(T0 + 180, T0 + 240, "warning"), (T0 + 240, T0 + 420, "critical")]
    page = render_report(windows, alerts, config, {})
    row = re.search(rf'<details class="sig" id="{weight.anchor}".*?</details>', page, re.S).group(0)
    assert '<span class="badge critical">1 critical</span>' in row and '<span class="badge warning">1 warning</span>' in row
    chart = re.search(r'<svg class="chart".*?</svg>', row, re.S).group(0)
    bands = [(css, float(x), float(width)) for css, x, width in
             re.findall(r'<rect class="band (\w+)" x="([\d.]+)" y="\d+" width="([\d.]+)"', chart)]
    assert [css for css, _x, _w in bands] == ["warning", "critical"]
    (_w, warning_x, warning_width), (_c, critical_x, critical_width) = bands
    assert warning_x + warning_width == pytest.approx(critical_x, abs=0.2)  # the warning ends where it escalated
    plot_end = float(re.search(r'<line class="axis" x1="\d+" x2="([\d.]+)"', chart).group(1))
    assert critical_x + critical_width < plot_end - 50  # resolved at 00:07 of a 10-minute chart, not drawn to the end


def test_many_models_and_features_stay_compact():
    """5 models x 50 features: ranked rows, quiet signals folded, zero signals listed by name."""
    rng = np.random.default_rng(3)
    models = [f"model-{i}" for i in range(5)]
    config = parse_config({"models": [{"name": m, "reference": "r"} for m in models]})
    references, windows, alerts = {}, [], []
    for m in models:
        frame = pd.DataFrame({f"f{j:02d}": rng.normal(0, 1, 500) for j in range(50)})
        frame["y"] = rng.normal(0, 1, 500)
        frame["p"] = frame["y"] + 0.1
        references[m] = build_reference(frame, model=m, task="regression", target="y", prediction="p")
        for i in range(40):
            stats = {}
            for j in range(50):
                signal = f"feature:f{j:02d}"
                drifted = j < 3 and i >= 20
                stats.update({f"{signal}.psi": (0.4 if drifted else 0.01) + 0.005 * rng.random(),
                              f"{signal}.pvalue": 1e-9 if drifted else 0.5, f"{signal}.missing_rate": 0.0,
                              f"{signal}.fractions": [0.1] * 10})
            windows.append({"model": m, "model_version": "1", "family": "data", "index": i, "start": T0 + 60 * i,
                            "end": T0 + 60 * i + 59, "n": 1000, "stats": stats})
        for j in range(3):
            alerts.append({"alert_id": f"{m}-{j}", "incident_id": f"{m}-{j}", "status": "firing", "kind": "data_drift",
                           "severity": "critical", "model": m, "model_version": "1", "signal": f"feature:f{j:02d}",
                           "detector": "psi", "value": 0.4, "threshold": 0.25, "ts": "2026-11-28T00:20:59Z",
                           "window": {"start": "2026-11-28T00:20:00Z", "end": "2026-11-28T00:20:59Z", "n": 1000},
                           "message": "PSI"})
    page = render_report(windows, alerts, config, references)
    dom = Dom(page)
    assert sorted(dom.models) == models and len(dom.alert_rows) == 15
    assert dom.open_rows == 5 * 3  # alerted rows open (at most 3 per model when there are many models)
    assert len(dom.figures) == 15
    assert page.count('<details class="quiet">') == 5 and page.count("Zero in every window (50)") == 5
    assert len(page) < 3_000_000


# -- in a real browser -------------------------------------------------------------------------
def test_report_opens_in_headless_chromium(replayed, tmp_path):
    _folder, report, alerts = replayed
    dumped = run_browser(tmp_path, "--dump-dom", report.as_uri()).stdout
    dom = Dom(dumped)
    assert dom.root.get("data-ready") == "1", "the inline script did not run"
    assert "js" in (dom.root.get("class") or "")
    assert sorted(dom.models) == sorted(["fuel-efficiency", "credit", "triage", "*"])
    assert len(dom.alert_rows) == len(alerts)
    assert {"feature:weight", "feature:horsepower"} <= set(dom.figures)
    shot = tmp_path / "report.png"
    run_browser(tmp_path, "--window-size=1280,1600", f"--screenshot={shot}", report.as_uri())
    assert png_size(shot) == (1280, 1600) and shot.stat().st_size > 50_000  # a blank page is a few kB


def test_demo_command_writes_the_report(tmp_path, capsys):
    report = tmp_path / "demo" / "report.html"
    assert main(["demo", "--quiet", "--report", str(report)]) == 0
    assert f"report: {report}" in capsys.readouterr().out
    dom = Dom(report.read_text(encoding="utf-8"))
    assert sorted(dom.models) == sorted(["fuel-efficiency", "credit", "triage", "*"]) and len(dom.alert_rows) > 10
