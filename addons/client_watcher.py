"""Tells requests waiting in the proxy's queue that their client left, one task for all."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mitmproxy.connection import ConnectionState

logger = logging.getLogger(__name__)

# While a request waits in the queue its client may leave; mitmproxy holds the connection's
# events until the hook returns, so one watcher looks at every queued client this often.
CLIENT_CHECK_S = 0.05


class ClientWatcher:
    """Tells queued requests that their client left, with one task for all of them.

    mitmproxy delivers a connection's events only after the hook that holds it returns, so a
    request waiting in the queue cannot hear its client go; its connection's state says so.
    One task looks at every watched connection each ``interval`` while any is watched (a
    thousand queued requests cost one wake-up per interval, not a thousand).
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._watched: dict[asyncio.Future[None], Any] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, conn: Any) -> asyncio.Future[None]:
        """A future that completes when ``conn`` (a client connection) can no longer be read."""
        left: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watched[left] = conn
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return left

    def unwatch(self, left: asyncio.Future[None]) -> None:
        self._watched.pop(left, None)
        if not left.done():
            left.cancel()

    def __len__(self) -> int:
        return len(self._watched)

    async def _run(self) -> None:
        while self._watched:
            await asyncio.sleep(self.interval)
            for left, conn in list(self._watched.items()):
                if not conn.state & ConnectionState.CAN_READ:
                    del self._watched[left]
                    if not left.done():
                        left.set_result(None)
