"""The service tables of the configuration: ``[mlflow]``, ``[kafka]``, ``[worker]`` and ``[monitor]``.

Each is a :data:`~tripwire.config_values.KeySpec` (key -> parser, default, description) that
:func:`tripwire.config.parse_config` fills in with its defaults; the README's tables mirror them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tripwire.config_values import (
    ConfigError,
    KeySpec,
    _bool,
    _non_negative_int,
    _non_negative_number,
    _one_of,
    _positive_int,
    _positive_number,
    _string,
    _threshold,
)
from tripwire.thresholds import Threshold

# The [mlflow] table: where references resolve and where the monitor reports window metrics.
MLFLOW_KEYS: KeySpec = {
    "tracking_uri": (_string, None, "MLflow tracking URI (default: MLFLOW_TRACKING_URI, else MLflow's own default)"),
    "experiment": (_string, "tripwire-monitoring", "experiment of the monitoring runs (one run per model version)"),
    "report": (_bool, False, "log window statistics and alerts to MLflow"),
    "flush_windows": (_positive_int, 10, "windows buffered before a log_batch call (and at close)"),
    "buffer_windows": (_positive_int, 10_000, "windows kept while MLflow is unreachable; the oldest are dropped past it"),
    "alias_check_seconds": (_positive_number, 60.0, "how often the worker checks whether a models:/NAME@ALIAS moved"),
}



@dataclass(frozen=True)
class MlflowSettings:
    """The ``[mlflow]`` table, parsed: one field per key of :data:`MLFLOW_KEYS` (which holds the defaults)."""

    tracking_uri: str | None
    experiment: str
    report: bool
    flush_windows: int
    buffer_windows: int
    alias_check_seconds: float

    @classmethod
    def defaults(cls) -> MlflowSettings:
        return cls(**{key: default for key, (_parser, default, _doc) in MLFLOW_KEYS.items()})


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Topic roles and their default names; [kafka.topics] renames any of them.
DEFAULT_TOPICS = {role: f"tripwire.{role}" for role in
                  ("events", "alerts", "deadletter", "metrics", "checkpoints", "actions", "summaries")}
INFRASTRUCTURE_DETECTORS = ("cpu_percent", "memory_percent", "event_loop_lag_ms", "consumer_lag_growth", "unpublished")


def _servers(value: Any) -> str:
    if type(value) is list and value and all(type(v) is str and v for v in value):
        value = ",".join(value)
    if type(value) is not str or not all(":" in part and part.strip() for part in value.split(",")):
        raise TypeError("must be \"host:port[,host:port...]\" or a list of \"host:port\" strings")
    return ",".join(part.strip() for part in value.split(","))


def _topics(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError(f"must be a table of {', '.join(DEFAULT_TOPICS)} = \"topic name\"")
    for role, name in value.items():
        if role in ("predictions", "features", "labels"):
            raise TypeError(f"has {role!r}: predictions, features and labels now share one input topic, "
                            "[kafka.topics] events (its log order is the order the engine sees)")
        if role not in DEFAULT_TOPICS:
            raise TypeError(f"has unknown topic role {role!r}; allowed: {', '.join(DEFAULT_TOPICS)}")
        if type(name) is not str or not name:
            raise TypeError(f"{role} must be a non-empty topic name")
    return {**DEFAULT_TOPICS, **value}


def _infrastructure_thresholds(value: Any) -> dict[str, Threshold]:
    if not isinstance(value, dict):
        raise TypeError(f"must be a table of {', '.join(INFRASTRUCTURE_DETECTORS)} = {{warning = x, critical = y}}")
    thresholds = {}
    for detector, spec in value.items():
        if detector not in INFRASTRUCTURE_DETECTORS:
            raise TypeError(f"has unknown detector {detector!r}; allowed: {', '.join(INFRASTRUCTURE_DETECTORS)}")
        try:
            thresholds[detector] = _threshold(spec, detector, detector)
        except ConfigError as error:
            raise TypeError(f"is wrong: {error}") from None
    return thresholds


# The [kafka] table: where the broker is and how to reach it. Every scalar key can also come from
# the environment as TRIPWIRE_KAFKA_<KEY> (TRIPWIRE_KAFKA_BOOTSTRAP for bootstrap_servers), which wins.
KAFKA_KEYS: KeySpec = {
    "bootstrap_servers": (_servers, "127.0.0.1:9092", "brokers, \"host:port[,host:port]\" (env TRIPWIRE_KAFKA_BOOTSTRAP)"),
    "client_id": (_string, "tripwire", "client id the broker sees"),
    "security_protocol": (_one_of(*SECURITY_PROTOCOLS), "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    "sasl_mechanism": (_one_of(*SASL_MECHANISMS), "PLAIN", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* protocols)"),
    "sasl_username": (_string, None, "SASL user (SASL_* protocols)"),
    "sasl_password": (_string, None, "SASL password; prefer the environment, TRIPWIRE_KAFKA_SASL_PASSWORD"),
    "ssl_cafile": (_string, None, "CA bundle that signed the brokers' certificates (SSL, SASL_SSL)"),
    "ssl_certfile": (_string, None, "client certificate, for brokers that require mutual TLS"),
    "ssl_keyfile": (_string, None, "the client certificate's private key"),
    "ssl_password": (_string, None, "password of ssl_keyfile, if it is encrypted"),
    "ssl_check_hostname": (_bool, True, "verify that the broker's certificate matches its host name"),
    "partitions": (_positive_int, 4, "partitions of the topics tripwire creates (and Faust's topic_partitions)"),
    "replication_factor": (_positive_int, 1, "replication factor of the topics tripwire creates"),
    "create_topics": (_bool, True, "create missing topics at start (else they must exist)"),
    "topics": (_topics, DEFAULT_TOPICS, "[kafka.topics] events, alerts, deadletter, metrics, checkpoints, actions, summaries"),
}

WORKER_STAGES = ("input", "merge")


def _stages(value: Any) -> tuple[str, ...]:
    if type(value) is not list or not value or not all(stage in WORKER_STAGES for stage in value):
        raise TypeError(f"must be a non-empty list of {', '.join(repr(s) for s in WORKER_STAGES)}")
    return tuple(dict.fromkeys(value))


# The [worker] table: the Faust worker's batching, checkpoints and utilization sampling.
WORKER_KEYS: KeySpec = {
    "app_id": (_string, "tripwire", "Faust app id = Kafka consumer group; workers with one id share the partitions"),
    "worker_id": (_string, None, "name in utilization samples and alerts (env TRIPWIRE_WORKER_ID; default host-pid)"),
    "batch_size": (_positive_int, 5000, "most records one fetch hands the engine"),
    "batch_seconds": (_positive_number, 0.1, "longest wait of a fetch for records"),
    "checkpoint_seconds": (_non_negative_number, 5.0, "checkpoint a partition's engine at most this often; 0 = every batch"),
    "checkpoint_records": (_non_negative_int, 0, "also checkpoint once this many records were processed (0 = off)"),
    "max_unpublished": (_positive_int, 10_000, "outputs of a partition awaiting a failed publish's retry before its "
                                               "consumption pauses"),
    "auto_offset_reset": (_one_of("earliest", "latest"), "earliest", "where a new consumer group starts"),
    "session_timeout_seconds": (_positive_number, 30.0, "a worker silent this long (e.g. killed) leaves the group; "
                                                       "its partitions move with their checkpoints"),
    "utilization_seconds": (_positive_number, 5.0, "how often the worker samples CPU, memory, loop lag, consumer lag"),
    "utilization_window_seconds": (_positive_number, 60.0, "how long a utilization signal must stay bad to alert"),
    "thresholds": (_infrastructure_thresholds, {}, "cpu_percent, memory_percent, event_loop_lag_ms, consumer_lag_growth, "
                                                   "unpublished"),
    "web_port": (_non_negative_int, 0, "Faust's web server port; 0 = no web server"),
    "web_bind": (_string, "127.0.0.1", "address the web server listens on; another one (0.0.0.0, a host's address) "
                                       "opts into the network"),
    "web_config": (_string, None, "YAML web config, as Prometheus exporters read: tls_server_config {cert_file, "
                                  "key_file}, basic_auth_users {user: bcrypt hash}; relative to the config file"),
    "web_faust_pages": (_bool, False, "also serve Faust's own pages (/router/, /table/, /graph/, statistics)"),
    "stages": (_stages, WORKER_STAGES, "what this worker runs: \"input\" (partition runners on the events topic), "
                                       "\"merge\" (the sharded models' merge stage); env TRIPWIRE_WORKER_STAGES=merge"),
}



@dataclass(frozen=True)
class WorkerSettings:
    """The ``[worker]`` table, parsed: one field per key of :data:`WORKER_KEYS` (which holds the defaults)."""

    app_id: str
    worker_id: str | None
    batch_size: int
    batch_seconds: float
    checkpoint_seconds: float
    checkpoint_records: int
    max_unpublished: int
    auto_offset_reset: str
    session_timeout_seconds: float
    utilization_seconds: float
    utilization_window_seconds: float
    thresholds: dict[str, Threshold]
    web_port: int
    web_bind: str
    web_config: str | None
    web_faust_pages: bool
    stages: tuple[str, ...]

    @classmethod
    def defaults(cls) -> WorkerSettings:
        return cls(**{key: default for key, (_parser, default, _doc) in WORKER_KEYS.items()})


MONITOR_KEYS: KeySpec = {
    "rejection_window": (_positive_int, 1000, "records per window of the dead-letter rate"),
    "rejection_min_samples": (_positive_int, 100, "minimum records in that window"),
}
