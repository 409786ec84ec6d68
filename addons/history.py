"""Writes every finished client request to the history file (``history_path``), off the event loop.

The ``History`` addon owns ``history_path`` and ``history_retention_days``. It opens the
writer (``llama_core.history.writer``) when configured, because opening the file (creating
or migrating it) is what proves the path can be used: a bad one stops the start, or refuses
the change. Each finished request goes to the writer's queue; a full queue drops the row and
counts ``history_dropped_total``, so proxying never waits for the disk. ``done()`` writes
what is queued and closes the file.
"""

from __future__ import annotations

import logging

from mitmproxy.addonmanager import Loader

from llama_core.history import schema, writer
from llama_core.record import RequestRecord
from llama_core.sampler import ResourceSample

from . import options
from .context import ProxyContext

logger = logging.getLogger(__name__)

OPTIONS = frozenset({"history_path", "history_retention_days"})


class History:
    """The history writer for the configured file, reopened when the file or retention changes."""

    def __init__(self, context: ProxyContext) -> None:
        self.context = context
        self.writer: writer.HistoryWriter | None = None
        self.opened: tuple[str, float] | None = None  # (path, retention days) of ``writer``
        self.started = False
        context.subscribe(self.submit)
        context.subscribe_samples(self.sampled)

    def load(self, loader: Loader) -> None:
        options.declare(loader, "history_path", "SQLite file for request history; "
                                                "empty disables it.")
        options.declare(loader, "history_retention_days", "Days a history row is kept.")

    def configure(self, updated: set[str]) -> None:
        if not updated & OPTIONS and self.opened is not None:
            return
        starting = not self.started
        with options.refusing(starting=starting):
            wanted = options.read("history_path"), options.read("history_retention_days")
        if wanted == self.opened:
            return
        self.close()
        path, retention_days = wanted
        try:
            self.writer = writer.open_writer(
                path,
                retention_days=retention_days,
                on_drop=self.context.metrics.history_dropped.inc,
            )
        except (schema.HistoryError, OSError) as e:
            options.refuse(f"history_path {path!r} cannot be used: {e}", starting=starting,
                           cause=e)
        self.opened = wanted
        if self.writer is not None:
            logger.info("history in %s", self.writer.path)

    def running(self) -> None:
        self.started = True  # from now on a bad history_path is refused, not fatal

    def submit(self, record: RequestRecord) -> None:
        if self.writer is not None:
            self.writer.submit(record)

    def sampled(self, sample: ResourceSample) -> None:
        """Every machine sample (on the poller's thread): to the history, for its charts."""
        history, inventory = self.writer, self.context.inventory
        if history is None:
            return
        state = inventory.state if inventory is not None else None  # one poll, consistent
        vram: int | None = None
        if state is not None and state.up:
            # What Ollama's loaded models hold in GPU memory (its /api/ps), beside the GPUs'.
            vram = sum(m.size_vram or 0 for m in state.loaded.values())
        history.submit_sample(sample, vram_models_bytes=vram)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.opened = None

    def done(self) -> None:
        self.close()
