"""The response stream's tap: passes every byte to the client in order and parses on the side."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .streams import Parser
from .usage import UsageEventFilter

logger = logging.getLogger(__name__)

# Inter-token gaps reach the histogram in batches of this many (and at the end).
GAP_BATCH = 64
# While recording, the chunks of one response are kept for the cassette up to this size; a
# larger response is not recorded (counted in ollama_proxy_record_dropped_total).
MAX_KEPT_BYTES = 64 * 1024 * 1024


class StreamTap:
    """``flow.response.stream``: returns every byte, in order; only parses on the side.

    It never raises (an exception would hang the client) and never returns ``b""`` for a
    chunk (that would end the client's chunked response early): nothing to send is ``[]``.
    """

    __slots__ = ("parser", "filter", "sent", "chunks", "kept", "kept_too_much", "_broken",
                 "_gaps", "_flush_gaps", "_as_is")

    def __init__(
        self,
        parser: Parser,
        usage_filter: UsageEventFilter | None,
        flush_gaps: Callable[[list[float]], None] | None = None,
        *,
        keep_chunks: bool = False,
    ) -> None:
        self.parser = parser
        self.filter = usage_filter
        self.sent = 0
        # (perf_counter at arrival, bytes handed to the client), for the cassette recorder.
        self.chunks: list[tuple[float, bytes]] | None = [] if keep_chunks else None
        self.kept = 0
        self.kept_too_much = False  # over MAX_KEPT_BYTES: the chunks were let go
        self._broken = False
        self._gaps = parser.stats.gaps
        self._flush_gaps = flush_gaps
        # Nothing to change nor to keep: each chunk goes back as it came (the common case).
        self._as_is = usage_filter is None and not keep_chunks

    def flush_gaps(self) -> None:
        """Hand the inter-token gaps seen so far to the histogram (in batches, not per token)."""
        if self._gaps and self._flush_gaps is not None:
            self._flush_gaps(self._gaps)
            self._gaps.clear()

    def __call__(self, data: bytes) -> bytes | list[bytes]:
        now = time.perf_counter()
        if self._broken:
            return self._keep(now, data)
        try:
            if data:
                self.parser.feed(data, now)
                if len(self._gaps) >= GAP_BATCH:
                    self.flush_gaps()
                if self._as_is:
                    self.sent += len(data)
                    return data
            if self.filter is not None:
                data = self.filter.feed(data) if data else self.filter.flush()
            self.sent += len(data)
            if data and self.chunks is not None:
                self._remember(now, data)
            return data if data else []
        except Exception:
            self._broken = True
            logger.exception("stream tap failed; passing the rest of this response through")
            if self.filter is not None:  # what it held back still belongs to the client
                data = self.filter.take_held() + data
            return self._keep(now, data)

    def _keep(self, now: float, data: bytes) -> list[bytes]:
        if data and self.chunks is not None:
            self._remember(now, data)
        return [data] if data else []

    def _remember(self, now: float, data: bytes) -> None:
        """Keep a chunk for the recorder, up to MAX_KEPT_BYTES of one response."""
        self.kept += len(data)
        if self.kept > MAX_KEPT_BYTES:
            self.chunks = None
            self.kept_too_much = True
        elif self.chunks is not None:
            self.chunks.append((now, data))
