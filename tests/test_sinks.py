"""Alert routing against real receivers: Debian's Alertmanager, and a local HTTP server for webhooks."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tripwire.alerts import AlertPolicy, Finding
from tripwire.config import ConfigError, Threshold, parse_config
from tripwire.events import format_ts, parse_ts
from tripwire.sinks import start_sinks
from tripwire.sinks.config import parse_sinks
from tripwire.sinks.webhook import slack_text

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def finding(signal: str, value: float, start: float, kind: str = "data_drift") -> Finding:
    return Finding(model="fuel-efficiency", kind=kind, signal=signal, detector="psi", value=value,
                   threshold=Threshold(0.1, 0.25), window_start=start, window_end=start + 60, n=500,
                   message=f"{signal} psi {value}")


def lifecycle(now: float) -> list[dict[str, Any]]:
    """Real alerts from the alert policy: weight fires (warning), escalates, resolves; horsepower fires."""
    policy = AlertPolicy(min_samples=100, resolve_windows=1)
    steps = [("feature:weight", 0.15, now - 600), ("feature:horsepower", 0.4, now - 590),
             ("feature:weight", 0.5, now - 540), ("feature:weight", 0.01, now - 480)]
    alerts = []
    for signal, value, ts in steps:
        alert = policy.evaluate(finding(signal, value, ts - 60), model_version="3", reference="models:/fuel/3", ts=ts)
        assert alert is not None
        alerts.append(alert)
    return alerts


# -- Alertmanager ---------------------------------------------------------------------------------
@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    if not Path(ALERTMANAGER).exists():
        pytest.fail(f"{ALERTMANAGER} is missing: scripts/test.sh installs Debian's prometheus-alertmanager")
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: nobody\n  group_wait: 1s\nreceivers:\n  - name: nobody\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen([ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(ready, "Alertmanager to be ready")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def alertmanager_alerts(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as response:
        return json.loads(response.read())


def active(alerts: list[dict[str, Any]], **labels: str) -> list[dict[str, Any]]:
    """Alerts matching ``labels`` that are still active (not ended: endsAt in the future)."""
    now = time.time()
    return [a for a in alerts if all(a["labels"].get(k) == v for k, v in labels.items())
            and a["status"]["state"] == "active" and parse_ts(a["endsAt"]) > now]


def test_alertmanager_shows_firing_escalated_and_resolved_alerts(alertmanager: str) -> None:
    now = time.time()
    warning, horsepower, escalated, resolved = lifecycle(now)
    assert escalated["incident_id"] == warning["incident_id"] and escalated["severity"] == "critical"
    sinks = start_sinks(parse_sinks({"alertmanager": [{"url": alertmanager, "labels": {"team": "ml"},
                                                        "generator_url": "http://worker:6066/status",
                                                        "resend_seconds": 0}]}))
    try:
        sinks.submit(warning)
        sinks.submit(horsepower)
        found = wait_for(lambda: active(alertmanager_alerts(alertmanager), signal="feature:weight"),
                         "the weight alert in Alertmanager")
        assert found[0]["labels"] == {"alertname": "tripwire_data_drift", "model": "fuel-efficiency",
                                      "kind": "data_drift", "signal": "feature:weight", "severity": "warning",
                                      "detector": "psi", "team": "ml"}
        assert found[0]["annotations"]["alert_id"] == warning["alert_id"]
        assert found[0]["annotations"]["message"] == warning["message"]
        assert found[0]["startsAt"].startswith(warning["ts"][:19])
        assert found[0]["generatorURL"] == "http://worker:6066/status"

        # Escalation: the critical alert starts and the warning one (another label set) ends.
        sinks.submit(escalated)
        wait_for(lambda: active(alertmanager_alerts(alertmanager), signal="feature:weight", severity="critical"),
                 "the escalated weight alert")
        wait_for(lambda: not active(alertmanager_alerts(alertmanager), signal="feature:weight", severity="warning"),
                 "the warning weight alert to end")

        sinks.submit(resolved)
        wait_for(lambda: not active(alertmanager_alerts(alertmanager), signal="feature:weight"),
                 "the weight alert to resolve")
        # The horsepower incident is untouched until a new model version closes it.
        assert active(alertmanager_alerts(alertmanager), signal="feature:horsepower", severity="critical")
        sinks.submit({"type": "reference_changed", "schema": 1, "model": "fuel-efficiency", "model_version": "4",
                      "reference": "models:/fuel/4", "previous_version": "3", "previous_reference": "models:/fuel/3",
                      "closed_alerts": [horsepower["alert_id"]], "ts": format_ts(now - 30)})
        wait_for(lambda: not active(alertmanager_alerts(alertmanager), model="fuel-efficiency"),
                 "the alerts the new version closed to resolve")
    finally:
        assert sinks.close(timeout=30)
    runner = sinks.sinks[0].runner
    assert runner.rejected == 0 and runner.dropped == 0
    assert runner.delivered == runner.submitted == 6  # 4 alerts + the warning's end at escalation + 1 closed


def test_alertmanager_open_alerts_are_re_sent_until_they_resolve(alertmanager: str) -> None:
    warning, horsepower, escalated, resolved = lifecycle(time.time())
    sinks = start_sinks(parse_sinks({"alertmanager": [{"url": alertmanager, "resend_seconds": 0.2}]}))
    runner = sinks.sinks[0].runner
    try:
        sinks.submit(horsepower)
        wait_for(lambda: runner.delivered >= 4, "three re-sends of the open alert")
        assert active(alertmanager_alerts(alertmanager), signal="feature:horsepower")
        sinks.submit({"type": "reference_changed", "model": "fuel-efficiency", "closed_alerts": [horsepower["alert_id"]],
                      "ts": resolved["ts"]})
        wait_for(lambda: not active(alertmanager_alerts(alertmanager), model="fuel-efficiency"), "the resolve")
        sent = runner.submitted
        time.sleep(1.0)  # five re-send periods: nothing is open, so nothing more goes out
        assert runner.submitted == sent
    finally:
        sinks.close(timeout=30)


# -- webhooks -------------------------------------------------------------------------------------
class Receiver:
    """A real HTTP server that records every JSON POST; ``fail_first`` answers 503 to that many (after reading them)."""

    def __init__(self, port: int, fail_first: int = 0, status: int = 200) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.payloads.append(json.loads(body))
                receiver.headers.append(dict(self.headers))
                failing = receiver.fail_first > 0
                receiver.fail_first -= failing
                self.send_response(503 if failing else status)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_buffers_while_the_receiver_is_down_and_delivers_everything_after() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/T000/SECRET"
    alerts = lifecycle(time.time())
    sinks = start_sinks(parse_sinks({"retry_seconds": 0.1, "max_retry_seconds": 0.5, "timeout_seconds": 5,
                                     "webhook": [{"url": url, "headers": {"Authorization": "Bearer s3cret"}}]}))
    runner = sinks.sinks[0].runner
    receiver = None
    try:
        for alert in alerts:
            sinks.submit(alert)  # returns at once: nothing is listening on the port
        wait_for(lambda: runner.failures >= 3, "three failed attempts while the receiver is down")
        assert runner.pending == len(alerts) and runner.delivered == 0
        assert "SECRET" not in runner.name and "SECRET" not in (runner.last_error or "")

        receiver = Receiver(port, fail_first=1)  # the first POST is read, then answered 503: it comes again
        wait_for(lambda: runner.delivered == len(alerts), "every alert at the receiver")
    finally:
        assert sinks.close(timeout=30)
        if receiver is not None:
            receiver.close()
    ids = [payload["alert_id"] for payload in receiver.payloads]
    assert ids == [alerts[0]["alert_id"]] + [alert["alert_id"] for alert in alerts]  # order kept, one duplicate
    assert receiver.payloads[0] == receiver.payloads[1]
    for payload, headers, alert in zip(receiver.payloads[1:], receiver.headers[1:], alerts):
        assert payload["alert"] == json.loads(json.dumps(alert))
        assert payload["text"] == slack_text(payload["alert"])
        assert headers["Idempotency-Key"] == payload["alert_id"]
        assert headers["Authorization"] == "Bearer s3cret"
    assert receiver.payloads[2]["text"].startswith("[FIRING critical] fuel-efficiency v3 data_drift feature:horsepower")
    assert receiver.payloads[3]["text"].startswith("[ESCALATED critical]")
    assert receiver.payloads[4]["text"].startswith("[RESOLVED critical]")


def test_webhook_drops_the_oldest_past_its_buffer_and_routes_by_status() -> None:
    port = free_port()
    alerts = lifecycle(time.time())
    sinks = start_sinks(parse_sinks({"webhook": [{"url": f"http://127.0.0.1:{port}", "buffer_alerts": 2,
                                                  "retry_seconds": 0.1, "max_retry_seconds": 0.2,
                                                  "statuses": ["firing", "escalated"]}]}))
    runner = sinks.sinks[0].runner
    receiver = None
    try:
        for alert in alerts:
            sinks.submit(alert)
        assert runner.submitted == 3  # the resolved alert is not routed
        assert runner.dropped == 1  # buffer of 2: the oldest went
        receiver = Receiver(port)
        wait_for(lambda: runner.delivered == 2, "the two buffered alerts")
    finally:
        sinks.close(timeout=30)
        if receiver is not None:
            receiver.close()
    assert [p["alert_id"] for p in receiver.payloads] == [alerts[1]["alert_id"], alerts[2]["alert_id"]]


def test_a_payload_the_receiver_refuses_is_dropped_not_retried() -> None:
    receiver = Receiver(free_port(), status=400)
    alerts = lifecycle(time.time())[:2]
    sinks = start_sinks(parse_sinks({"webhook": [{"url": f"http://127.0.0.1:{receiver.server.server_address[1]}",
                                                  "retry_seconds": 0.1}]}))
    runner = sinks.sinks[0].runner
    try:
        for alert in alerts:
            sinks.submit(alert)
        wait_for(lambda: runner.rejected == 2, "both alerts refused")
        assert sinks.close(timeout=10)  # nothing left to deliver
    finally:
        receiver.close()
    assert [p["alert_id"] for p in receiver.payloads] == [a["alert_id"] for a in alerts]  # each sent once
    assert runner.failures == 0 and runner.delivered == 0 and "HTTP 400" in runner.last_error


# -- configuration -------------------------------------------------------------------------------
MODELS = {"models": [{"name": "m", "reference": "ref.json"}]}


@pytest.mark.parametrize("sinks, message", [
    ({"webhook": [{"headers": {}}]}, "sinks.webhook[0].url is required"),
    ({"webhook": [{"url": "ftp://x"}]}, "sinks.webhook[0].url must be an http:// or https:// URL"),
    ({"alertmanager": [{"url": "http://am:9093", "statuses": ["firing", "paged"]}]}, "sinks.alertmanager[0].statuses"),
    ({"buffer_alerts": 0}, "sinks.buffer_alerts must be a positive integer"),
    ({"pagerduty": []}, "sinks.pagerduty: unknown key"),
    ({"webhook": {"url": "http://x"}}, "sinks.webhook must be an array of tables"),
])
def test_sinks_config_errors_name_the_key(sinks: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config({**MODELS, "sinks": sinks})


def test_sinks_config_expands_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "t0k3n")
    table = {"webhook": [{"url": "https://hooks.example/${HOOK_TOKEN}", "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"}}]}
    (hook,) = parse_config({**MODELS, "sinks": table}).sinks["webhook"]
    assert hook["url"] == "https://hooks.example/t0k3n" and hook["headers"]["Authorization"] == "Bearer t0k3n"
    monkeypatch.delenv("HOOK_TOKEN")
    with pytest.raises(ConfigError, match=r"sinks.webhook\[0\].url: environment variable HOOK_TOKEN is not set"):
        parse_config({**MODELS, "sinks": table})


def test_sinks_config_defaults_and_overrides() -> None:
    config = parse_config({**MODELS, "sinks": {"timeout_seconds": 3, "min_severity": "critical",
                                               "webhook": [{"url": "http://h/x", "timeout_seconds": 1}]}})
    (hook,) = config.sinks["webhook"]
    assert hook["timeout_seconds"] == 1.0 and hook["min_severity"] == "critical"
    assert hook["statuses"] == ("firing", "escalated", "resolved", "reference_changed")
    assert hook["buffer_alerts"] == 10_000 and hook["headers"] == {} and config.sinks["alertmanager"] == []
    assert parse_config(MODELS).sinks == {"alertmanager": [], "webhook": []}


# -- tripwire replay --sinks ------------------------------------------------------------------------
def test_replay_with_sinks_posts_every_alert_in_order(tmp_path: Path, demo_stream, demo_references) -> None:
    from tests.test_cli import write_demo_files
    from tripwire.cli import main

    config, events = write_demo_files(tmp_path, demo_stream[0], demo_references)
    receiver = Receiver(free_port())
    try:
        with config.open("a") as handle:
            handle.write(f'\n[[sinks.webhook]]\nurl = "http://127.0.0.1:{receiver.server.server_address[1]}/h"\n')
        out = tmp_path / "alerts.jsonl"
        assert main(["replay", str(events), "--config", str(config), "--out", str(out), "--sinks"]) == 0
    finally:
        receiver.close()
    alerts = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert len(alerts) > 10
    assert [p["alert"] for p in receiver.payloads] == alerts  # close() delivered everything before returning


def test_replay_with_a_wrong_sinks_key_exits_2_naming_it(tmp_path: Path, capsys) -> None:
    from tripwire.cli import main

    config = tmp_path / "monitor.toml"
    config.write_text('[[models]]\nname = "m"\nreference = "r.json"\n\n[[sinks.webhook]]\nurl = "http://h"\nheader = 1\n')
    events = tmp_path / "e.jsonl"
    events.write_text("")
    assert main(["replay", str(events), "--config", str(config), "--out", str(tmp_path / "a.jsonl"), "--sinks"]) == 2
    assert "sinks.webhook[0].header: unknown key" in capsys.readouterr().err
