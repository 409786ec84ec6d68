"""A poll repeated every ``interval`` seconds on a daemon thread, stoppable at once.

The model inventory and the machine-resource sampler both keep "the last poll" for a
collector to read; this is the thread, the stop event and the poll counter they share. A
subclass implements ``_poll``; ``poll_once`` runs it and counts it (failed polls included),
so tests can wait for the next poll instead of sleeping.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)


class Poller:
    """Calls ``_poll`` now and then every ``interval`` seconds until ``stop``."""

    thread_name = "poller"

    def __init__(self, *, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        self.interval = interval
        self.polls = 0  # finished polls, failed ones included
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        raise NotImplementedError

    def poll_once(self) -> None:
        try:
            self._poll()
        finally:
            with self._cond:
                self.polls += 1
                self._cond.notify_all()

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, join_timeout: float = 5.0) -> None:
        """Stop the thread: at once when it waits, else when the poll in flight ends."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=join_timeout)
            self._thread = None

    def wait_for_poll(self, count: int, timeout: float | None = None) -> bool:
        """Block until ``polls >= count``; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.polls >= count, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                logger.exception("%s: poll failed", self.thread_name)
            self._stop.wait(self.interval)
