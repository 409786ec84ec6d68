"""Each client's tokens of the current UTC day, against its daily budget.

A request counts on the UTC day it started (the history's ``ts``), with its prompt and
generated tokens. The proxy adds its own finished requests as they end and, with a history
file, reads the day's sums from it at start and every few seconds (``refresh``): rows other
proxies sharing the file wrote, and its own from before a restart. Between two reads, its own
requests since the last read are added to what that read found.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from .record import RequestRecord

logger = logging.getLogger(__name__)

DAY_S = 86400


def day_start(ts: float) -> float:
    """The UTC midnight at or before ``ts`` (epoch seconds)."""
    return float(math.floor(ts / DAY_S) * DAY_S)


def seconds_to_midnight(now: float) -> int:
    """Whole seconds until the next UTC midnight (at least 1): a ``Retry-After``."""
    return max(1, math.ceil(day_start(now) + DAY_S - now))


def record_tokens(record: RequestRecord) -> int:
    return (record.prompt_tokens or 0) + (record.generated_tokens or 0)


class DailyUsage:
    """Tokens per client on the current UTC day; thread-safe, clock injected.

    ``used`` is the larger of what this process counted itself today and the last history
    read plus this process's requests since that read began (a request finishing during a
    read may be in both: counted early rather than late).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._day = day_start(clock())
        self._own: dict[str, int] = {}  # this process, today
        self._read: dict[str, int] = {}  # the history, at the last read
        self._since: dict[str, int] = {}  # this process, since the last read began
        self._during: dict[str, int] = {}  # this process, between the two reads before

    def _roll(self, now: float) -> None:
        today = day_start(now)
        if today != self._day:
            self._day = today
            self._own, self._read, self._since, self._during = {}, {}, {}, {}

    def add(self, record: RequestRecord) -> None:
        """Count a finished request of a client (others and token-less ones count nothing)."""
        tokens = record_tokens(record)
        if not record.client or tokens <= 0:
            return
        with self._lock:
            self._roll(self.clock())
            if day_start(record.started_at) != self._day:
                return  # started yesterday: yesterday's use
            for book in (self._own, self._since):
                book[record.client] = book.get(record.client, 0) + tokens

    def used(self, client: str) -> int:
        with self._lock:
            self._roll(self.clock())
            own = self._own.get(client, 0)
            shared = (self._read.get(client, 0) + self._during.get(client, 0)
                      + self._since.get(client, 0))
            return max(own, shared)

    def all_used(self) -> dict[str, int]:
        with self._lock:
            names = set(self._own) | set(self._read) | set(self._since) | set(self._during)
        return {name: self.used(name) for name in sorted(names)}

    def begin_read(self) -> float:
        """Mark the start of a history read; returns the day it is for (its UTC midnight)."""
        with self._lock:
            self._roll(self.clock())
            self._during, self._since = self._since, {}
            return self._day

    def finish_read(self, day: float, sums: dict[str, int]) -> None:
        """The day's sums per client as the read found them (since ``begin_read``)."""
        with self._lock:
            self._roll(self.clock())
            if day != self._day:
                return  # the day ended during the read
            self._read = dict(sums)
            self._during = {}

    def abandon_read(self) -> None:
        """The read failed: keep counting on the previous one."""
        with self._lock:
            for name, tokens in self._during.items():
                self._since[name] = self._since.get(name, 0) + tokens
            self._during = {}
