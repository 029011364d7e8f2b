"""The code MLflow runs to load a monitored model ("models from code"): see tripwire.client.mlflow."""

from mlflow.models import set_model

from tripwire.client.mlflow import MonitoredModel

set_model(MonitoredModel())
