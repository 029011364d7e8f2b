"""Shared fixtures: the demo's stream and references, generated once per session (fixed seed)."""

from __future__ import annotations

import pytest

from tripwire.streams import demo


@pytest.fixture(scope="session")
def demo_stream() -> tuple[list[bytes], dict[str, int]]:
    return demo.generate(seed=7)


@pytest.fixture(scope="session")
def demo_references() -> dict:
    return demo.training_references(seed=7)
