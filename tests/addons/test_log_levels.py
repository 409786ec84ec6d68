"""Tests for addons/log_levels.py: mitmdump's terminal lines carry their level while it runs."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from mitmproxy.addons.termlog import TermLogHandler
from mitmproxy.test import taddons

from addons.log_levels import LogLevels

logger = logging.getLogger("tests.log_levels")


@contextmanager
def terminal() -> Iterator[io.StringIO]:
    """mitmdump's terminal log into a string (made in the test itself: mitmproxy's handlers
    only print for the test phase that made them)."""
    out = io.StringIO()
    handler = TermLogHandler(out)
    handler.install()
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.setLevel(level)
        handler.uninstall()


def test_each_line_starts_with_its_level_until_done() -> None:
    addon = LogLevels()
    with terminal() as out, taddons.context(addon):
        logger.warning("upstream is down")
        logger.info("upstream is up")
        addon.done()
        logger.warning("after done")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("WARNING [") and lines[0].endswith("] upstream is down")
    assert lines[1].startswith("INFO [") and lines[1].endswith("] upstream is up")
    assert lines[2].startswith("[") and lines[2].endswith("] after done")


def test_loading_twice_does_not_print_the_level_twice() -> None:
    addon = LogLevels()
    with terminal() as out, taddons.context(addon):
        addon.load(None)  # a script reload without done() in between
        logger.error("cannot write history")
        addon.done()
    assert out.getvalue().startswith("ERROR [")
    assert "ERROR ERROR" not in out.getvalue()
