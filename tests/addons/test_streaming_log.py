"""Tests for addons/streaming_log.py: mitmproxy's line per streamed message is left out."""

from __future__ import annotations

import logging

import pytest
from mitmproxy.test import taddons

from addons.streaming_log import LOGGER, StreamingLines, StreamingLog


def record(msg: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(LOGGER, level, __file__, 1, msg, None, None)


@pytest.mark.parametrize("msg", ["Streaming response from 127.0.0.1.",
                                 "Streaming request to ollama.internal."])
def test_the_two_streaming_lines_are_dropped(msg: str) -> None:
    assert not StreamingLines().filter(record(msg))


@pytest.mark.parametrize("rec", [
    record("client connect"),
    record("server connect 127.0.0.1:11434"),
    record("Streaming response from 127.0.0.1.", logging.WARNING),
    record("Streaming response from 127.0.0.1", logging.INFO),  # not mitmproxy's line
    record(ValueError("Streaming response from x.")),
], ids=["client", "server", "warning", "no-stop", "not-a-str"])
def test_every_other_line_is_kept(rec: logging.LogRecord) -> None:
    assert StreamingLines().filter(rec)


def filtered(addon: StreamingLog) -> bool:
    return addon.filter in logging.getLogger(LOGGER).filters


def test_the_filter_is_held_while_running_and_let_go_when_done() -> None:
    addon = StreamingLog()
    with taddons.context(addon) as tctx:
        assert filtered(addon)
        # mitmdump's terminal log addon declares it; taddons has not got that addon.
        tctx.options.add_option("termlog_verbosity", str, "info", "")
        tctx.configure(addon, termlog_verbosity="debug")
        assert not filtered(addon)
        tctx.configure(addon, termlog_verbosity="info")
        assert filtered(addon)
        addon.load(None)  # a script reload: still one filter
        assert logging.getLogger(LOGGER).filters.count(addon.filter) == 1
        addon.done()
        assert not filtered(addon)
