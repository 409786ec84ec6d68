"""The history addon (addons/history.py): its options, its writer's life, what it writes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from addons.context import ProxyContext
from addons.history import History
from llama_core.history import readers
from llama_core.record import RequestRecord
from tests.support.addons import done, running, start

UNUSABLE = "/proc/llama-metrics/history.db"  # a directory nobody can create


def record(model: str = "m") -> RequestRecord:
    return RequestRecord(started_at=time.time(), endpoint="/api/chat", model=model, status=200)


def rows(path: Path) -> list[str]:
    conn = readers.connect_readonly(path)
    try:
        return [r["model"] for r in readers.recent_requests(conn)]
    finally:
        conn.close()


def test_every_published_request_is_a_row_once_done(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    context = ProxyContext()
    history = History(context)
    with taddons.context() as tctx:
        script = start(tctx, history, command_line=(f"history_path={path}",))
        running(tctx, script)
        assert history.writer is not None
        context.publish(record("a"))
        context.publish(record("b"))
        done(tctx, script)
    assert history.writer is None
    assert sorted(rows(path)) == ["a", "b"]


def test_an_empty_path_writes_nothing() -> None:
    context = ProxyContext()
    history = History(context)
    with taddons.context() as tctx:
        start(tctx, history, command_line=("history_path=",))
        context.publish(record())  # nowhere to go, and no error
    assert history.writer is None


def test_a_new_path_moves_the_history(tmp_path: Path) -> None:
    context = ProxyContext()
    history = History(context)
    with taddons.context() as tctx:
        script = start(tctx, history, command_line=(f"history_path={tmp_path / 'a.db'}",))
        running(tctx, script)
        tctx.options.history_path = str(tmp_path / "b.db")
        context.publish(record("late"))
        done(tctx, script)
    assert rows(tmp_path / "a.db") == [] and rows(tmp_path / "b.db") == ["late"]


def test_an_unusable_path_stops_the_start(caplog: pytest.LogCaptureFixture) -> None:
    with taddons.context() as tctx, pytest.raises(SystemExit) as stopped:
        start(tctx, History(ProxyContext()), command_line=(f"history_path={UNUSABLE}",))
    assert stopped.value.code == 2
    assert f"history_path {UNUSABLE!r} cannot be used" in caplog.text


def test_a_later_unusable_path_is_refused_and_the_old_file_kept(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    context = ProxyContext()
    history = History(context)
    with taddons.context() as tctx:
        script = start(tctx, history, command_line=(f"history_path={path}",))
        running(tctx, script)
        with pytest.raises(exceptions.OptionsError, match="cannot be used"):
            tctx.options.history_path = UNUSABLE
        with pytest.raises(exceptions.OptionsError, match="history_retention_days"):
            tctx.options.history_retention_days = "never"
        assert tctx.options.history_path == str(path)
        context.publish(record("kept"))
        done(tctx, script)
    assert rows(path) == ["kept"]
