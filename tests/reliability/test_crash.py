"""mitmdump is killed with SIGKILL under load; after a restart the history file is intact.

Four threads of the official ``ollama`` client (streamed and not) keep the proxy busy while it
writes history; ``kill -9`` hits it mid-batch. The file must pass ``PRAGMA integrity_check``,
its rows must read through the dashboard's history reader, and a proxy started again on the
same file must append to it.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from dashboard.history_sqlite import SqliteHistory
from tests.history_files import row_count
from tests.reliability.stack import start_proxy
from tests.support.waits import wait_until

pytestmark = pytest.mark.e2e


def load(url: str, stop: threading.Event, answered: list[int]) -> None:
    """Chat until ``stop``, or until the proxy is gone (a refused or cut connection)."""
    with ollama.Client(host=url, timeout=30) as client:
        stream = False
        while not stop.is_set():
            try:
                messages = [{"role": "user", "content": "hi"}]
                if stream:
                    for _ in client.chat(model="llama3.2", messages=messages, stream=True):
                        pass
                else:
                    client.chat(model="llama3.2", messages=messages)
            except (httpx.HTTPError, ollama.ResponseError, ConnectionError):
                return  # killed under us: what the test is about
            answered.append(1)
            stream = not stream


def test_sigkill_under_load_leaves_an_intact_file_that_a_restart_appends_to(
    sim: Any, tmp_path: Path,
) -> None:
    path = tmp_path / "history.db"
    stop = threading.Event()
    answered: list[int] = []
    with start_proxy(sim.url, f"history_path={path}") as proxy:
        threads = [threading.Thread(target=load, args=(proxy.url, stop, answered))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            # Several batches committed and more requests in flight, then the kill.
            wait_until(lambda: row_count(path) >= 20 and len(answered) >= row_count(path) + 4,
                       "20 rows written and more requests answered")
            proxy.process.kill()
            assert proxy.process.wait(timeout=10) == -9
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)

    with closing(sqlite3.connect(path)) as conn:  # opening replays the WAL, as a restart does
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        kept, last_id = conn.execute("SELECT COUNT(*), MAX(id) FROM requests").fetchone()
    # A row can be written a moment before its client counted the answer.
    assert 20 <= kept <= len(answered) + len(threads)
    recent = SqliteHistory(path).recent(500)
    assert len(recent) == min(kept, 500)
    assert {r["model"] for r in recent} == {"llama3.2:latest"}
    assert all(r["status"] == 200 and r["generated_tokens"] for r in recent)

    with start_proxy(sim.url, f"history_path={path}") as proxy, ollama.Client(
        host=proxy.url, timeout=30
    ) as client:
        for _ in range(3):
            client.chat(model="llama3.2", messages=[{"role": "user", "content": "again"}])
        wait_until(lambda: row_count(path) == kept + 3, "3 rows appended after the restart")
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        new_ids = [i for (i,) in conn.execute("SELECT id FROM requests WHERE id > ?", (last_id,))]
    assert len(new_ids) == 3
