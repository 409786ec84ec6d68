"""What tests watch and steer: reports of finished requests, open connections, held requests."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ollama_sim.jobs import Job


class Observed:
    """The reports and open connections, behind one condition so tests can wait on them."""

    def __init__(self) -> None:
        self._reports: list[dict[str, Any]] = []
        self._open: set[object] = set()
        self._changed = threading.Condition()

    @property
    def reports(self) -> list[dict[str, Any]]:
        with self._changed:
            return list(self._reports)

    @property
    def connections(self) -> int:
        with self._changed:
            return len(self._open)

    def handlers(self) -> list[Any]:
        """The request handlers of the open connections."""
        with self._changed:
            return list(self._open)

    def wait_for_reports(self, count: int, timeout: float) -> list[dict[str, Any]]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._reports) >= count, timeout):
                raise TimeoutError(f"{len(self._reports)} reports after {timeout}s, not {count}")
            return list(self._reports)

    def wait_for_connections(self, count: int, timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._open) == count, timeout):
                raise TimeoutError(f"{len(self._open)} connections after {timeout}s, not {count}")

    def record(self, job: Job, status: int, outcome: str) -> None:
        """Report a job once: the first outcome recorded for it is the one that stays."""
        if job.recorded:
            return
        job.recorded = True
        with self._changed:
            self._reports.append(job.report(status, outcome))
            self._changed.notify_all()

    def connection_changed(self, handler: object, opened: bool) -> None:
        with self._changed:
            if opened:
                self._open.add(handler)
            else:
                self._open.discard(handler)
            self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self._reports.clear()


class Holds:
    """Requests held with ``X-Sim-Hold: KEY`` after their first chunk, and the keys released."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._released: set[str] = set()

    def release(self, key: str) -> None:
        """Let requests held on key (now or later) go on; call it in the server's loop."""
        self._released.add(key)
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    async def wait(self, key: str) -> None:
        if key in self._released:
            return
        event = self._events.setdefault(key, asyncio.Event())
        await event.wait()

    def new_loop(self) -> None:
        """Events belong to one loop; a restarted server gets new ones."""
        self._events.clear()

    def forget(self) -> None:
        self._released.clear()
