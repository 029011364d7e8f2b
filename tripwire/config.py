"""The monitor's configuration: one TOML file, every key documented with its default.

A wrong key or value raises :class:`ConfigError` naming the key (``models[0].window_events``) and
what is allowed, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

DETECTOR_FAMILIES = ("drift", "quality", "change", "performance", "fairness", "estimated", "serving")
DRIFT_STATISTICS = ("psi", "js", "wasserstein")
CORRECTIONS = ("benjamini-hochberg", "bonferroni", "none")
CHANGE_METHODS = ("adwin", "page_hinkley")


@dataclass(frozen=True)
class Threshold:
    warning: float | None
    critical: float | None
    direction: str = "above"  # "below" for ratios where smaller is worse

    def severity(self, value: float) -> str | None:
        def crossed(limit: float | None) -> bool:
            if limit is None:
                return False
            return value >= limit if self.direction == "above" else value <= limit

        if crossed(self.critical):
            return "critical"
        if crossed(self.warning):
            return "warning"
        return None

    def limit(self, severity: str) -> float | None:
        return self.critical if severity == "critical" else self.warning


# Built-in thresholds per detector. Relative degradations are fractions of the baseline metric.
DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    "psi": Threshold(0.1, 0.25),
    "js": Threshold(0.1, 0.2),
    "wasserstein": Threshold(0.1, 0.3),
    "missing_rate": Threshold(0.05, 0.2),
    "type_error_rate": Threshold(0.01, 0.05),
    "out_of_range_rate": Threshold(0.05, 0.2),
    "unseen_rate": Threshold(0.01, 0.05),
    "mae": Threshold(0.1, 0.25),
    "rmse": Threshold(0.1, 0.25),
    "mape": Threshold(0.1, 0.25),
    "log_loss": Threshold(0.1, 0.25),
    "accuracy": Threshold(0.05, 0.1),
    "precision": Threshold(0.05, 0.1),
    "recall": Threshold(0.05, 0.1),
    "f1": Threshold(0.05, 0.1),
    "macro_precision": Threshold(0.05, 0.1),
    "macro_recall": Threshold(0.05, 0.1),
    "macro_f1": Threshold(0.05, 0.1),
    "weighted_f1": Threshold(0.05, 0.1),
    "roc_auc": Threshold(0.05, 0.1),
    "estimated_accuracy": Threshold(0.05, 0.1),
    "estimated_f1": Threshold(0.05, 0.1),
    "estimated_macro_f1": Threshold(0.05, 0.1),
    "demographic_parity_difference": Threshold(0.1, 0.2),
    "equalized_odds_difference": Threshold(0.1, 0.2),
    "disparate_impact_ratio": Threshold(0.8, 0.6, "below"),
    "latency_p95": Threshold(250.0, 1000.0),
    "latency_p99": Threshold(None, None),
    "throughput_per_s": Threshold(None, None, "below"),
    "adwin": Threshold(1, None),
    "page_hinkley": Threshold(1, None),
    "rejection_rate": Threshold(0.01, 0.05),
    "unmatched_label_rate": Threshold(0.1, 0.5),
    "label_coverage": Threshold(None, None, "below"),
    "cpu_percent": Threshold(85.0, 95.0),
    "memory_percent": Threshold(85.0, 95.0),
    "event_loop_lag_ms": Threshold(250.0, 1000.0),
    "consumer_lag_growth": Threshold(10_000, 100_000),
    "unpublished": Threshold(1, 1000),
}


class ConfigError(ValueError):
    """A configuration problem; the message names the key."""


def _positive_int(value: Any) -> int:
    if type(value) is not int or value <= 0:
        raise TypeError("must be a positive integer")
    return value


def _is_finite_number(value: Any) -> bool:
    """An int or a finite float: TOML allows nan and inf, which no setting means."""
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _non_negative_number(value: Any) -> float:
    if not _is_finite_number(value) or value < 0:
        raise TypeError("must be a number >= 0 and finite")
    return float(value)


def _probability(value: Any) -> float:
    if not _is_finite_number(value) or not 0 < value < 1:
        raise TypeError("must be a number strictly between 0 and 1")
    return float(value)


def _non_negative_int(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise TypeError("must be an integer >= 0")
    return value


def _string(value: Any) -> str:
    if type(value) is not str or not value:
        raise TypeError("must be a non-empty string")
    return value


def _string_list(value: Any) -> tuple[str, ...]:
    if type(value) is not list or not all(type(item) is str for item in value):
        raise TypeError("must be a list of strings")
    return tuple(value)


def _one_of(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise TypeError(f"must be one of {', '.join(repr(a) for a in allowed)}")
        return value

    return check


def _detector_switches(value: Any) -> dict[str, bool]:
    if type(value) is not dict:
        raise TypeError(f"must be a table of {', '.join(DETECTOR_FAMILIES)} = true|false")
    for name, on in value.items():
        if name not in DETECTOR_FAMILIES:
            raise TypeError(f"has unknown detector family {name!r}; allowed: {', '.join(DETECTOR_FAMILIES)}")
        if type(on) is not bool:
            raise TypeError(f"{name} must be true or false")
    return dict(value)


# Metrics a performance window computes, per kind of model (the engine's windows and baselines).
PERFORMANCE_METRICS = {
    "regression": ("mae", "rmse", "mape"),
    "classification": ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"),
    "multiclass": ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "roc_auc", "log_loss"),
}
PER_CLASS_METRICS = ("precision", "recall", "f1")  # multi-class: METRIC:CLASS, one-vs-rest
CHANGE_STREAMS = ("error", "score", "prediction")  # and feature:NAME
# Signals a model's alerts carry: these, and PREFIX:NAME for each of NAMED_SIGNALS.
PLAIN_SIGNALS = ("prediction", "score", "serving")
NAMED_SIGNALS = ("feature", "score", "change", "performance", "estimated", "fairness")


def _performance_metrics(value: Any) -> tuple[str, ...]:
    metrics = _string_list(value)
    known = sorted({m for kind in PERFORMANCE_METRICS.values() for m in kind})
    for metric in metrics:
        base, _, per_class = metric.partition(":")
        if metric not in known and not (base in PER_CLASS_METRICS and per_class):
            raise TypeError(f"has unknown metric {metric!r}; allowed: {', '.join(known)}, "
                            f"multi-class {', '.join(f'{m}:CLASS' for m in PER_CLASS_METRICS)}")
    return metrics


def _metric_of(metric: str, kind: str | None, classes: list[str]) -> bool:
    """Whether a model of ``kind`` (with ``classes``) computes ``metric``."""
    base, _, per_class = metric.partition(":")
    if per_class:
        return kind == "multiclass" and base in PER_CLASS_METRICS and per_class in classes
    return metric in PERFORMANCE_METRICS.get(kind or "", ())


def _change_streams(value: Any) -> tuple[str, ...]:
    streams = _string_list(value)
    for stream in streams:
        if stream not in CHANGE_STREAMS and not (stream.startswith("feature:") and stream != "feature:"):
            raise TypeError(f"has unknown stream {stream!r}; allowed: {', '.join(CHANGE_STREAMS)}, feature:NAME")
    return streams


# key -> (parser, default, description). The README's configuration table mirrors this.
MODEL_KEYS: dict[str, tuple[Callable[[Any], Any], Any, str]] = {
    "window_events": (_positive_int, 1000, "events (predictions + features) per data window"),
    "window_seconds": (_non_negative_number, 0.0, "event-time length of a data window, aligned to the epoch; 0 = count only"),
    "performance_window": (_positive_int, 1000, "labelled outcomes per performance / fairness window"),
    "label_ttl_seconds": (_non_negative_number, 7 * 24 * 3600.0, "how long a prediction waits for its label (event time)"),
    "label_join_max_pending": (_positive_int, 100_000, "predictions (and labels) waiting in the label join; the oldest "
                                                       "is evicted past it"),
    "allowed_lateness_seconds": (_non_negative_number, 3600.0, "how far behind the model's event time a record may "
                                                               "be and still count (in the open window)"),
    # (_positive_number is defined with the other tables' parsers, below)
    "max_future_seconds": (lambda value: _positive_number(value), 86400.0,
                           "how far ahead of the model's event time a record may be"),
    "min_samples": (_positive_int, 100, "a window with fewer samples never changes an alert"),
    "cooldown_windows": (_non_negative_int, 0, "windows after a resolve before the same signal may fire again"),
    "resolve_windows": (_positive_int, 2, "consecutive good windows before a firing alert resolves"),
    "drift_statistic": (_one_of(*DRIFT_STATISTICS), "psi", "effect size that drift alerts compare to the threshold"),
    "drift_alpha": (_probability, 0.01, "significance (KS / chi-square) a drift must also reach, after correction"),
    "drift_correction": (_one_of(*CORRECTIONS), "benjamini-hochberg", "multiple-testing correction across a model's features per window"),
    "change_method": (_one_of(*CHANGE_METHODS), "adwin", "river detector for change streams"),
    "change_streams": (_change_streams, ("error",), "streams watched for change: error, score, prediction, feature:NAME"),
    "attributes": (_string_list, None, "attributes for fairness (default: the reference's attributes)"),
    "positive_class": (lambda v: v, None, "positive class for classification (default: the reference's); "
                                          "multi-class: the class fairness looks at, one-vs-rest"),
    "performance_metrics": (_performance_metrics, None, "metrics that alert (default: mae, rmse / accuracy, f1, roc_auc / "
                                                "multi-class accuracy, macro_f1, roc_auc)"),
    "detectors": (_detector_switches, {}, "detector families on/off, all on by default"),
    "thresholds": (lambda v: v, {}, "per detector: {warning = x, critical = y} overriding the built-in defaults"),
    "signals": (lambda v: v, {}, "per signal (e.g. \"feature:weight\"): enabled = false and/or per-detector thresholds"),
    "sharded": (lambda value: _bool(value), False, "spread over every input partition, keyed by request_id: "
                                                   "per-partition window summaries merged once (needs window_seconds)"),
}


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise TypeError("must be true or false")
    return value


def _positive_number(value: Any) -> float:
    if not _is_finite_number(value) or value <= 0:
        raise TypeError("must be a number > 0 and finite")
    return float(value)


# The [mlflow] table: where references resolve and where the monitor reports window metrics.
MLFLOW_KEYS: dict[str, tuple[Callable[[Any], Any], Any, str]] = {
    "tracking_uri": (_string, None, "MLflow tracking URI (default: MLFLOW_TRACKING_URI, else MLflow's own default)"),
    "experiment": (_string, "tripwire-monitoring", "experiment of the monitoring runs (one run per model version)"),
    "report": (_bool, False, "log window statistics and alerts to MLflow"),
    "flush_windows": (_positive_int, 10, "windows buffered before a log_batch call (and at close)"),
    "buffer_windows": (_positive_int, 10_000, "windows kept while MLflow is unreachable; the oldest are dropped past it"),
    "alias_check_seconds": (_positive_number, 60.0, "how often the worker checks whether a models:/NAME@ALIAS moved"),
}

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
KAFKA_KEYS: dict[str, tuple[Callable[[Any], Any], Any, str]] = {
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

# The [worker] table: the Faust worker's batching, checkpoints and utilization sampling.
WORKER_KEYS: dict[str, tuple[Callable[[Any], Any], Any, str]] = {
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
}

MONITOR_KEYS: dict[str, tuple[Callable[[Any], Any], Any, str]] = {
    "rejection_window": (_positive_int, 1000, "records per window of the dead-letter rate"),
    "rejection_min_samples": (_positive_int, 100, "minimum records in that window"),
}


@dataclass
class ModelConfig:
    name: str
    reference: str
    window_events: int = 1000
    window_seconds: float = 0.0
    performance_window: int = 1000
    label_ttl_seconds: float = 7 * 24 * 3600.0
    label_join_max_pending: int = 100_000
    allowed_lateness_seconds: float = 3600.0
    max_future_seconds: float = 86400.0
    min_samples: int = 100
    cooldown_windows: int = 0
    resolve_windows: int = 2
    drift_statistic: str = "psi"
    drift_alpha: float = 0.01
    drift_correction: str = "benjamini-hochberg"
    change_method: str = "adwin"
    change_streams: tuple[str, ...] = ("error",)
    attributes: tuple[str, ...] | None = None
    positive_class: Any = None
    performance_metrics: tuple[str, ...] | None = None
    detectors: dict[str, bool] = field(default_factory=dict)
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    sharded: bool = False

    def enabled(self, family: str, signal: str | None = None) -> bool:
        if not self.detectors.get(family, True):
            return False
        return signal is None or self.signals.get(signal, {}).get("enabled", True)

    def threshold(self, detector: str, signal: str) -> Threshold:
        """Per-signal override, else per-model override, else the built-in default.

        A per-class metric of a multi-class model (``recall:billing``) has its metric's
        thresholds (``recall``) unless they are set for it.
        """
        per_signal = self.signals.get(signal, {}).get(detector)
        if per_signal is not None:
            return per_signal
        per_model = self.thresholds.get(detector)
        if per_model is not None:
            return per_model
        metric, _, per_class = detector.partition(":")
        if per_class and detector not in DEFAULT_THRESHOLDS:
            return self.threshold(metric, signal)
        return DEFAULT_THRESHOLDS[detector]


@dataclass
class MonitorConfig:
    models: list[ModelConfig]
    rejection_window: int = 1000
    rejection_min_samples: int = 100
    kafka: dict[str, Any] = field(default_factory=lambda: {k: d for k, (_p, d, _doc) in KAFKA_KEYS.items()})
    worker: dict[str, Any] = field(default_factory=lambda: {k: d for k, (_p, d, _doc) in WORKER_KEYS.items()})
    mlflow: dict[str, Any] = field(default_factory=lambda: {k: d for k, (_p, d, _doc) in MLFLOW_KEYS.items()})
    capacity: dict[str, Any] = field(default_factory=dict)  # [capacity], see tripwire.compute.settings
    sinks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # [sinks], see tripwire.sinks.config
    retrain: dict[str, Any] | None = None  # [retrain], see tripwire.retrain; None = no retraining trigger
    source: Path | None = None

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)


def load_config(path: str | Path) -> MonitorConfig:
    """Read and validate a TOML file; relative reference paths resolve against the file's folder."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}); a configuration is a TOML file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the configuration: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    config = parse_config(data, where=str(path))
    config.source = path
    for model in config.models:
        if "://" not in model.reference and not model.reference.startswith(("runs:", "models:")):
            model.reference = str((path.parent / model.reference).resolve())
    if config.worker["web_config"]:
        config.worker["web_config"] = str((path.parent / config.worker["web_config"]).resolve())
    return config


def parse_config(data: dict[str, Any], where: str = "config") -> MonitorConfig:
    allowed = {"models", "defaults", "monitor", "kafka", "mlflow", "worker", "capacity", "sinks", "retrain"}
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown top-level key {key!r}; allowed: {', '.join(sorted(allowed))}")
    models_raw = data.get("models")
    if not isinstance(models_raw, list) or not models_raw:
        raise ConfigError(f"{where}: 'models' must be a non-empty array of tables ([[models]] with name and reference)")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{where}: 'defaults' must be a table")
    _check_model_keys(defaults, f"{where}: defaults", allow_identity=False)

    models = []
    for index, raw in enumerate(models_raw):
        label = f"{where}: models[{index}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{label} must be a table")
        _check_model_keys(raw, label, allow_identity=True)
        for required in ("name", "reference"):
            if required not in raw:
                raise ConfigError(f"{label}.{required} is required")
        merged = {**defaults, **raw}
        for table in ("thresholds", "signals", "detectors"):
            merged[table] = {**_table(defaults.get(table, {}), f"{where}: defaults.{table}"),
                             **_table(raw.get(table, {}), f"{label}.{table}")}
        models.append(_model(merged, label))
    names = [m.name for m in models]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{where}: models[].name must be unique; repeated: {', '.join(duplicated)}")

    monitor_raw = _table(data.get("monitor", {}), f"{where}: monitor")
    monitor = {}
    for key, value in monitor_raw.items():
        if key not in MONITOR_KEYS:
            raise ConfigError(f"{where}: monitor.{key}: unknown key; allowed: {', '.join(MONITOR_KEYS)}")
        monitor[key] = _parse(MONITOR_KEYS[key][0], value, f"{where}: monitor.{key}")
    mlflow = _table_with_defaults(data.get("mlflow", {}), MLFLOW_KEYS, "mlflow", where)
    kafka = _table_with_defaults(data.get("kafka", {}), KAFKA_KEYS, "kafka", where)
    worker = _table_with_defaults(data.get("worker", {}), WORKER_KEYS, "worker", where)
    from tripwire.compute.settings import capacity_table  # they build on this module's parsers
    from tripwire.retrain import parse_retrain
    from tripwire.sinks.config import parse_sinks

    capacity = capacity_table(data.get("capacity", {}), where)
    sinks = parse_sinks(data.get("sinks", {}), where)
    retrain = parse_retrain(data["retrain"], names, where) if "retrain" in data else None
    return MonitorConfig(models=models, kafka=kafka, mlflow=mlflow, worker=worker, capacity=capacity, sinks=sinks,
                         retrain=retrain, **monitor)


def check_references(config: MonitorConfig, references: dict[str, dict[str, Any]]) -> None:
    """Names the configuration gives that its models' references do not know: a :class:`ConfigError`.

    A feature, metric, attribute or class that is not there would silently switch a detector off;
    call this at start-up, once the references are loaded.
    """
    where = str(config.source) if config.source is not None else "config"
    for index, model in enumerate(config.models):
        reference = references.get(model.name)
        if reference is None:
            continue
        label = f"{where}: models[{index}] ({model.name}, reference {model.reference})"
        features = reference.get("features") or {}
        kind = str(reference.get("task"))
        if kind == "classification" and len(reference.get("classes") or ()) > 2:
            kind = "multiclass"
        metrics = PERFORMANCE_METRICS.get(kind, ())
        if model.sharded and kind == "multiclass":
            raise ConfigError(f"{label}.sharded: a multi-class model cannot be sharded yet (binary classification "
                              f"and regression can)")
        classes = [str(c) for c in reference.get("classes") or ()]
        known_attributes = tuple(reference.get("attributes") or ())
        attributes = model.attributes if model.attributes is not None else known_attributes

        def unknown(key: str, name: str, allowed: Any, label: str = label) -> ConfigError:
            return ConfigError(f"{label}.{key}: {name!r} is not in the reference; allowed: "
                               f"{', '.join(map(str, allowed)) or 'none'}")

        if model.positive_class is not None and kind in ("classification", "multiclass"):
            from tripwire.classes import ClassSet  # (validated by the reference's own check)

            class_set = ClassSet(reference["classes"])
            if class_set.canonical(model.positive_class) is None:
                raise ConfigError(f"{label}.positive_class {model.positive_class!r} is not one of the reference's "
                                  f"classes {class_set.describe()}")
        for metric in model.performance_metrics or ():
            if not _metric_of(metric, kind, classes):
                raise unknown("performance_metrics", metric, metrics)
        for stream in model.change_streams:
            if stream.startswith("feature:") and stream.removeprefix("feature:") not in features:
                raise unknown("change_streams", stream, [f"feature:{n}" for n in features])
        if known_attributes:  # a reference built without attributes cannot tell
            for attribute in model.attributes or ():
                if attribute not in known_attributes:
                    raise unknown("attributes", attribute, known_attributes)
        named = {"feature": list(features), "performance": metrics, "estimated": metrics, "fairness": attributes,
                 "change": model.change_streams, "score": classes}
        for signal in model.signals:
            prefix, _, name = signal.partition(":")
            if prefix in ("performance", "estimated") and _metric_of(name, kind, classes):
                continue
            if name and name not in named[prefix]:
                raise unknown(f"signals.{signal!r}", signal, [f"{prefix}:{n}" for n in named[prefix]])


def _table_with_defaults(raw: Any, keys: dict[str, tuple[Callable[[Any], Any], Any, str]], name: str,
                         where: str) -> dict[str, Any]:
    """A settings table ([kafka], [worker]) with every key present, defaults filled in."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: '{name}' must be a table")
    values = {key: default for key, (_parser, default, _doc) in keys.items()}
    for key, value in raw.items():
        if key not in keys:
            raise ConfigError(f"{where}: {name}.{key}: unknown key; allowed: {', '.join(keys)}")
        values[key] = _parse(keys[key][0], value, f"{where}: {name}.{key}")
    return values


def _check_model_keys(raw: dict[str, Any], label: str, *, allow_identity: bool) -> None:
    allowed = set(MODEL_KEYS) | ({"name", "reference"} if allow_identity else set())
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{label}.{key}: unknown key; allowed: {', '.join(sorted(allowed))}")


def _parse(parser: Callable[[Any], Any], value: Any, label: str) -> Any:
    try:
        return parser(value)
    except TypeError as error:
        raise ConfigError(f"{label} {error}, got {value!r}") from None


def _model(raw: dict[str, Any], label: str) -> ModelConfig:
    values: dict[str, Any] = {
        "name": _parse(_string, raw["name"], f"{label}.name"),
        "reference": _parse(_string, raw["reference"], f"{label}.reference"),
    }
    for key, (parser, _default, _doc) in MODEL_KEYS.items():
        if key in raw and key not in ("thresholds", "signals"):
            values[key] = _parse(parser, raw[key], f"{label}.{key}")
    values["thresholds"] = {
        detector: _threshold(spec, detector, f"{label}.thresholds.{detector}")
        for detector, spec in _table(raw["thresholds"], f"{label}.thresholds").items()
    }
    signals: dict[str, dict[str, Any]] = {}
    for signal, spec in _table(raw["signals"], f"{label}.signals").items():
        where = f"{label}.signals.{signal!r}"
        _signal(signal, where)
        parsed: dict[str, Any] = {}
        for key, value in _table(spec, where).items():
            if key == "enabled":
                if type(value) is not bool:
                    raise ConfigError(f"{where}.enabled must be true or false, got {value!r}")
                parsed[key] = value
            else:
                parsed[key] = _threshold(value, key, f"{where}.{key}")
        signals[signal] = parsed
    values["signals"] = signals
    model = ModelConfig(**values)
    if model.sharded:
        # A sharded model's windows are merged across partitions: only event-time windows line up.
        if not model.window_seconds:
            raise ConfigError(f"{label}.sharded = true needs window_seconds > 0 (event-time windows merge across "
                              f"partitions; count windows do not)")
        per_event = [s for s in model.change_streams if s != "error"]
        if per_event:
            raise ConfigError(f"{label}.change_streams {per_event} cannot be watched on a sharded model (its "
                              f"events are spread over partitions); only 'error', fed the merged window's error")
    return model


def _table(value: Any, label: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{label} must be a table, got {value!r}")
    return value


def _signal(name: str, label: str) -> None:
    """A key of [signals] must have the form of a signal the engine raises (``PLAIN_SIGNALS``, ``NAMED_SIGNALS``)."""
    if name in PLAIN_SIGNALS or (name.partition(":")[0] in NAMED_SIGNALS and name.partition(":")[2]):
        return
    raise ConfigError(f"{label}: unknown signal {name!r}; allowed: {', '.join(PLAIN_SIGNALS)}, "
                      f"{', '.join(f'{prefix}:NAME' for prefix in NAMED_SIGNALS)}")


def _threshold(spec: Any, detector: str, label: str) -> Threshold:
    if detector not in DEFAULT_THRESHOLDS:
        raise ConfigError(f"{label}: unknown detector {detector!r}; allowed: {', '.join(DEFAULT_THRESHOLDS)}")
    spec = _table(spec, label)
    base = DEFAULT_THRESHOLDS[detector]
    for key, value in spec.items():
        if key not in ("warning", "critical"):
            raise ConfigError(f"{label}.{key}: unknown key; allowed: warning, critical")
        if value is not False and not _is_finite_number(value):
            raise ConfigError(f"{label}.{key} must be a finite number (or false to switch that level off), "
                              f"got {value!r}")
    def level(key: str) -> float | None:
        value = spec.get(key, base.warning if key == "warning" else base.critical)
        return None if value is False else value

    threshold = Threshold(level("warning"), level("critical"), base.direction)
    warning, critical = threshold.warning, threshold.critical
    # Critical must be the worse level, else a value past it is critical before it is ever a warning.
    if warning is not None and critical is not None and (
            warning > critical if base.direction == "above" else warning < critical):
        order = "at most" if base.direction == "above" else "at least"
        raise ConfigError(f"{label}: warning {warning} must be {order} critical {critical} ({detector} alerts on "
                          f"values {base.direction} the limit; set both levels if you move one)")
    return threshold
