"""Fixtures the addon tests share: a fresh registry, and the records a tap hands on."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from llama_core.record import RequestRecord


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def records() -> list[RequestRecord]:
    return []
