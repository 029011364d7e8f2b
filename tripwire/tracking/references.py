"""MLflow references: log one at training time, resolve ``runs:/`` and ``models:/`` URIs at monitoring time."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

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

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from mlflow import MlflowClient

    from tripwire.config import MonitorConfig

log = logging.getLogger("tripwire.tracking")

ARTIFACT_DIR = "tripwire"
ARTIFACT_PATH = "tripwire/reference.json"
DEFAULT_EXPERIMENT = "tripwire-monitoring"
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))/?$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)(?:/(?P<path>.*))?$")


# -- MLflow's names: metric keys ------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def metric_key(name: str) -> str:
    """A stats key as an MLflow metric key: ``feature:weight.psi`` -> ``feature.weight.psi``.

    MLflow allows letters, digits, ``_ - . /`` and spaces, and the key must be a normalised path.
    """
    key = _UNSAFE.sub("_", name.replace(":", "."))
    parts = [p if p not in (".", "..") else "_" for p in key.split("/") if p]
    return "/".join(parts) or "_"


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


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
    tracking_uri = config.mlflow.tracking_uri
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


def _client(tracking_uri: str | None) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)

