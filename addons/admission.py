"""Admission control: at most N requests upstream at once, the rest wait in a priority queue.

Pure asyncio and single-threaded: every method must be called from the event loop that runs
the proxy's hooks. The proxy calls ``await acquire(priority)`` in its request hook and
``release()`` exactly once when that flow finishes or errors (also when the client left).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator

from prometheus_client.core import Metric

from llama_core import catalogue, exposition
from llama_core.record import PRIORITIES

logger = logging.getLogger(__name__)

# Weight of the newest hold time in the running mean that feeds Retry-After.
_HOLD_SMOOTHING = 0.2
_RETRY_AFTER_MIN_S = 1
_RETRY_AFTER_MAX_S = 60


def parse_priority(value: str | None) -> str:
    """The priority named by an ``X-Priority`` header value; anything unknown is "normal"."""
    if value is not None:
        candidate = value.strip().lower()
        if candidate in PRIORITIES:
            return candidate
    return "normal"


class QueueFull(Exception):
    """The admission queue is full; the caller answers 503 with ``Retry-After``."""

    def __init__(self, retry_after: int, depth: int) -> None:
        super().__init__(f"admission queue full ({depth} waiting); retry after {retry_after} s")
        self.retry_after = retry_after
        self.depth = depth


def _check_limits(max_concurrency: int, max_queue: int) -> None:
    if max_concurrency < 0:
        raise ValueError(f"max_concurrency must be 0 (unlimited) or more, not {max_concurrency}")
    if max_queue < 0:
        raise ValueError(f"max_queue must be 0 or more, not {max_queue}")


class Admission:
    """Slots for upstream requests, handed directly to the best waiter on release.

    Waiters are ordered by priority (high, normal, low), then by arrival. A released slot goes
    straight to the next waiter, so a newcomer can never overtake the queue.
    """

    def __init__(
        self,
        max_concurrency: int = 0,
        max_queue: int = 100,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        _check_limits(max_concurrency, max_queue)
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._clock = clock
        self._active = 0
        # An insertion-ordered dict per priority: FIFO order plus O(1) removal on cancel.
        self._waiters: dict[str, dict[asyncio.Future[None], None]] = {p: {} for p in PRIORITIES}
        # Grant times of the current holders, oldest first. release() cannot tell which holder
        # it ends, so it pairs with the oldest; the sum of holds is right whatever the pairing.
        self._grants: deque[float] = deque()
        self._mean_hold_s: float | None = None

    @property
    def active(self) -> int:
        """Requests holding a slot now."""
        return self._active

    def depth(self, priority: str) -> int:
        """Requests of this priority waiting for a slot."""
        # A cancelled waiter counts as gone the moment it is cancelled, before its task runs.
        return sum(1 for fut in self._waiters[priority] if not fut.cancelled())

    @property
    def total_depth(self) -> int:
        """Requests of any priority waiting for a slot."""
        return sum(self.depth(p) for p in PRIORITIES)

    def _nobody_waits(self) -> bool:
        """``total_depth == 0``, without counting when no priority has a waiter (nearly always:
        every request asks on arrival)."""
        return not any(self._waiters.values()) or self.total_depth == 0

    def configure(self, max_concurrency: int, max_queue: int) -> None:
        """Change the limits at run time; a higher limit admits waiters at once.

        A lower limit takes nothing away from current holders; new requests wait until the
        number of holders is under it. Waiters beyond a lowered ``max_queue`` keep their place.
        """
        _check_limits(max_concurrency, max_queue)
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._dispatch()

    def try_acquire(self) -> bool:
        """Take a slot now if one is free and nobody waits; never waits, never queues."""
        if self.max_concurrency == 0 or (
            self._active < self.max_concurrency and self._nobody_waits()
        ):
            self._grant()
            return True
        return False

    async def acquire(self, priority: str) -> float:
        """Wait for a slot; return the seconds spent waiting (0.0 when one was free).

        Raises ``QueueFull`` at once when ``max_queue`` requests are already waiting. When the
        calling task is cancelled while waiting, it leaves the queue (or, if the slot reached it
        in the same loop turn, passes the slot on) before ``CancelledError`` propagates.
        """
        if priority not in PRIORITIES:
            raise ValueError(f"unknown priority {priority!r}; expected one of {PRIORITIES}")
        # Hand-off keeps every slot busy while anyone waits; the depth test is a second guard
        # against a newcomer overtaking the queue.
        if self.max_concurrency == 0 or (
            self._active < self.max_concurrency and self.total_depth == 0
        ):
            self._grant()
            return 0.0
        depth = self.total_depth
        if depth >= self.max_queue:
            raise QueueFull(self._retry_after(depth), depth)

        started = self._clock()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[priority][fut] = None
        try:
            await fut
        except BaseException:
            self._waiters[priority].pop(fut, None)
            if fut.done() and not fut.cancelled():
                # The slot was handed over in the same turn as the cancellation: pass it on.
                self._free()
            raise
        return self._clock() - started

    def release(self) -> None:
        """Free one slot and hand it to the best waiter; raises when nothing is held."""
        if self._active <= 0:
            raise RuntimeError("Admission.release() called with no slot held")
        hold = self._clock() - self._grants.popleft()
        self._mean_hold_s = (
            hold
            if self._mean_hold_s is None
            else self._mean_hold_s + _HOLD_SMOOTHING * (hold - self._mean_hold_s)
        )
        self._active -= 1
        self._dispatch()

    def _grant(self) -> None:
        self._active += 1
        self._grants.append(self._clock())

    def _free(self) -> None:
        # A slot given back unused: no hold time to learn from. Forget the newest grant,
        # which is the one this slot just received.
        self._grants.pop()
        self._active -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        while self.max_concurrency == 0 or self._active < self.max_concurrency:
            fut = self._next_waiter()
            if fut is None:
                return
            self._grant()
            fut.set_result(None)

    def _next_waiter(self) -> asyncio.Future[None] | None:
        for priority in PRIORITIES:
            waiters = self._waiters[priority]
            while waiters:
                fut = next(iter(waiters))
                del waiters[fut]
                if not fut.cancelled():
                    return fut
        return None

    def _retry_after(self, depth: int) -> int:
        """Seconds until a slot is likely free for a request that would queue behind ``depth``."""
        if self._mean_hold_s is not None:
            hold = self._mean_hold_s
        elif self._grants:
            # Nothing released yet: the oldest holder's age is a lower bound on a hold.
            hold = self._clock() - self._grants[0]
        else:
            hold = 0.0
        estimate = math.ceil(hold * (depth + 1) / max(self.max_concurrency, 1))
        return min(max(estimate, _RETRY_AFTER_MIN_S), _RETRY_AFTER_MAX_S)


class AdmissionCollector:
    """Prometheus collector for ``catalogue.QUEUE_DEPTH`` (by priority), read at scrape time."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def collect(self) -> Iterator[Metric]:
        family = exposition.gauge_family(catalogue.QUEUE_DEPTH)
        for priority in PRIORITIES:
            family.add_metric([priority], self._admission.depth(priority))
        yield family
