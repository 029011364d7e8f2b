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
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import orjson

from tripwire.config import check_references
from tripwire.reference import (
    ReferenceError,
    build_reference,
    dumps_reference,
    is_mlflow_uri,
    load_reference,
    validate_reference,
)
from tripwire.sinks.delivery import DeliveryRunner, short_error

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from mlflow import MlflowClient

    from tripwire.config import MonitorConfig
    from tripwire.engine import Engine

log = logging.getLogger("tripwire.tracking")

ARTIFACT_DIR = "tripwire"
ARTIFACT_PATH = "tripwire/reference.json"
ALERTS_ARTIFACT = "alerts.jsonl"
DEFAULT_EXPERIMENT = "tripwire-monitoring"
_MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))/?$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)(?:/(?P<path>.*))?$")


# -- training time ----------------------------------------------------------------------------
def log_reference(data: pd.DataFrame | dict[str, Any], run_id: str | None = None, *, tracking_uri: str | None = None,
                  **build: Any) -> str:
    """Log a reference profile and its baseline metrics to an MLflow run; return its ``runs:/`` URI.

    ``data`` is either a built reference (from :func:`tripwire.reference.build_reference`) or the
    training / validation DataFrame with the model's predictions, in which case the keyword
    arguments are those of ``build_reference`` (``model``, ``task``, ``target``, ``prediction``, ...).
    ``run_id`` defaults to the active run (``mlflow.start_run()``).

    The profile goes to the artifact ``tripwire/reference.json``; every baseline metric becomes a
    run metric ``baseline_<metric>``; the tags ``tripwire.model`` and ``tripwire.reference`` say
    what was logged.
    """
    import mlflow
    from mlflow.entities import Metric, RunTag

    if isinstance(data, dict) and build:
        raise TypeError("build_reference arguments are only accepted with a DataFrame, not with a built reference")
    reference = data if isinstance(data, dict) else build_reference(data, **build)
    validate_reference(reference, "reference")
    if run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise ValueError("no run_id given and no active MLflow run (call inside mlflow.start_run())")
        run_id = active.info.run_id
        tracking_uri = tracking_uri or mlflow.get_tracking_uri()
    client = _client(tracking_uri)
    client.log_text(run_id, dumps_reference(reference).decode(), ARTIFACT_PATH)
    now = int(time.time() * 1000)
    # metric_key: a multi-class baseline's per-class names ("recall:billing") hold characters MLflow refuses.
    metrics = [Metric(metric_key(f"baseline_{name}"), float(value), now, 0)
               for name, value in reference["baseline"].items() if _finite(value)]
    uri = f"runs:/{run_id}/{ARTIFACT_PATH}"
    tags = [RunTag("tripwire.model", str(reference["model"])), RunTag("tripwire.reference", uri)]
    client.log_batch(run_id, metrics=metrics, tags=tags)
    return uri


# -- monitoring time: resolving ---------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedReference:
    """A reference document and where it came from."""

    uri: str  # what was asked for: a file, runs:/..., models:/...@alias
    reference: dict[str, Any]
    pinned_uri: str  # the exact source: the file, runs:/<id>/<path>, or models:/<name>/<version>
    run_id: str | None = None
    model_name: str | None = None  # registered model
    model_version: str | None = None


def resolve_reference(uri: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """The reference document behind an MLflow URI (or a file).

    ``runs:/<id>`` and ``runs:/<id>/tripwire`` mean ``runs:/<id>/tripwire/reference.json``;
    ``models:/<name>/<version>`` and ``models:/<name>@<alias>`` read the reference of the run that
    produced that model version. ``tracking_uri`` defaults to ``MLFLOW_TRACKING_URI``.
    """
    return resolve(uri, tracking_uri).reference


def resolve(uri: str, tracking_uri: str | None = None, client: MlflowClient | None = None) -> ResolvedReference:
    """Like :func:`resolve_reference`, also saying which run and model version it came from."""
    uri = str(uri)
    if not is_mlflow_uri(uri):
        return ResolvedReference(uri, load_reference(uri), uri)
    client = client or _client(tracking_uri)
    runs = _RUNS_URI.match(uri)
    if runs:
        run_id, path = runs["run_id"], _artifact_path(runs["path"])
        return ResolvedReference(uri, _download_reference(client, run_id, path, uri), f"runs:/{run_id}/{path}", run_id)
    models = _MODELS_URI.match(uri)
    if not models:
        raise ReferenceError(f"{uri}: not a reference URI; use runs:/<run id>[/path], models:/<name>/<version> "
                             f"or models:/<name>@<alias>")
    name = models["name"]
    version = _model_version(client, name, models["version"], models["alias"], uri)
    return _resolve_version(client, name, version, uri)


def _resolve_version(client: MlflowClient, name: str, version: Any, uri: str) -> ResolvedReference:
    run_id = version.run_id
    if not run_id:
        raise ReferenceError(f"{uri}: version {version.version} of {name!r} was not logged from a run, so it has no "
                             f"tripwire reference; log one with tripwire.tracking.log_reference")
    reference = _download_reference(client, run_id, ARTIFACT_PATH, uri)
    return ResolvedReference(uri, reference, f"models:/{name}/{version.version}", run_id, name, str(version.version))


def _artifact_path(path: str | None) -> str:
    path = (path or "").strip("/")
    if not path or path == ARTIFACT_DIR:
        return ARTIFACT_PATH
    return path if path.endswith(".json") else f"{path}/reference.json"


def _model_version(client: MlflowClient, name: str, version: str | None, alias: str | None, uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        assert version is not None  # _MODELS_URI names a version when it names no alias
        return client.get_model_version(name, version)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            what = f"alias {alias!r}" if alias is not None else f"version {version}"
            raise ReferenceError(f"{uri}: registered model {name!r} has no {what} ({error.message})") from None
        raise


def _download_reference(client: MlflowClient, run_id: str, path: str, uri: str) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="tripwire-reference-") as folder, _quiet_downloads():
        try:
            local = client.download_artifacts(run_id, path, folder)
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                raise ReferenceError(f"{uri}: run {run_id} has no artifact {path!r} (log the reference with "
                                     f"`tripwire reference log --run-id {run_id} ...`)") from None
            raise
        try:
            document = orjson.loads(Path(local).read_bytes())
        except orjson.JSONDecodeError as error:
            raise ReferenceError(f"{uri}: not valid JSON: {error}") from None
    return validate_reference(document, uri)


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No tqdm bar per reference download, unless the user asked for MLflow's bars explicitly."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if key in os.environ:
        yield
        return
    os.environ[key] = "false"
    try:
        yield
    finally:
        os.environ.pop(key, None)


def resolve_config(config: MonitorConfig) -> dict[str, ResolvedReference]:
    """Resolve every model's reference with the config's ``[mlflow] tracking_uri``.

    Use it to build the engine and the alias watcher from the same resolution::

        resolved = resolve_config(config)
        engine = Engine(config, references={name: r.reference for name, r in resolved.items()})
        watcher = AliasWatcher.for_config(config, resolved)
    """
    tracking_uri = (config.mlflow or {}).get("tracking_uri")
    client = None
    resolved = {}
    for model in config.models:
        if is_mlflow_uri(model.reference) and client is None:
            client = _client(tracking_uri)
        resolved[model.name] = resolve(model.reference, tracking_uri, client)
    check_references(config, {name: r.reference for name, r in resolved.items()})  # before any work starts
    return resolved


def tag_model_version(uri: str, key: str, value: str, version: str | None = None,
                      tracking_uri: str | None = None) -> str | None:
    """Set a tag on the registered model version behind a ``models:/`` reference; returns that version.

    ``models:/<name>/<version>`` names it; for ``models:/<name>@<alias>`` it is ``version`` when
    given (the version the monitor saw), else the alias's current one. Any other URI: None, no tag.
    """
    match = _MODELS_URI.match(str(uri))
    if not match:
        return None
    client = _client(tracking_uri)
    name = match["name"]
    version = match["version"] or version or client.get_model_version_by_alias(name, match["alias"]).version
    client.set_model_version_tag(name, str(version), key, value)
    return str(version)


# -- monitoring time: watching aliases --------------------------------------------------------
@dataclass(frozen=True)
class ReferenceChange:
    """An alias now points at another model version; ``reference`` is that version's profile."""

    model: str  # the monitored model (as named in the config and the events)
    alias_uri: str  # models:/<name>@<alias>
    uri: str  # models:/<name>/<version>, the pinned reference
    version: str
    previous_version: str | None
    run_id: str
    reference: dict[str, Any]


class AliasWatcher:
    """Notices when a ``models:/<name>@<alias>`` reference moves to another model version.

    :meth:`check` is synchronous and cheap: before ``interval_seconds`` have passed since the last
    look it returns ``[]`` without any I/O; then it asks the registry once per alias, and downloads a
    reference only for an alias that moved. From asyncio (e.g. a Faust timer)::

        changes = await loop.run_in_executor(None, watcher.check)
        for event in watcher.apply(engine, changes):   # on the loop, between events
            await alerts_topic.send(key=event["model"], value=event)

    A registry that cannot be reached, or a new version without a tripwire reference, is logged as
    a warning and the current reference stays; the next check tries again.
    """

    def __init__(self, aliases: Mapping[str, str], *, tracking_uri: str | None = None, interval_seconds: float = 60.0,
                 versions: Mapping[str, str | None] | None = None, clock: Callable[[], float] = time.monotonic,
                 client: MlflowClient | None = None) -> None:
        for model, uri in aliases.items():
            match = _MODELS_URI.match(uri)
            if not match or match["alias"] is None:
                raise ValueError(f"{model}: {uri!r} is not a models:/<name>@<alias> URI")
        self.aliases = dict(aliases)
        self.tracking_uri = tracking_uri
        self.interval_seconds = float(interval_seconds)
        self.versions: dict[str, str | None] = {m: (versions or {}).get(m) for m in aliases}
        self._clock = clock
        self._client = client
        self._next_check = clock()  # the first check is due at once
        self._baseline = {m for m, v in self.versions.items() if v is not None}
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    @classmethod
    def for_config(cls, config: MonitorConfig, resolved: Mapping[str, ResolvedReference] | None = None,
                   **kwargs: Any) -> AliasWatcher | None:
        """A watcher for every model whose reference is an alias, or None when there is none.

        ``resolved`` (from :func:`resolve_config`) gives the versions the engine started with, so a
        move between start-up and the first check is still reported.
        """
        settings = config.mlflow or {}
        aliases = {m.name: m.reference for m in config.models
                   if (match := _MODELS_URI.match(m.reference)) and match["alias"] is not None}
        if not aliases:
            return None
        versions = {name: resolved[name].model_version for name in aliases if resolved and name in resolved}
        kwargs.setdefault("tracking_uri", settings.get("tracking_uri"))
        kwargs.setdefault("interval_seconds", settings.get("alias_check_seconds", 60.0))
        return cls(aliases, versions=versions, **kwargs)

    def due(self) -> bool:
        return self._clock() >= self._next_check

    def check(self, force: bool = False) -> list[ReferenceChange]:
        """The aliases that moved since the last check (none before the interval is up, unless forced)."""
        with self._lock:
            if not force and not self.due():
                return []
            self._next_check = self._clock() + self.interval_seconds
            changes = []
            for model, uri in self.aliases.items():
                change = self._check_one(model, uri)
                if change is not None:
                    changes.append(change)
            return changes

    def _check_one(self, model: str, uri: str) -> ReferenceChange | None:
        match = _MODELS_URI.match(uri)
        if match is None:
            raise ValueError(f"model {model}: {uri!r} is not a models:/<name>/<version or @alias> URI")
        name, alias = match["name"], match["alias"]
        previous = self.versions.get(model)
        try:
            client = self._client = self._client or _client(self.tracking_uri)
            version = client.get_model_version_by_alias(name, alias)
        except Exception as error:  # the registry is down or refused: try again next interval
            log.warning("cannot check %s for %s (%s: %s); keeping the current reference, next try in %.0f s",
                        uri, model, type(error).__name__, short_error(error), self.interval_seconds)
            return None
        current = str(version.version)
        if current == previous:
            return None
        if previous is None and model not in self._baseline:
            # No starting version was given (built without resolve_config): this look sets it.
            self._baseline.add(model)
            self.versions[model] = current
            return None
        try:
            resolved = _resolve_version(client, name, version, uri)
        except ReferenceError as error:
            self._warn_once(model, current, f"{uri} moved to version {current} but its reference cannot be used: "
                                            f"{error}; keeping the current reference")
            return None
        except Exception as error:
            log.warning("cannot load the reference of %s version %s (%s: %s); next try in %.0f s",
                        name, current, type(error).__name__, short_error(error), self.interval_seconds)
            return None
        self.versions[model] = current
        log.info("%s moved from version %s to %s: monitoring %s against %s", uri, previous, current, model,
                 resolved.pinned_uri)
        return ReferenceChange(model, uri, resolved.pinned_uri, current, previous, resolved.run_id or "",
                               resolved.reference)

    def _warn_once(self, model: str, version: str, message: str) -> None:
        if (model, version) not in self._warned:
            self._warned.add((model, version))
            log.warning(message)

    @staticmethod
    def apply(engine: Engine, changes: list[ReferenceChange]) -> list[dict[str, Any]]:
        """Swap the new references into the engine; returns the ``reference_changed`` events to publish."""
        return [engine.replace_reference(c.model, c.reference, c.uri, c.version) for c in changes]


# -- reporting back ---------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def metric_key(name: str) -> str:
    """A stats key as an MLflow metric key: ``feature:weight.psi`` -> ``feature.weight.psi``.

    MLflow allows letters, digits, ``_ - . /`` and spaces, and the key must be a normalised path.
    """
    key = _UNSAFE.sub("_", name.replace(":", "."))
    parts = [p if p not in (".", "..") else "_" for p in key.split("/") if p]
    return "/".join(parts) or "_"


def window_metrics(window: Mapping[str, Any]) -> list[tuple[str, float, int, int]]:
    """One engine window as (key, value, timestamp ms, step) tuples: numeric stats plus ``<family>.n``."""
    timestamp = int(round(float(window["end"]) * 1000))
    step = int(window["index"])
    rows = [(f"{window['family']}.n", float(window["n"]), timestamp, step)]
    for name, value in window["stats"].items():
        if _finite(value):
            rows.append((metric_key(name), float(value), timestamp, step))
    return rows


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


@dataclass(eq=False)
class _Window:
    model: str
    version: str | None
    metrics: list[tuple[str, float, int, int]]
    sent: bool = False  # in MLflow already: a retry of its batch skips it


class MlflowReporter:
    """Logs window statistics and alerts to MLflow: one monitoring run per (model, model version).

    Pass :meth:`on_window` as the engine's ``on_window`` sink and every alert (and
    ``reference_changed`` event) to :meth:`on_alert`; call :meth:`close` at the end. Both sinks only
    append to a buffer. Every ``flush_windows`` windows the buffer goes out with ``log_batch``, on a
    background thread by default (``background=False`` flushes inline, for replays and tests).

    MLflow being unreachable never reaches the caller: the failure is logged as a warning, the
    windows stay buffered (at most ``buffer_windows``; past that the oldest are dropped and
    counted), and the next attempt waits ``retry_seconds``, doubling up to ``max_retry_seconds``:
    the buffer, thread and backoff of the alert sinks (:class:`~tripwire.sinks.delivery.DeliveryRunner`).
    MLflow's own HTTP client also retries (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, default 7) before
    an attempt counts as failed.
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT, *,
                 flush_windows: int = 10, buffer_windows: int = 10_000, background: bool = True,
                 retry_seconds: float = 1.0, max_retry_seconds: float = 300.0,
                 references: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.references: dict[str, str] = dict(references or {})
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self.runs: dict[tuple[str, str | None], str] = {}  # (model, version) -> monitoring run id
        self._alerts: dict[tuple[str, str | None], list[bytes]] = {}
        self._lock = threading.Lock()  # guards the alerts
        self._closed = False
        # Windows go out in batches of every window buffered; alerts.jsonl and the runs' end at close.
        def runner(send: Callable[[list[Any]], None], **options: Any) -> DeliveryRunner:
            return DeliveryRunner(f"MLflow at {self._where()}", send, background=background, retry_seconds=retry_seconds,
                                  max_retry_seconds=max_retry_seconds, clock=clock, **options)

        self._windows = runner(self._send_windows, buffer=buffer_windows, batch_size=buffer_windows,
                               min_batch=flush_windows, item="window")
        self._finish = runner(self._send_finish, item="alerts artifact")
        self.windows = 0

    @classmethod
    def from_config(cls, config: MonitorConfig, **kwargs: Any) -> MlflowReporter | None:
        """The reporter the ``[mlflow]`` table asks for, or None unless ``report = true``."""
        settings = config.mlflow or {}
        if not settings.get("report"):
            return None
        kwargs.setdefault("references", {m.name: m.reference for m in config.models})
        return cls(settings.get("tracking_uri"), settings.get("experiment") or DEFAULT_EXPERIMENT,
                   flush_windows=settings.get("flush_windows", 10),
                   buffer_windows=settings.get("buffer_windows", 10_000),
                   **kwargs)

    # -- sinks (cheap, never raise) ------------------------------------------------------------
    def on_window(self, window: dict[str, Any]) -> None:
        try:
            metrics = window_metrics(window)
        except Exception as error:  # a malformed window must not stop the engine
            log.warning("MLflow reporter: skipping a window it cannot read (%s)", error)
            return
        version = window.get("model_version")
        self.windows += 1
        self._windows.submit(_Window(window["model"], None if version is None else str(version), metrics))

    def on_alert(self, alert: dict[str, Any]) -> None:
        """Keep an alert (or a reference_changed event) for the ``alerts.jsonl`` artifact at close."""
        if alert.get("model") in (None, "*"):
            return  # stream-level alerts (dead-letter rate) belong to no model version
        try:
            model = str(alert.get("model"))
            version = alert.get("model_version")
            if alert.get("type") == "reference_changed" and alert.get("reference"):
                self.references[model] = alert["reference"]
            line = orjson.dumps(alert, option=orjson.OPT_SORT_KEYS)
        except Exception as error:
            log.warning("MLflow reporter: skipping an alert it cannot encode (%s)", error)
            return
        with self._lock:
            self._alerts.setdefault((model, None if version is None else str(version)), []).append(line)

    # -- delivery ------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Windows buffered and not yet in MLflow."""
        return self._windows.pending

    @property
    def delivered(self) -> int:
        return self._windows.delivered

    @property
    def dropped(self) -> int:
        return self._windows.dropped

    @property
    def failures(self) -> int:
        return self._windows.failures + self._finish.failures

    @property
    def last_error(self) -> str | None:
        return self._finish.last_error or self._windows.last_error

    def flush(self, timeout: float = 30.0) -> bool:
        """Deliver every buffered window now (retrying for at most ``timeout`` s); True when none is left."""
        return self._windows.flush(timeout)

    def _send_windows(self, batch: list[_Window]) -> None:
        from mlflow.entities import Metric

        client = self._client = self._client or _client(self.tracking_uri)
        groups: dict[tuple[str, str | None], list[_Window]] = {}
        for window in batch:
            if not window.sent:
                groups.setdefault((window.model, window.version), []).append(window)
        for key, windows in groups.items():
            run_id = self._run(client, *key)
            for chunk in _chunks(windows):
                metrics = [Metric(k, v, ts, step) for w in chunk for (k, v, ts, step) in w.metrics]
                for start in range(0, len(metrics), _MAX_METRICS_PER_BATCH):
                    client.log_batch(run_id, metrics=metrics[start:start + _MAX_METRICS_PER_BATCH])
                for window in chunk:
                    window.sent = True

    def _send_finish(self, _batch: list[None]) -> None:
        client = self._client = self._client or _client(self.tracking_uri)
        with self._lock:
            alerts = dict(self._alerts)
        for key, lines in alerts.items():
            run_id = self._run(client, *key)
            client.log_text(run_id, b"".join(line + b"\n" for line in lines).decode(), ALERTS_ARTIFACT)
            with self._lock:
                self._alerts.pop(key, None)
        for run_id in self.runs.values():
            client.set_terminated(run_id, "FINISHED")

    def _run(self, client: MlflowClient, model: str, version: str | None) -> str:
        run_id = self.runs.get((model, version))
        if run_id is not None:
            return run_id
        if self._experiment_id is None:
            found = client.get_experiment_by_name(self.experiment)
            self._experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
        tags = {"tripwire.model": model, "tripwire.model_version": version or "", "tripwire.monitoring": "true"}
        if model in self.references:
            tags["tripwire.reference"] = self.references[model]
        name = f"{model} v{version}" if version is not None else f"{model} (unversioned)"
        run = client.create_run(self._experiment_id, tags=tags, run_name=f"monitor {name}")
        self.runs[(model, version)] = run.info.run_id
        return run.info.run_id

    def run_id(self, model: str, version: str | None) -> str | None:
        """The monitoring run of a model version, once it has been created in MLflow."""
        return self.runs.get((model, None if version is None else str(version)))

    # -- the end -------------------------------------------------------------------------------
    def close(self, timeout: float = 30.0) -> bool:
        """Deliver what is buffered and the alerts, finish the runs; True when everything arrived.

        Retries with backoff for at most ``timeout`` seconds, then returns; what could not be
        delivered is logged as a warning and counted, never raised.
        """
        if self._closed:
            return self.pending == 0 and not self._alerts
        deadline = time.monotonic() + timeout
        self._closed = True
        outcome = [False]

        def deliver() -> None:
            if self._windows.close(timeout):  # every window first: alerts.jsonl and FINISHED come last
                self._finish.submit(None)
                outcome[0] = self._finish.close(max(0.0, deadline - time.monotonic()))

        # On a thread of its own, so a hanging MLflow (its client retries for minutes) cannot hold us past timeout.
        closing = threading.Thread(target=deliver, name="tripwire-mlflow-close", daemon=True)
        closing.start()
        closing.join(max(0.0, deadline - time.monotonic()))
        ok = outcome[0]
        if not ok:
            log.warning("MLflow reporter: gave up after %.1f s; %d windows and %d alerts not delivered to %s (%s)",
                        timeout, self.pending, sum(len(v) for v in self._alerts.values()), self._where(),
                        self.last_error or "no answer yet")
        if self.dropped:
            log.warning("MLflow reporter: %d windows were dropped while MLflow was unreachable", self.dropped)
        return ok

    def summary(self) -> str:
        runs = ", ".join(f"{m} v{v}: {r}" for (m, v), r in self.runs.items()) or "none"
        text = (f"MLflow ({self._where()}, experiment {self.experiment!r}): {self.delivered} of {self.windows} windows "
                f"logged, runs {runs}")
        if self.pending or self.dropped or self.failures:
            text += f"; {self.pending} undelivered, {self.dropped} dropped, {self.failures} failed attempts"
        return text

    def _where(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        import mlflow

        return mlflow.get_tracking_uri()

    def __enter__(self) -> MlflowReporter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

def _chunks(windows: list[_Window]) -> Iterator[list[_Window]]:
    """Whole windows per log_batch, up to MLflow's metric limit, so a retry never repeats a sent window."""
    chunk: list[_Window] = []
    size = 0
    for window in windows:
        if chunk and size + len(window.metrics) > _MAX_METRICS_PER_BATCH:
            yield chunk
            chunk, size = [], 0
        chunk.append(window)
        size += len(window.metrics)
    if chunk:
        yield chunk


def _client(tracking_uri: str | None) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


__all__ = [
    "AliasWatcher", "MlflowReporter", "ReferenceChange", "ResolvedReference", "is_mlflow_uri", "log_reference",
    "metric_key", "resolve", "resolve_config", "resolve_reference", "tag_model_version", "window_metrics",
]
