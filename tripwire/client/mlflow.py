"""Monitor an MLflow model with no code in the server: a pyfunc that wraps it and emits its events.

:func:`log_monitored_model` logs a new pyfunc model whose ``predict`` calls the wrapped model, times
the call and sends one prediction event per input row through :class:`tripwire.client.Client`.
``mlflow models serve -m <the new model>`` then serves it exactly as before, monitored. The Kafka
settings are read from the environment when the server loads the model (``TRIPWIRE_KAFKA_BOOTSTRAP``,
``TRIPWIRE_KAFKA_*``, ``TRIPWIRE_CLIENT_*``), so one logged model runs against any broker.

The wrapper is logged as "model from code" (``tripwire/client/mlflow_model.py`` plus a
``model_config`` dict): nothing of it is pickled. The wrapped model is an artifact of the new one.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Iterable

import mlflow
import numpy as np
import pandas as pd

from tripwire.client.recorder import RateLimitedLog, new_request_id

CODE = Path(__file__).with_name("mlflow_model.py")
_MODEL_VERSION_URI = re.compile(r"^models:/[^/@]+/(\d+)$")
_report = RateLimitedLog(logging.getLogger("tripwire.client.mlflow"))


class MonitoredModel(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]  # pyfunc is imported lazily by mlflow
    """The wrapping pyfunc; configured by the ``model_config`` that :func:`log_monitored_model` writes."""

    def load_context(self, context: Any) -> None:
        from tripwire.client import Client

        config = dict(context.model_config or {})
        self.model_name: str = config["model"]
        self.model_version: str | None = config.get("model_version")
        self.request_id_column: str | None = config.get("request_id_column")
        self.return_request_ids: bool = bool(config.get("return_request_ids", False))
        self.prediction_column: str | None = config.get("prediction_column")
        self.score_column: str | None = config.get("score_column")
        self.attribute_columns: list[str] = list(config.get("attribute_columns") or [])
        self.inner = mlflow.pyfunc.load_model(context.artifacts["model"])
        self.client = Client(topic=config.get("topic"), key_by=config.get("key_by"))

    # No annotations on predict: MLflow would derive (and warn about) a schema from them.
    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        request_ids = self._request_ids(frame)
        if self.request_id_column in frame.columns:
            frame = frame.drop(columns=[self.request_id_column])
        started = time.perf_counter()
        output = self.inner.predict(frame, params=params) if params else self.inner.predict(frame)
        latency_ms = (time.perf_counter() - started) * 1000.0
        try:
            self._emit(frame, output, request_ids, latency_ms)
        except Exception as error:  # an odd output shape must not fail the prediction it describes
            _report(logging.ERROR, "emit", "tripwire: could not emit the events of a prediction of %r: %r",
                    self.model_name, error)
        if not self.return_request_ids:
            return output
        result = output.copy() if isinstance(output, pd.DataFrame) else pd.DataFrame({"prediction": _column(output)})
        result["request_id"] = request_ids
        return result

    def _request_ids(self, frame: pd.DataFrame) -> list[str]:
        given: Iterable[Any] = (frame[self.request_id_column] if self.request_id_column in frame.columns
                                else [None] * len(frame))
        return [value if isinstance(value, str) and value else new_request_id() for value in given]

    def _emit(self, frame: pd.DataFrame, output: Any, request_ids: list[str], latency_ms: float) -> None:
        if isinstance(output, pd.DataFrame):
            predictions = output[self.prediction_column or output.columns[0]].tolist()
            scores = output[self.score_column].tolist() if self.score_column else [None] * len(output)
        else:
            predictions, scores = _column(output), [None] * len(frame)
        attributes = frame[self.attribute_columns].to_dict("records") if self.attribute_columns else None
        for index, features in enumerate(frame.to_dict("records")):
            self.client.log_prediction(self.model_name, predictions[index], features=features,
                                       request_id=request_ids[index], score=scores[index], latency_ms=latency_ms,
                                       attributes=attributes[index] if attributes else None,
                                       model_version=self.model_version)


def _column(output: Any) -> list[Any]:
    """One prediction per row from whatever the wrapped model returned (array, Series, list)."""
    values = output.to_numpy() if isinstance(output, (pd.Series, pd.DataFrame)) else np.asarray(output)
    if values.ndim > 1:
        values = values[:, 0]
    return values.tolist()


def log_monitored_model(model_uri: str, *, model: str, name: str = "monitored_model",
                        model_version: str | None = None, topic: str | None = None, key_by: str | None = None,
                        request_id_column: str | None = "request_id", return_request_ids: bool = False,
                        prediction_column: str | None = None, score_column: str | None = None,
                        attribute_columns: Iterable[str] = (), registered_model_name: str | None = None,
                        pip_requirements: list[str] | None = None) -> Any:
    """Log (to the active run) a pyfunc that serves ``model_uri`` and emits its tripwire events.

    Parameters
    ----------
    model_uri:
        The model to wrap (``runs:/…``, ``models:/name/version``, a path).
    model:
        The model name in the events (the name in tripwire's ``monitor.toml``).
    model_version:
        ``model_version`` in the events; default: the version in a ``models:/name/N`` URI.
    topic, key_by:
        Fixed here, or left to ``TRIPWIRE_CLIENT_TOPIC`` / ``TRIPWIRE_CLIENT_KEY_BY`` at load time.
    request_id_column:
        An optional input column with the caller's request ids (removed before the wrapped model
        sees the input); rows without one get a generated id.
    return_request_ids:
        Answer a frame with ``prediction`` (or the model's columns) and ``request_id``, so callers
        can send labels later. Off by default: the response keeps the wrapped model's shape.
    prediction_column, score_column:
        For models that return a DataFrame: the column holding the prediction (default the first)
        and the positive-class probability.
    attribute_columns:
        Input columns also sent as ``attributes`` (fairness segments).

    Returns
    -------
    mlflow.models.model.ModelInfo
        Serve it with ``mlflow models serve -m <model_uri of the result> --env-manager local``.
    """
    if model_version is None and (match := _MODEL_VERSION_URI.match(model_uri)):
        model_version = match.group(1)
    config: dict[str, Any] = {"model": model, "model_version": model_version, "topic": topic, "key_by": key_by,
                              "request_id_column": request_id_column, "return_request_ids": return_request_ids,
                              "prediction_column": prediction_column, "score_column": score_column,
                              "attribute_columns": list(attribute_columns)}
    inner = mlflow.models.get_model_info(model_uri)
    if pip_requirements is None:
        pip_requirements = _requirements(model_uri)
    return mlflow.pyfunc.log_model(name=name, python_model=str(CODE), artifacts={"model": model_uri},
                                   model_config={k: v for k, v in config.items() if v is not None},
                                   signature=_signature(inner.signature, request_id_column, return_request_ids),
                                   pip_requirements=pip_requirements, registered_model_name=registered_model_name)


def _requirements(model_uri: str) -> list[str]:
    """The wrapped model's requirements plus the client's (tripwire itself must be installed)."""
    try:
        path = mlflow.artifacts.download_artifacts(f"{model_uri.rstrip('/')}/requirements.txt")
        lines = [line.strip() for line in Path(path).read_text().splitlines()]
    except Exception:  # an old model without requirements.txt: the client's are still needed
        lines = [f"mlflow=={mlflow.__version__}"]
    return [line for line in lines if line and not line.startswith("#")] + ["confluent-kafka"]


def _signature(inner: Any, request_id_column: str | None, return_request_ids: bool) -> Any:
    """The wrapped model's input schema, plus the optional request-id column."""
    if inner is None or inner.inputs is None or not inner.inputs.has_input_names():
        return None
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    columns = list(inner.inputs.inputs)
    if request_id_column and request_id_column not in inner.inputs.input_names():
        columns.append(ColSpec("string", request_id_column, required=False))
    return ModelSignature(inputs=Schema(columns), outputs=None if return_request_ids else inner.outputs,
                          params=inner.params)


__all__ = ["MonitoredModel", "log_monitored_model"]
