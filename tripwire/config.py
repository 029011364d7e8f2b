"""The monitor's configuration: one TOML file, every key documented with its default.

A wrong key or value raises :class:`ConfigError` naming the key (``models[0].window_events``) and
what is allowed, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tripwire.config_tables import KAFKA_KEYS, MLFLOW_KEYS, MONITOR_KEYS, WORKER_KEYS, MlflowSettings, WorkerSettings
from tripwire.config_values import (
    ConfigError,
    KeySpec,
    _bool,
    _non_negative_int,
    _non_negative_number,
    _one_of,
    _parse,
    _positive_int,
    _positive_number,
    _probability,
    _string,
    _string_list,
    _table,
    _table_with_defaults,
    _threshold,
)
from tripwire.detectors import registry
from tripwire.thresholds import DEFAULT_THRESHOLDS, Threshold

# The names other modules import from here, though they are defined in the modules above.
__all__ = ["DEFAULT_THRESHOLDS", "KAFKA_KEYS", "MLFLOW_KEYS", "MODEL_KEYS", "MONITOR_KEYS", "WORKER_KEYS",
           "ConfigError", "MlflowSettings", "ModelConfig", "MonitorConfig", "Threshold", "WorkerSettings", "check_references",
           "load_config", "parse_config"]

DRIFT_STATISTICS = ("psi", "js", "wasserstein")
CORRECTIONS = ("benjamini-hochberg", "bonferroni", "none")
CHANGE_METHODS = ("adwin", "page_hinkley")

def _detector_switches(value: Any) -> dict[str, bool]:
    if type(value) is not dict:
        raise TypeError(f"must be a table of {', '.join(registry.family_names())} = true|false")
    for name, on in value.items():
        if name not in registry.family_names():
            raise TypeError(f"has unknown detector family {name!r}; allowed: {', '.join(registry.family_names())}")
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
MODEL_KEYS: KeySpec = {
    "window_events": (_positive_int, 1000, "events (predictions + features) per data window"),
    "window_seconds": (_non_negative_number, 0.0, "event-time length of a data window, aligned to the epoch; 0 = count only"),
    "performance_window": (_positive_int, 1000, "labelled outcomes per performance / fairness window"),
    "label_ttl_seconds": (_non_negative_number, 7 * 24 * 3600.0, "how long a prediction waits for its label (event time)"),
    "label_join_max_pending": (_positive_int, 100_000, "predictions (and labels) waiting in the label join; the oldest "
                                                       "is evicted past it"),
    "allowed_lateness_seconds": (_non_negative_number, 3600.0, "how far behind the model's event time a record may "
                                                               "be and still count (in the open window)"),
    "max_future_seconds": (_positive_number, 86400.0, "how far ahead of the model's event time a record may be"),
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
    "sharded": (_bool, False, "spread over every input partition, keyed by request_id: "
                               "per-partition window summaries merged once (needs window_seconds)"),
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
        return registry.default_threshold(detector)


@dataclass
class MonitorConfig:
    models: list[ModelConfig]
    rejection_window: int = 1000
    rejection_min_samples: int = 100
    kafka: dict[str, Any] = field(default_factory=lambda: {k: d for k, (_p, d, _doc) in KAFKA_KEYS.items()})
    worker: WorkerSettings = field(default_factory=WorkerSettings.defaults)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings.defaults)
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
    if config.worker.web_config:
        config.worker = replace(config.worker, web_config=str((path.parent / config.worker.web_config).resolve()))
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
    mlflow = MlflowSettings(**_table_with_defaults(data.get("mlflow", {}), MLFLOW_KEYS, "mlflow", where))
    kafka = _table_with_defaults(data.get("kafka", {}), KAFKA_KEYS, "kafka", where)
    worker = WorkerSettings(**_table_with_defaults(data.get("worker", {}), WORKER_KEYS, "worker", where))
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
            if name and prefix in named and name not in named[prefix]:  # a registered family's: any name
                raise unknown(f"signals.{signal!r}", signal, [f"{prefix}:{n}" for n in named[prefix]])


def _check_model_keys(raw: dict[str, Any], label: str, *, allow_identity: bool) -> None:
    allowed = set(MODEL_KEYS) | ({"name", "reference"} if allow_identity else set())
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{label}.{key}: unknown key; allowed: {', '.join(sorted(allowed))}")


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



def _signal(name: str, label: str) -> None:
    """A key of [signals] must have the form of a signal the engine raises (see :mod:`tripwire.detectors.registry`)."""
    prefixes = registry.signal_prefixes()
    if name in registry.PLAIN_SIGNALS or (name.partition(":")[0] in prefixes and name.partition(":")[2]):
        return
    raise ConfigError(f"{label}: unknown signal {name!r}; allowed: {', '.join(registry.PLAIN_SIGNALS)}, "
                      f"{', '.join(f'{prefix}:NAME' for prefix in prefixes)}")
