"""The worker's web server, probed with a real HTTP client against a running worker process.

Needs the plaintext broker of ``scripts/test.sh`` (TRIPWIRE_KAFKA_BOOTSTRAP); no traffic, only a
worker that is up. What is listening is read from the kernel's socket table (psutil, like ``ss -ltn``).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import bcrypt
import psutil
import pytest

from tripwire.config import ConfigError, load_config
from tripwire.demo import write_demo_config
from tripwire.streams.web import load_web_config

BOOTSTRAP = os.environ.get("TRIPWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
RUN = uuid.uuid4().hex[:8]
WAIT = 150.0
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> set[str]:
    """Addresses with a TCP socket listening on ``port`` (IPv4-mapped IPv6 shown as IPv4)."""
    return {c.laddr.ip.removeprefix("::ffff:") for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def worker_config(directory: Path, worker_table: str) -> Path:
    config = write_demo_config(directory)
    text = config.read_text().replace('[worker]\napp_id = "tripwire-demo"', worker_table)
    assert text != config.read_text()
    config.write_text(text)
    return config


class RunningWorker:
    def __init__(self, config: Path, port: int) -> None:
        self.port = port
        self.log = config.with_suffix(".log")
        env = {**os.environ, "TRIPWIRE_KAFKA_BOOTSTRAP": BOOTSTRAP, "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen([sys.executable, "-m", "tripwire.cli", "worker", "--config",
                                             str(config)], stdout=sink, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + WAIT
        while not listening(port):
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"no web server on port {port} after {WAIT:.0f} s:\n{self.output()[-3000:]}")
            time.sleep(0.3)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def get(url: str, *, auth: tuple[str, str] | None = None, cafile: Path | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def default_worker(tmp_path_factory):
    port = free_port()
    config = worker_config(tmp_path_factory.mktemp("web-default"),
                           f'[worker]\napp_id = "web{RUN}a"\nweb_port = {port}')
    worker = RunningWorker(config, port)
    yield worker
    worker.stop()


def test_the_web_server_listens_on_loopback_only_by_default(default_worker):
    assert listening(default_worker.port) == {"127.0.0.1"}
    status, _headers, body = get(f"http://127.0.0.1:{default_worker.port}/status.json")
    assert status == 200
    assert {"worker", "open_alerts", "models"} <= set(json.loads(body))  # the live board answers
    assert get(f"http://127.0.0.1:{default_worker.port}/metrics")[0] == 200


@pytest.mark.parametrize("page", ["/router/", "/table/", "/graph/", "/stats/"])
def test_faust_pages_are_off_by_default(default_worker, page):
    assert get(f"http://127.0.0.1:{default_worker.port}{page}")[0] == 404


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "web.crt", directory / "web.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.2",
                    "-addext", "subjectAltName=IP:127.0.0.2", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def protected_worker(tmp_path_factory):
    """TLS + basic auth from a web config, Faust's pages asked for, bound to another loopback address."""
    directory = tmp_path_factory.mktemp("web-protected")
    cert, key = self_signed(directory)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=6)).decode().replace("$2b$", "$2y$", 1)
    (directory / "web.yml").write_text(f"tls_server_config:\n  cert_file: {cert.name}\n  key_file: {key.name}\n"
                                       f"basic_auth_users:\n  alice: '{hashed}'\n")
    port = free_port()
    config = worker_config(directory, f'[worker]\napp_id = "web{RUN}b"\nweb_port = {port}\nweb_bind = "127.0.0.2"\n'
                                      'web_config = "web.yml"\nweb_faust_pages = true')
    worker = RunningWorker(config, port)
    worker.cert = cert
    yield worker
    worker.stop()


def test_an_explicit_bind_address_is_used(protected_worker):
    assert listening(protected_worker.port) == {"127.0.0.2"}


def test_basic_auth_and_tls(protected_worker):
    url = f"https://127.0.0.2:{protected_worker.port}"
    status, headers, _body = get(url + "/status.json", cafile=protected_worker.cert)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic realm=")
    assert get(url + "/status.json", auth=("alice", "wrong"), cafile=protected_worker.cert)[0] == 401
    assert get(url + "/status.json", auth=("mallory", PASSWORD), cafile=protected_worker.cert)[0] == 401
    assert get(url + "/metrics", cafile=protected_worker.cert)[0] == 401
    status, _headers, body = get(url + "/status.json", auth=("alice", PASSWORD), cafile=protected_worker.cert)
    assert status == 200 and "open_alerts" in json.loads(body)
    assert get(url + "/metrics", auth=("alice", PASSWORD), cafile=protected_worker.cert)[0] == 200
    # Faust's pages were asked for: served, behind the same authentication.
    assert get(url + "/router/", cafile=protected_worker.cert)[0] == 401
    assert get(url + "/router/", auth=("alice", PASSWORD), cafile=protected_worker.cert)[0] == 200
    # A client that does not trust the certificate, and plain HTTP, get nothing.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get(url + "/status.json", auth=("alice", PASSWORD))
    with pytest.raises((urllib.error.URLError, ConnectionError, http_errors())):
        get(f"http://127.0.0.2:{protected_worker.port}/status.json", auth=("alice", PASSWORD))


def http_errors():
    import http.client

    return http.client.HTTPException


@pytest.mark.parametrize("text,reason", [
    ("basic_auth_users:\n  alice: hunter2\n", "bcrypt hash"),
    ("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n", "no such file"),
    ("tls_server_config:\n  cert_file: a\n", "exactly cert_file and key_file"),
    ("http_server_config:\n  http2: true\n", "not supported"),
    ("!!python/object/apply:os.system ['touch pwned']\n", "not a readable YAML"),
    ("- a list\n", "mapping"),
])
def test_a_bad_web_config_is_refused_naming_file_and_key(tmp_path, text, reason):
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=reason) as raised:
        load_web_config(path)
    assert str(path) in str(raised.value)
    assert not (tmp_path / "pwned").exists()


def test_web_settings_parse_and_resolve_against_the_config_file(tmp_path):
    config = worker_config(tmp_path, '[worker]\nweb_port = 8080\nweb_config = "web.yml"')
    worker = load_config(config).worker
    assert worker.web_bind == "127.0.0.1" and worker.web_faust_pages is False
    assert worker.web_config == str(tmp_path / "web.yml")
    bad = worker_config(tmp_path, '[worker]\nweb_faust_pages = "yes please"')
    with pytest.raises(ConfigError, match="worker.web_faust_pages"):
        load_config(bad)


def test_compose_workers_open_their_web_port_to_prometheus_only_inside_the_compose_network():
    import yaml

    from tripwire.config import WORKER_KEYS
    from tripwire.config_values import _parse
    from tripwire.streams.topics import worker_env_name

    services = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text())["services"]
    for name in ("tripwire-worker-1", "tripwire-worker-2"):
        environment = services[name]["environment"]
        bind = environment[worker_env_name("web_bind")]
        assert _parse(WORKER_KEYS["web_bind"][0], bind, name) == "0.0.0.0"
        assert "ports" not in services[name]
