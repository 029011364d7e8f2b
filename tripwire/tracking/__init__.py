"""MLflow: log a reference at training time, resolve it at monitoring time, report windows back.

Three pieces, one per moment of a model's life:

- training: :func:`log_reference` profiles the training / validation rows (or takes a built
  reference) and logs it to the run as the artifact ``tripwire/reference.json``, with the baseline
  metrics as run metrics (``baseline_mae``, ...);
- monitoring: :func:`resolve_reference` reads ``runs:/<id>[/path]``, ``models:/<name>/<version>``
  and ``models:/<name>@<alias>``; :class:`AliasWatcher` notices when an alias moves to another
  version, and ``Engine.replace_reference`` starts fresh detectors for it;
- reporting: :class:`MlflowReporter` logs every window's statistics to one monitoring run per
  model version (step = window index, timestamp = event time) and the alerts as ``alerts.jsonl``.

Every runner resolves its references with :func:`resolve_config` before it builds the engine, which
takes them resolved and never imports this module. MLflow is imported lazily, so a configuration
without MLflow URIs never pays for it. The
reporter never raises into its caller: when MLflow is unreachable it keeps a bounded buffer and
retries with exponential backoff.

The package: :mod:`~tripwire.tracking.references` (logging and resolving references),
:mod:`~tripwire.tracking.aliases` (the alias watcher), :mod:`~tripwire.tracking.reporter` (the reporter).
"""

from tripwire.reference import is_mlflow_uri
from tripwire.tracking.aliases import AliasWatcher, ReferenceChange
from tripwire.tracking.references import (
    ResolvedReference,
    log_reference,
    resolve,
    resolve_config,
    resolve_reference,
    tag_model_version,
)
from tripwire.tracking.reporter import MlflowReporter, metric_key, window_metrics

__all__ = [
    "AliasWatcher", "MlflowReporter", "ReferenceChange", "ResolvedReference", "is_mlflow_uri", "log_reference",
    "metric_key", "resolve", "resolve_config", "resolve_reference", "tag_model_version", "window_metrics",
]
