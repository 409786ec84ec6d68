"""Machine samples through a real mitmdump: the resource poller's readings land in the history."""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from llama_core import catalogue
from llama_core.history import readers
from tests.support.processes import run_proxy

pytestmark = pytest.mark.e2e


def first_sample(path: Path, timeout: float = 15.0) -> dict[str, Any]:
    """The history's first machine sample once it is there (the writer is another process)."""
    deadline = time.monotonic() + timeout
    while True:
        if path.exists():
            with closing(readers.connect_readonly(path)) as conn:
                rows = conn.execute("SELECT * FROM samples ORDER BY ts LIMIT 1").fetchall()
                if rows:
                    gpus = conn.execute("SELECT * FROM gpu_samples WHERE ts = ?",
                                        (rows[0]["ts"],)).fetchall()
                    return {**rows[0], "gpus": gpus}
        if time.monotonic() > deadline:
            raise TimeoutError(f"no machine sample in {path} after {timeout}s")
        time.sleep(0.05)


def test_the_proxy_keeps_machine_samples_in_its_history(sim: Any, tmp_path: Path) -> None:
    history = tmp_path / "history.db"
    started = time.time()
    with run_proxy(sim.url, "--set", f"history_path={history}") as proxy:
        row = first_sample(history)
        scrape = proxy.scrape()
    assert started - 1 <= row["ts"] <= time.time()
    assert 0.0 <= row["cpu_percent"] <= 100.0 * 64
    # The same reading the proxy exports: the history and /metrics mean one thing.
    total = scrape[(catalogue.SYSTEM_MEMORY_TOTAL.name, ())]
    assert row["memory_total_bytes"] == total
    assert 0 < row["memory_used_bytes"] <= total
    # One row per GPU the proxy sees (none on a machine without an NVIDIA GPU).
    gpus = {labels for name, labels in scrape if name == catalogue.GPU_MEMORY_TOTAL.name}
    assert len(row["gpus"]) == len(gpus)
    for gpu in row["gpus"]:
        assert gpu["memory_total_bytes"] == scrape[(catalogue.GPU_MEMORY_TOTAL.name, tuple(
            sorted({"gpu": str(gpu["gpu"]), "name": gpu["name"]}.items())))]
