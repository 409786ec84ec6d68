"""A started process's output, read as it comes, so that a test can await a line of it."""

from __future__ import annotations

import re
import threading
from typing import IO


class LogReader:
    """Pumps ``stream`` (a child's stdout) into ``lines`` on a thread of its own.

    Reading as the lines come keeps a chatty child from blocking on a full pipe; a waiter is
    woken by each new line (a condition variable), so awaiting a line never polls.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.ended = False  # the child closed its output (it exited)
        self._stream = stream
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        for line in self._stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_match(self, pattern: str, timeout: float,
                   after: int = 0) -> tuple[int, re.Match[str]] | None:
        """The first line from ``after`` on that matches the regular expression ``pattern``
        (its index and the match), once it is there; None when the output ends first or
        ``timeout`` passes."""
        regex = re.compile(pattern)
        found: tuple[int, re.Match[str]] | None = None
        checked = after

        def seen() -> bool:
            nonlocal checked, found
            while found is None and checked < len(self.lines):
                if m := regex.search(self.lines[checked]):
                    found = (checked, m)
                checked += 1
            return found is not None or self.ended

        with self._changed:
            self._changed.wait_for(seen, timeout)
        return found

    def wait_for(self, text: str, timeout: float, after: int = 0) -> int:
        """The index of the first line from ``after`` on that holds ``text``; AssertionError
        naming ``text`` and showing the output when none comes within ``timeout``."""
        found = self.wait_match(re.escape(text), timeout, after)
        assert found is not None, f"no {text!r} within {timeout}s in:\n{self.text}"
        return found[0]

    def close(self, timeout: float = 5.0) -> None:
        """Read to the end (the child has gone) and close the stream."""
        self._thread.join(timeout)
        self._stream.close()
