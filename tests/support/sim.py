"""The Ollama simulator in tests: one way to start it, and the ``sim`` fixture built on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ollama_sim import SimServer

# What the shared ``sim`` fixture (conftest.py) runs with; a module wanting other settings
# declares its own with sim_fixture(...).
DEFAULT_OPTIONS: dict[str, Any] = {"tokens": 12, "seed": 7}


@contextmanager
def running_sim(**options: Any) -> Iterator[SimServer]:
    """A simulator on a free port (options as SimServer takes them), stopped afterwards."""
    with SimServer(port=0, **options) as server:
        yield server


def sim_fixture(scope: str = "module", **options: Any) -> Callable[..., Any]:
    """A fixture named ``sim``: ``sim = sim_fixture(tokens=8, seed=5)`` in a test module."""

    @pytest.fixture(scope=scope, name="sim")  # type: ignore[call-overload]
    def _sim() -> Iterator[SimServer]:
        with running_sim(**options) as server:
            yield server

    return _sim
