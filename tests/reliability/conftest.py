"""Reliability fixtures: the end-to-end ones (simulator in-process, real mitmdump in front)."""

from tests.e2e.conftest import load_sim, proxy, sim  # noqa: F401  (pytest fixtures by name)
