"""The response stream's tap: passes every byte to the client in order and parses on the side."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .streams import NdjsonParser, Parser
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

    def stream(self) -> Callable[[bytes], bytes | list[bytes]]:
        """What to set as ``flow.response.stream``: the tap, or for a plain native stream the
        tap with its common chunk counted in the same call (``native_stream``)."""
        parser = self.parser
        if self._as_is and isinstance(parser, NdjsonParser) and parser.plain:
            return native_stream(self, parser)
        return self

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


def native_stream(tap: StreamTap, parser: NdjsonParser) -> Callable[[bytes], bytes | list[bytes]]:
    """``tap`` for a plain native stream, its common chunk counted here in one call.

    mitmproxy calls the stream once per chunk, and a native stream is one chunk per token
    (Ollama flushes a JSON line per token), so this is the proxy's most frequent call: the
    tap and the parser in one frame (docs/benchmarks.md, issue 12). The common chunk is one
    whole line of a content chunk, nothing held over before it: it ends with
    ``"done":false}`` (Go's encoder writes compact JSON, and inside a JSON string those quotes
    would be escaped), starts with ``{``, holds no other newline, and has no empty
    ``"content"``/``"response"`` (no token). It is exactly what ``NdjsonParser._line``'s
    fast path counts; every other chunk, and every chunk once the tap or the parser gave up,
    goes to ``tap`` as before.
    """
    stats = parser.stats
    gaps = stats.gaps
    lines = parser._lines  # the line buffer's tail, read without a call
    clock = time.perf_counter

    def chunk(data: bytes) -> bytes | list[bytes]:
        now = clock()
        try:
            if (
                data.endswith(b'"done":false}\n')
                and not lines._tail
                and not tap._broken
                and not parser._skip
                and data[:1] == b"{"
                and data.find(b"\n") == len(data) - 1
                # Without any "" that is one search (find beats ``in`` here).
                and (data.rfind(b'""') < 0 or (
                    data.find(b'"content":""') < 0 and data.find(b'"response":""') < 0))
            ):
                size = len(data)
                stats.body_bytes += size
                tap.sent += size
                last = stats.last_token_at
                if last is None:
                    stats.first_token_at = now
                else:
                    gaps.append(now - last)
                    if len(gaps) >= GAP_BATCH:
                        tap.flush_gaps()
                stats.last_token_at = now
                stats.content_chunks += 1
                return data
        except Exception:  # never reaches mitmproxy: the tap passes the rest through
            tap._broken = True
            logger.exception("stream tap failed; passing the rest of this response through")
            return tap._keep(now, data)
        return tap(data)

    return chunk
