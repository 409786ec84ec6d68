"""The answers of /api/pull, /api/push and /api/create: was it an error inside a 200 stream?"""

from __future__ import annotations

from .streams import JsonParser, LineBuffer, Parser, PassthroughParser


class ProgressParser(Parser):
    """The NDJSON progress of /api/pull, /api/push and /api/create: it watches for an error.

    Ollama answers 200 with its first progress line; a failure after that is a last line
    ``{"error":"..."}`` (0.12.6 on; before, the same line, with a ``"status":400`` key for
    create's bad requests), and success is the line ``{"status":"success"}``. Progress lines
    are not tokens.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._lines = LineBuffer()

    def _feed(self, data: bytes, now: float) -> None:
        for line in self._lines.feed(data):
            self._line(line)

    def _finish(self, now: float) -> None:
        self._line(self._lines.flush())

    def _line(self, line: bytes) -> None:
        # Progress lines (``"status":"pulling <digest>"`` with counters) come by the
        # thousand: only a line that can be an error or the success line is parsed.
        if b'"error"' not in line and b'"success"' not in line:
            return
        obj = self._object(line)
        if obj is not None and obj.get("status") == "success":
            self.stats.done = True


# Routes whose 200 answer is a progress stream (or, with "stream": false, one JSON body).
PROGRESS_ENDPOINTS = frozenset({"/api/pull", "/api/push", "/api/create"})


def progress_parser_for(content_type: str, *, content_encoding: str = "") -> Parser:
    """The parser for a pull, push or create answer of this content type."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "application/x-ndjson":
        return ProgressParser(content_encoding=content_encoding)
    if mime == "application/json":  # "stream": false: {"status":"success"} or {"error":...}
        return JsonParser(content_encoding=content_encoding)
    return PassthroughParser()
