"""The fixtures every test layer shares (tests/support holds the helpers behind them).

``sim``: the Ollama simulator in-process on a free port, one per module (a module wanting other
settings declares ``sim = sim_fixture(...)``); ``proxy``: a real mitmdump with our addon in
front of it. Tests that start processes are marked ``e2e`` here, so ``scripts/test --fast``
(``pytest -m "not e2e"``) runs the unit layers alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import Proxy, run_proxy
from tests.support.sim import DEFAULT_OPTIONS, sim_fixture

ROOT = Path(__file__).resolve().parent
# Folders whose every test starts processes, and the files elsewhere that do (mitmdump, a
# browser, the simulator as a process, the supervisor).
E2E_FOLDERS = ("tests/e2e", "tests/stack", "tests/reliability")
E2E_FILES = (
    "tests/dashboard/test_browser.py",
    "tests/dashboard/test_narrative.py",
    "tests/healthd/test_e2e.py",
    "tests/healthd/test_summary.py",
    "tests/scripts/test_load.py",
    "tests/scripts/test_supervise.py",
)

sim = sim_fixture(**DEFAULT_OPTIONS)


@pytest.fixture(scope="module")
def proxy(sim: object) -> Iterator[Proxy]:
    with run_proxy(sim.url) as p:  # type: ignore[attr-defined]
        yield p


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        where = Path(item.path).resolve().relative_to(ROOT).as_posix()
        if where.startswith(E2E_FOLDERS) or where in E2E_FILES:
            item.add_marker(pytest.mark.e2e)
