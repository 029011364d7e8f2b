"""Shared fixtures: the demo's stream and references, generated once per session (fixed seed)."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import settings

from tripwire import demo

# The property tests draw the same examples on every run (CI must not fail on a new draw one day and
# pass the next); TRIPWIRE_HYPOTHESIS=explore draws fresh ones, to hunt for new failures by hand.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile("explore" if os.environ.get("TRIPWIRE_HYPOTHESIS") == "explore" else "repeatable")


@pytest.fixture(scope="session")
def demo_stream() -> tuple[list[bytes], dict[str, int]]:
    return demo.generate(seed=7)


@pytest.fixture(scope="session")
def demo_references() -> dict:
    return demo.training_references(seed=7)


@pytest.fixture(autouse=True)
def log_repeats_forgotten_between_tests():
    """The command line installs tripwire.logs' repeat limiter process-wide: a warning another test
    made in the last 10 s must not hide this test's first one."""
    from tripwire import logs

    for limiter in logs._installed:
        limiter._kinds.clear()
    yield


@pytest.fixture(autouse=True, scope="module")
def mlflow_tracking_uri_stays_in_its_module():
    """A module that points MLflow at its store (``mlflow.set_tracking_uri``) must not point the next one there."""
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)  # back to MLFLOW_TRACKING_URI or MLflow's default
