"""addons/history.py: what the History addon hands its writer besides requests (machine samples)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

import pytest

from addons.context import ProxyContext
from addons.history import History
from addons.inventory import InventoryState, LoadedModel
from llama_core.history.writer import HistoryWriter
from llama_core.sampler import ResourceSample

GIB = 1024**3


def sample() -> ResourceSample:
    return ResourceSample(cpu_percent=7.0, memory_used_bytes=GIB, memory_total_bytes=4 * GIB)


@pytest.mark.parametrize(("state", "vram"), [
    # Ollama up: what its loaded models hold in GPU memory (a model on the CPU holds none).
    (InventoryState(up=True, loaded={
        "a:latest": LoadedModel(name="a:latest", size=5 * GIB, size_vram=3 * GIB),
        "b:latest": LoadedModel(name="b:latest", size=GIB, size_vram=None)}), 3 * GIB),
    (InventoryState(up=True), 0),  # nothing loaded
    (InventoryState(up=False), None),  # not known while Ollama is down
    (None, None),  # the inventory has not started
])
def test_each_sample_goes_to_the_history_with_the_models_vram(
        tmp_path: Path, state: InventoryState | None, vram: int | None) -> None:
    context = ProxyContext()
    history = History(context)
    writer = HistoryWriter(tmp_path / "h.db")
    writer.start()
    history.writer = writer
    context.inventory = None if state is None else SimpleNamespace(state=state)  # type: ignore[assignment]
    try:
        context.publish_sample(sample())
        assert writer.flush()
    finally:
        writer.close()
    with closing(sqlite3.connect(tmp_path / "h.db")) as conn:
        rows = conn.execute("SELECT cpu_percent, vram_models_bytes FROM samples").fetchall()
    assert rows == [(7.0, vram)]

