"""Shared end-to-end fixtures: the Ollama simulator in-process and a real mitmdump in front."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.e2e.processes import Proxy, run_proxy

SIM_PATH = Path(__file__).resolve().parents[2] / "scripts" / "ollama_sim.py"


def load_sim() -> ModuleType:
    """scripts/ollama_sim.py is a script, not a package module: load it by path once."""
    if "ollama_sim" in sys.modules:
        return sys.modules["ollama_sim"]
    spec = importlib.util.spec_from_file_location("ollama_sim", SIM_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ollama_sim"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    server = load_sim().SimServer(port=0, tokens=12, seed=7)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(sim: Any) -> Iterator[Proxy]:
    with run_proxy(sim.url) as p:
        yield p
