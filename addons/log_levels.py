"""Puts each record's level at the start of mitmdump's log lines, so scripts/up can sort them.

mitmdump's terminal lines say when and, for a connection, which client, but not how urgent
they are; ``scripts/up`` shows warnings and errors and keeps the rest in the proxy's log file,
so it needs the level in the line. It loads this script beside the proxy's own:

    mitmdump -s addons/log_levels.py -s addons/llama_metrics.py ...

which turns ``[07:33:50.631] history in data/history.db`` into
``INFO [07:33:50.631] history in data/history.db``. Nothing else changes.
"""

from __future__ import annotations

import logging

from mitmproxy.addons.termlog import TermLogHandler


class LevelFormatter(logging.Formatter):
    """Another formatter's line, with the record's level name in front."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname} {self.inner.format(record)}"


class LogLevels:
    """Wraps the formatter of mitmdump's terminal log from load on; restores it when done."""

    def __init__(self) -> None:
        self._wrapped: list[tuple[logging.Handler, logging.Formatter]] = []

    def load(self, loader: object) -> None:
        # At load, not at running: the scripts loaded after this one log while they load.
        for handler in logging.getLogger().handlers:
            formatter = handler.formatter
            if isinstance(handler, TermLogHandler) and formatter is not None and not isinstance(
                formatter, LevelFormatter
            ):
                handler.setFormatter(LevelFormatter(formatter))
                self._wrapped.append((handler, formatter))

    def done(self) -> None:
        for handler, formatter in self._wrapped:
            handler.setFormatter(formatter)
        self._wrapped.clear()


addons = [LogLevels()]
