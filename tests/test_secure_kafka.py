"""TLS and SASL/PLAIN against real brokers: same alerts as plaintext, clear failures, no password in logs.

``scripts/test.sh`` starts a TLS broker (a CA made by ``scripts/kafka.sh``) and a SASL/PLAIN broker
beside the plaintext one and exports where they are (TRIPWIRE_TEST_SSL_BOOTSTRAP,
TRIPWIRE_TEST_SSL_CAFILE, TRIPWIRE_TEST_SASL_BOOTSTRAP, TRIPWIRE_TEST_SASL_USERNAME,
TRIPWIRE_TEST_SASL_PASSWORD). Without them every test here fails saying so; none is skipped.

The CLI runs as a subprocess with the settings in its environment (TRIPWIRE_KAFKA_*), as an
operator would run it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from tripwire.cli import main
from tripwire.demo import write_demo_config
from tripwire.events import Rejection, decode

RUN = uuid.uuid4().hex[:8]
WAIT = 150.0


def broker_env(kind: str, **overrides: str) -> dict[str, str]:
    """The environment of a tripwire process talking to the TLS (``ssl``) or SASL (``sasl``) broker."""
    prefix = f"TRIPWIRE_TEST_{kind.upper()}_"
    needed = ["BOOTSTRAP", "CAFILE"] if kind == "ssl" else ["BOOTSTRAP", "USERNAME", "PASSWORD"]
    missing = [prefix + name for name in needed if not os.environ.get(prefix + name)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not set: run the suite with `make test` (scripts/test.sh starts the "
                    "TLS and SASL brokers)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPWIRE_KAFKA_")}
    env["TRIPWIRE_KAFKA_BOOTSTRAP"] = os.environ[prefix + "BOOTSTRAP"]
    if kind == "ssl":
        env.update(TRIPWIRE_KAFKA_SECURITY_PROTOCOL="SSL", TRIPWIRE_KAFKA_SSL_CAFILE=os.environ[prefix + "CAFILE"])
    else:
        env.update(TRIPWIRE_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", TRIPWIRE_KAFKA_SASL_MECHANISM="PLAIN",
                   TRIPWIRE_KAFKA_SASL_USERNAME=os.environ[prefix + "USERNAME"],
                   TRIPWIRE_KAFKA_SASL_PASSWORD=os.environ[prefix + "PASSWORD"])
    env.update(overrides)
    return env


def tripwire(env: dict[str, str], *args: str, timeout: float = WAIT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tripwire.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_stream):
    """The demo config and the alerts of a file replay of the demo stream (what plaintext Kafka gives too)."""
    directory = tmp_path_factory.mktemp("secure")
    config = write_demo_config(directory / "config")
    events = directory / "events.jsonl"
    records = demo_stream[0]
    events.write_bytes(b"\n".join(records) + b"\n")
    out = directory / "file.jsonl"
    assert main(["replay", str(events), "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    alerts = out.read_bytes()
    assert alerts.count(b"\n") > 10
    rejected = sum(1 for r in records if type(decode(r)) is Rejection)
    return {"dir": directory, "config": config, "alerts": alerts, "rejected": rejected}


@pytest.fixture(scope="module")
def published(demo):
    """The demo stream on one topic of each secured broker, published through that broker's security."""
    topics = {}
    for kind in ("ssl", "sasl"):
        topic = f"secure{RUN}.{kind}"
        done = tripwire(broker_env(kind), "demo", "--broker", broker_env(kind)["TRIPWIRE_KAFKA_BOOTSTRAP"],
                        "--topic", topic)
        assert done.returncode == 0, done.stderr[-3000:]
        topics[kind] = topic
    return topics


@pytest.mark.parametrize("kind", ["ssl", "sasl"])
def test_topic_replay_over_a_secured_broker_gives_the_plaintext_alerts(kind, demo, published, tmp_path):
    out = tmp_path / f"{kind}.jsonl"
    done = tripwire(broker_env(kind), "replay", "--topic", published[kind], "--config", str(demo["config"]),
                    "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.read_bytes() == demo["alerts"]
    dead = (tmp_path / f"{kind}.deadletter.jsonl").read_bytes().splitlines()
    assert len(dead) == demo["rejected"]
    assert {orjson.loads(line)["topic"] for line in dead} == {published[kind]}


def other_ca(directory: Path) -> Path:
    """A CA that did not sign the broker's certificate."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=not the broker's CA",
                    "-keyout", str(directory / "other.key"), "-out", str(directory / "other.pem")],
                   check=True, capture_output=True)
    return directory / "other.pem"


def test_a_wrong_ca_fails_with_the_certificate_error(demo, published, tmp_path):
    env = broker_env("ssl", TRIPWIRE_KAFKA_SSL_CAFILE=str(other_ca(tmp_path)), TRIPWIRE_KAFKA_CLIENT_ID="wrong-ca")
    done = tripwire(env, "replay", "--topic", published["ssl"], "--config", str(demo["config"]),
                    "--out", str(tmp_path / "x.jsonl"))
    assert done.returncode == 3
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr
    assert "cannot reach Kafka at " + env["TRIPWIRE_KAFKA_BOOTSTRAP"] in done.stderr
    assert "kafka.ssl_cafile" in done.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_a_wrong_password_fails_with_the_authentication_error_and_is_not_printed(demo, published, tmp_path):
    wrong = "Wr0ng-" + uuid.uuid4().hex
    env = broker_env("sasl", TRIPWIRE_KAFKA_SASL_PASSWORD=wrong)
    done = tripwire(env, "replay", "--topic", published["sasl"], "--config", str(demo["config"]),
                    "--out", str(tmp_path / "x.jsonl"))
    assert done.returncode == 3
    assert "Authentication failed" in done.stderr
    assert "kafka.sasl_password" in done.stderr
    assert wrong not in done.stdout + done.stderr


def test_a_debug_log_of_a_sasl_worker_holds_no_password(demo, tmp_path):
    env = broker_env("sasl", TRIPWIRE_WORKER_APP_ID=f"secure{RUN}", PYTHONUNBUFFERED="1")
    password = env["TRIPWIRE_KAFKA_SASL_PASSWORD"]
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        worker = subprocess.Popen([sys.executable, "-m", "tripwire.cli", "worker", "--config",
                                   str(demo["config"]), "--loglevel", "debug"], stdout=sink, stderr=subprocess.STDOUT,
                                  env=env)
        try:
            deadline = time.monotonic() + WAIT
            while "[^Worker]: Ready" not in log.read_text(errors="replace"):
                assert worker.poll() is None, log.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "the SASL worker never became ready"
                time.sleep(0.5)
            time.sleep(3)  # a few seconds of a running worker: fetches, heartbeats, timers
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    text = log.read_text(errors="replace")
    assert "Authenticated as" in text and "[DEBUG]" in text  # it did log in over SASL, at debug level
    assert "SaslAuthenticateRequest" in text  # aiokafka logs the login request (with the password) at debug ...
    assert password not in text  # ... which is masked
    assert "***" in text
