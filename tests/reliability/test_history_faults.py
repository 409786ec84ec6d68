"""The history database fails under a running proxy: locked, read-only, full disk, deleted.

A real mitmdump writes the history; the official ``ollama`` client talks to it. In every case
each request is answered, every row is either written or counted in
``ollama_proxy_history_dropped_total`` (the two add up to the requests sent), and writing
resumes by itself once the fault is gone.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import ollama
import pytest

from tests.history_files import row_count
from tests.reliability.stack import drop_file_override, obeys_file_modes, start_proxy
from tests.support.processes import Proxy
from tests.support.waits import wait_until

pytestmark = pytest.mark.e2e

# A root process ignores file modes; without CAP_DAC_OVERRIDE it obeys them like any user.
PREEXEC = drop_file_override if os.geteuid() == 0 else None


def dropped(proxy: Proxy) -> int:
    return int(proxy.value("history_dropped_total"))


def chat(client: ollama.Client) -> None:
    answer = client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}])
    assert answer.done and answer.eval_count


class Books:
    """Rows written and dropped since the last ``mark``, for one proxy and one file."""

    def __init__(self, proxy: Proxy, path: Path) -> None:
        self.proxy, self.path = proxy, path
        self.mark()

    def mark(self) -> None:
        self.rows0, self.dropped0 = row_count(self.path), dropped(self.proxy)

    def written(self) -> int:
        return row_count(self.path) - self.rows0

    def lost(self) -> int:
        return dropped(self.proxy) - self.dropped0

    def settle(self, sent: int) -> tuple[int, int]:
        """Wait until every request sent is a row or a drop; (written, dropped)."""
        wait_until(lambda: self.written() + self.lost() == sent,
                   f"{sent} requests as rows + drops (now {self.written()} + {self.lost()})")
        return self.written(), self.lost()


@contextmanager
def small_disk(where: Path) -> Iterator[str | None]:
    """Mount a 2 MiB tmpfs (to fill up) on ``where``; None when it could be, else why not."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield "a full disk needs a small tmpfs, and mounting one needs root"
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs",
                           str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        yield f"cannot mount a tmpfs to fill (no CAP_SYS_ADMIN?): {done.stderr.strip()}"
        return
    try:
        yield None
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.fixture(scope="module")
def served(sim: Any, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Proxy, Path, str | None]]:
    """One proxy for every case, its history on a small disk when one can be mounted."""
    disk = tmp_path_factory.mktemp("disk")
    path = disk / "history.db"
    with small_disk(disk) as no_disk, start_proxy(
        sim.url, f"history_path={path}", preexec=PREEXEC
    ) as proxy:
        yield proxy, path, no_disk


@pytest.fixture(scope="module")
def client(served: tuple[Proxy, Path, str | None]) -> Iterator[ollama.Client]:
    with ollama.Client(host=served[0].url, timeout=30) as c:
        yield c


def test_locked_database_proxying_goes_on_and_rows_add_up(
    served: tuple[Proxy, Path, str | None], client: ollama.Client,
) -> None:
    proxy, path, _ = served
    books = Books(proxy, path)
    locker = sqlite3.connect(path, timeout=10, isolation_level=None)
    sent = 0
    try:
        locker.execute("BEGIN EXCLUSIVE")
        # Keep sending until the writer gave up on the lock (5 s busy timeout) and counted
        # the drop: every request in that time must still be answered.
        while books.lost() == 0:
            chat(client)
            sent += 1
            assert sent < 2000, "the writer never gave up on the locked database"
        assert books.written() == 0  # nothing got past the lock
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    for _ in range(5):
        chat(client)
    written, lost = books.settle(sent + 5)
    assert lost >= 1 and written >= 5, (written, lost)
    assert "cannot write, dropping rows until it works again" in proxy.log
    assert "writing again" in proxy.log


@pytest.mark.skipif(not obeys_file_modes(PREEXEC),
                    reason="cannot run the proxy so that it obeys file modes (root without "
                           "the right to drop CAP_DAC_OVERRIDE); a read-only file stays writable")
def test_read_only_file_drops_then_resumes_when_writable(
    served: tuple[Proxy, Path, str | None], client: ollama.Client,
) -> None:
    proxy, path, _ = served
    books = Books(proxy, path)
    os.chmod(path, 0o444)
    try:
        for _ in range(6):
            chat(client)
        assert books.settle(6) == (0, 6)
    finally:
        # A reader that opened the file meanwhile made a -shm with the file's mode: the
        # owner makes all of them writable again, as `chmod u+w history.db*` would.
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if name.exists():
                os.chmod(name, 0o600)
    books.mark()
    for _ in range(4):
        chat(client)
    assert books.settle(4) == (4, 0), proxy.log[-3000:]
    assert "history.db is not writable (read-only)" in proxy.log


def test_deleted_file_is_recreated_and_new_rows_land_there(
    served: tuple[Proxy, Path, str | None], client: ollama.Client,
) -> None:
    proxy, path, _ = served
    books = Books(proxy, path)
    chat(client)  # the file has rows (and, in WAL mode, -wal and -shm) when it goes
    books.settle(1)
    lost = row_count(path)  # what the delete takes with it
    books = Books(proxy, path)
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        name.unlink()
    for _ in range(4):
        chat(client)
    wait_until(lambda: row_count(path) == 4, "4 rows in a new file at history_path")
    assert books.lost() == 0  # nothing dropped: every row after the delete is in the new file
    assert lost >= 1
    assert "file was removed or replaced; reopening" in proxy.log


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses another byte."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        block = b"\xff" * 65536
        while True:
            try:
                f.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    return filler


def test_full_disk_drops_and_counts_then_resumes_when_space_is_freed(
    served: tuple[Proxy, Path, str | None], client: ollama.Client,
) -> None:
    proxy, path, no_disk = served
    if no_disk:
        pytest.skip(no_disk)
    books = Books(proxy, path)
    chat(client)
    assert books.settle(1) == (1, 0)
    books.mark()
    filler = fill(path.parent)
    try:
        sent = 0
        while books.lost() == 0:  # the proxy answers while the writer fails
            chat(client)
            sent += 1
            assert sent < 2000, "the history never failed on a full disk"
        full_written, full_lost = books.settle(sent)
    finally:
        filler.unlink()
    for _ in range(5):
        chat(client)
    written, lost = books.settle(sent + 5)
    assert lost == full_lost >= 1 and written == full_written + 5
    assert "cannot write, dropping rows until it works again" in proxy.log
    assert "writing again" in proxy.log
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
