"""Leaves mitmproxy's line per streamed message out of the proxy's log.

For each response it streams, mitmproxy logs ``Streaming response from HOST.`` at info
(``Streaming request to HOST.`` for a request body it streams). The tap streams every answer,
a non-streamed one too, so that is a line per request in the proxy's log, saying nothing the
history and ``/requests`` do not say better. It is also the costliest thing done per
request: mitmdump builds the record, formats it, writes it to its terminal and hands it to
every addon as a deprecated ``add_log`` event, about 120 microseconds of the event loop, as
much as all of our hooks on a short answer (docs/benchmarks.md, issue 12). And it is logged
before the answer's first byte is sent, so the client waits for it.

This filter drops exactly those two lines on mitmproxy's connection logger, at info, unless
mitmdump runs with ``--set termlog_verbosity=debug``, where they are kept. Every other line
is untouched.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx

# The logger of mitmproxy's connection handler (mitmproxy/proxy/server.py), where layers'
# ``commands.Log`` end up.
LOGGER = "mitmproxy.proxy.server"
LINES = ("Streaming response from ", "Streaming request to ")


class StreamingLines(logging.Filter):
    """False for mitmproxy's two info lines about a streamed message, True for all else."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        return not (
            record.levelno == logging.INFO
            and type(msg) is str
            and msg.startswith(LINES)
            and msg.endswith(".")
        )


class StreamingLog:
    """Holds the filter on mitmproxy's connection logger while the proxy runs."""

    def __init__(self) -> None:
        self.filter = StreamingLines()
        self.logger = logging.getLogger(LOGGER)

    def load(self, loader: object) -> None:
        self.logger.addFilter(self.filter)  # addFilter keeps one of each

    def configure(self, updated: set[str]) -> None:
        if "termlog_verbosity" in updated:
            if ctx.options.termlog_verbosity == "debug":
                self.logger.removeFilter(self.filter)
            else:
                self.logger.addFilter(self.filter)

    def done(self) -> None:
        self.logger.removeFilter(self.filter)
