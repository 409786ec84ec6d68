"""Records every finished flow to a cassette (``record_path``), written off the event loop.

The ``CassetteRecorder`` addon owns ``record_path``: it opens the cassette when configured
(an unusable path stops the start, or refuses the change), asks the tap to keep each chunk
while it records, and closes the file in ``done()``. The stream tap keeps each chunk it
hands the client with its ``perf_counter()`` arrival; this addon turns a finished flow into
an interaction (``addons/cassettes.py``) and queues it for a writer thread. A full queue or
a failed write drops the interaction and counts it in ``ollama_proxy_record_dropped_total``:
recording never blocks or slows proxying.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path

from mitmproxy import http
from mitmproxy.addonmanager import Loader
from prometheus_client import CollectorRegistry, Counter

from llama_core import catalogue, exposition

from . import cassettes, options
from .stream_tap import MAX_KEPT_BYTES
from .tap import KEY as TAP_KEY
from .tap import TrafficTap

logger = logging.getLogger(__name__)

KEY = "llama_metrics_record"
_Item = tuple[cassettes.Interaction, float]  # and the wall clock of the run's first request


class CassetteWriter:
    """Appends interactions to a cassette from one daemon thread; ``submit`` never blocks.

    A file that already holds interactions is continued: this run's start offsets follow its
    last one by the wall-clock time between them, so a replay keeps both runs in order.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        queue_size: int = 256,
        on_drop: Counter | None = None,
    ) -> None:
        self.path = Path(path)
        self.written = 0
        self.dropped = 0
        self._on_drop = on_drop
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=queue_size)  # None: stop
        self._file = cassettes.open_private(self.path, "a")  # OSError here: refused at start
        self._thread = threading.Thread(
            target=self._run, name=f"cassette-writer {self.path}", daemon=True
        )
        self._thread.start()

    def submit(self, interaction: cassettes.Interaction, t0_wall: float) -> bool:
        try:
            self._queue.put_nowait((interaction, t0_wall))
            return True
        except queue.Full:
            self._drop()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("cassette %s: writer behind, %d interactions dropped",
                               self.path, self.dropped)
            return False

    def _drop(self) -> None:
        self.dropped += 1
        if self._on_drop is not None:
            self._on_drop.inc()

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            logger.warning("cassette %s: writer stuck; closing without the queued rest", self.path)
        self._thread.join(timeout)

    def _continued_from(self) -> tuple[float, float] | None:
        """The last (start, started_at) already in the file, to continue its timeline."""
        last: tuple[float, float] | None = None
        try:
            with open(self.path, encoding="utf-8") as f:
                for interaction in cassettes.iter_lines(f, str(self.path)):
                    if last is None or interaction.start >= last[0]:
                        last = (interaction.start, interaction.started_at or 0.0)
        except (OSError, ValueError) as e:
            logger.warning("cassette %s: cannot read what is there (%s); offsets start at 0",
                           self.path, e)
            return None
        return last

    def _run(self) -> None:
        base: float | None = None
        previous = self._continued_from()
        try:
            while True:
                item = self._queue.get()
                try:
                    while item is not None:
                        interaction, t0_wall = item
                        if base is None:
                            base = 0.0 if previous is None else (
                                previous[0] + max(0.0, t0_wall - previous[1]))
                        interaction.start += base
                        self._file.write(cassettes.dumps(interaction))
                        self.written += 1
                        item = self._queue.get_nowait()
                except queue.Empty:
                    pass
                except Exception:
                    self._drop()
                    logger.exception("cassette %s: could not write an interaction", self.path)
                try:
                    self._file.flush()
                except OSError:  # a full disk: what the buffer held is lost, the thread is not
                    logger.exception("cassette %s: could not write to the file", self.path)
                if item is None:
                    return
        finally:
            self._file.close()


class CassetteRecorder:
    """Nested before the tap: sees the request as the client sent it, before usage injection."""

    def __init__(self, registry: CollectorRegistry, *, tap: TrafficTap | None = None) -> None:
        self.dropped = exposition.counter(catalogue.RECORD_DROPPED, registry)
        self.tap = tap  # keeps each chunk it hands the client while a cassette is open
        self.writer: CassetteWriter | None = None
        self.path: str | None = None  # what ``configure`` last opened ("" = not recording)
        self.started = False
        self._t0: float | None = None
        self._t0_wall = 0.0

    def load(self, loader: Loader) -> None:
        options.declare(loader, "record_path", "Cassette file every finished flow is appended "
                                               "to; empty = off (the default).")

    def configure(self, updated: set[str]) -> None:
        if "record_path" not in updated:
            return
        with options.refusing(starting=not self.started):
            path = options.read("record_path")
        if path == self.path:
            return
        try:
            self.open(path)
        except OSError as e:
            self.path = None
            options.refuse(f"record_path {path!r} cannot be used: {e}",
                           starting=not self.started, cause=e)
        self.path = path

    def running(self) -> None:
        self.started = True

    def done(self) -> None:
        self.close()

    def open(self, path: str) -> None:
        """Record to ``path`` from now on (empty: stop recording); OSError if it cannot."""
        self.close()
        self._t0 = None  # a new cassette's offsets count from its own first request
        if path:
            self.writer = CassetteWriter(path, on_drop=self.dropped)
            logger.info("recording every flow to %s", path)
        if self.tap is not None:
            self.tap.keep_chunks = self.writer is not None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.tap is not None:
            self.tap.keep_chunks = False

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.writer is None:
            return
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._t0_wall = now, time.time()
        flow.metadata[KEY] = {"start": now - self._t0, "body": None}

    def request(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get(KEY)
        if state is not None:
            state["body"] = flow.request.raw_content or b""

    def response(self, flow: http.HTTPFlow) -> None:
        self.finished(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.finished(flow)

    def finished(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.pop(KEY, None)
        writer = self.writer
        if state is None or writer is None:
            return
        tap_state = flow.metadata.get(TAP_KEY)
        if tap_state is not None and tap_state.tap is not None and tap_state.tap.kept_too_much:
            self.dropped.inc()
            logger.warning("not recorded: %s %s answered more than %d MiB",
                           flow.request.method, flow.request.path, MAX_KEPT_BYTES >> 20)
            return
        try:
            writer.submit(self.interaction(flow, state), self._t0_wall)
        except Exception:
            logger.exception("could not record %s %s", flow.request.method, flow.request.path)

    @staticmethod
    def interaction(flow: http.HTTPFlow, state: dict) -> cassettes.Interaction:
        tap_state = flow.metadata.get(TAP_KEY)
        now = time.perf_counter()
        sent_at = now
        taken = None
        if tap_state is not None:
            sent_at = tap_state.t_forwarded or tap_state.t_arrival
            if tap_state.tap is not None:
                taken = tap_state.tap.chunks
        if taken is not None:
            chunks = [cassettes.Chunk(max(0.0, t - sent_at), data) for t, data in taken]
        else:  # answered without streaming (by the proxy itself, or no body)
            body = flow.response.raw_content if flow.response is not None else None
            chunks = [cassettes.Chunk(max(0.0, now - sent_at), body)] if body else []
        return cassettes.from_flow(
            flow, chunks=chunks, request_body=state["body"], start=state["start"]
        )
