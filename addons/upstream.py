"""The proxy's connection to Ollama: waiting out a restart, never cutting a slow answer.

Three behaviours, each with its option:

- ``upstream_connect_retry_seconds`` (default 5): before a connection to Ollama is opened for
  a request (so before any of its bytes went upstream), the address is probed; while Ollama
  refuses connections (restarting, ``ollama serve`` coming up) the probe is repeated with
  backoff for at most this long, then the connection is opened as usual (a 502 if Ollama is
  still away). Nothing already sent is ever retried. 0 turns it off (and the probe with it).
- mitmproxy's idle limit (``tcp_timeout``, 600 s) closes a client connection with nothing
  going on; Ollama sets no timeout at all, and a non-streamed generation on a CPU or a
  ``"stream": false`` pull is silent for as long as it takes. While a request is in flight
  its connection's idle limit is held off, so the limit only closes idle connections.
- ``upstream_timeout_seconds`` (default 0: none): the longest the proxy waits for Ollama to
  begin its answer. When it passes, the client gets a 504 with an Ollama-shaped error body
  and the request is counted with error type ``timeout``.

mitmproxy offers no hook for the last two, so they work on its connection handler (the
``proxyserver`` addon's ``connections``, each with its ``timeout_watchdog`` and
``transports``): mitmproxy is pinned, and the end-to-end tests fail if that changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import events, server_hooks
from prometheus_client import CollectorRegistry

from llama_core import catalogue, exposition

from . import options

logger = logging.getLogger(__name__)

RETRY_OPTION = "upstream_connect_retry_seconds"
TIMEOUT_OPTION = "upstream_timeout_seconds"
# Backoff between probes while Ollama refuses connections: doubling, from this to that.
FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 0.5
# A held-off idle limit: longer than any request (about 31 years).
HELD_TIMEOUT_S = 10**9
# The timer of a request whose upstream connection is still being opened looks again after this.
RECHECK_S = 0.25
KEY = "llama_metrics"  # the tap's FlowState (addons/tap.py)


def timeout_response(seconds: float) -> bytes:
    """What the client gets when Ollama has not begun its answer in ``seconds``."""
    body = json.dumps({
        "error": f"llama-metrics proxy: Ollama did not begin its answer within {seconds:g} s "
                 f"({TIMEOUT_OPTION})"
    }).encode()
    head = (
        "HTTP/1.1 504 Gateway Timeout\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class _Held:
    """One client connection whose idle limit is held off while its requests are in flight."""

    __slots__ = ("count", "timeout", "disarmed")

    def __init__(self, watchdog: Any) -> None:
        self.count = 0
        self.timeout = watchdog.timeout
        # The watchdog sleeps until its deadline and then only compares times: a long timeout
        # makes that comparison fail, and disarm() keeps it waiting until we are done.
        watchdog.timeout = HELD_TIMEOUT_S
        self.disarmed = watchdog.disarm()
        self.disarmed.__enter__()

    def release(self, watchdog: Any) -> None:
        watchdog.timeout = self.timeout
        self.disarmed.__exit__(None, None, None)  # restarts the idle clock from now


class UpstreamGuard:
    """Waits for a restarting Ollama, holds off mitmproxy's idle limit, and times out on request."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.retries = exposition.counter(catalogue.UPSTREAM_CONNECT_RETRIES, registry)
        self.waits = exposition.counter(catalogue.UPSTREAM_CONNECT_WAITS, registry)
        self.retry_s: float = options.KEYS[RETRY_OPTION].default
        self.timeout_s: float = options.KEYS[TIMEOUT_OPTION].default
        self._held: dict[str, _Held] = {}
        self.started = False
        # Client connections of our own processes' requests (X-Llama-Metrics-Source): the
        # health daemon's probe reports an outage as it is, so it never waits for Ollama.
        self._no_wait: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}  # flow id -> its timeout

    # -- options ---------------------------------------------------------------------------

    def load(self, loader: Loader) -> None:
        options.declare(
            loader, RETRY_OPTION,
            "Seconds a request waits for Ollama to accept connections (a restart) before its "
            "502; 0 = no wait.",
        )
        options.declare(
            loader, TIMEOUT_OPTION,
            "Seconds the proxy waits for Ollama to begin an answer before a 504; 0 = no "
            "limit (Ollama has none).",
        )

    def configure(self, updated: set[str]) -> None:
        if not updated & {RETRY_OPTION, TIMEOUT_OPTION}:
            return
        with options.refusing(starting=not self.started):
            retry_s = options.read(RETRY_OPTION)
            timeout_s = options.read(TIMEOUT_OPTION)
        self.retry_s, self.timeout_s = retry_s, timeout_s

    def running(self) -> None:
        self.started = True

    # -- waiting for a restarting Ollama ---------------------------------------------------

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        try:
            if data.client.id in self._no_wait:  # our own probe: it measures, it does not wait
                return
            if self.retry_s > 0 and data.server.address and not data.server.error:
                await self.wait_until_accepting(data.server.address[:2], self.retry_s)
        except Exception:
            logger.exception("could not wait for the upstream; connecting at once")

    async def wait_until_accepting(self, address: tuple[str, int], budget: float) -> bool:
        """Probe ``address`` until it accepts a connection or ``budget`` seconds pass.

        The probe is closed at once; mitmproxy then opens the request's own connection.
        True when it accepted; retries are counted.
        """
        deadline = time.monotonic() + budget
        backoff, attempts = FIRST_BACKOFF_S, 0
        while True:
            left = deadline - time.monotonic()
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(*address), timeout=max(left, 0.05))
            except (OSError, asyncio.TimeoutError) as e:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.waits.labels("gave_up").inc()
                    logger.warning("upstream %s:%s still refuses connections after %.1f s: %s",
                                   *address, budget, e)
                    return False
                if attempts == 0:
                    logger.info("upstream %s:%s refuses connections (%s); waiting up to %.1f s",
                                *address, e, budget)
                attempts += 1
                self.retries.inc()
                await asyncio.sleep(min(backoff, left))
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            writer.close()
            if attempts:
                self.waits.labels("connected").inc()
                logger.info("upstream %s:%s accepts connections again", *address)
            return True

    # -- in flight: no idle cut, and the optional timeout ----------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        try:
            if flow.response is not None or flow.error is not None or not flow.live:
                return  # answered or cut by the proxy itself: nothing goes upstream
            self.hold_idle_limit(flow)
            st = flow.metadata.get(KEY)
            if st is not None and st.internal is not None:
                self._no_wait.add(flow.client_conn.id)
            if self.timeout_s > 0:
                self._arm(flow, self.timeout_s)
        except Exception:
            logger.exception("could not watch %s %s", flow.request.method, flow.request.path)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._disarm(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        self._done(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._done(flow)

    def _done(self, flow: http.HTTPFlow) -> None:
        self._disarm(flow)
        self.release_idle_limit(flow)
        self._no_wait.discard(flow.client_conn.id)

    def client_disconnected(self, client: Any) -> None:
        self._held.pop(getattr(client, "id", ""), None)  # its watchdog is gone with it
        self._no_wait.discard(getattr(client, "id", ""))

    @staticmethod
    def _handler(flow: http.HTTPFlow) -> Any:
        proxyserver = ctx.master.addons.get("proxyserver")
        connections = getattr(proxyserver, "connections", {})
        return connections.get(flow.client_conn.id)

    def hold_idle_limit(self, flow: http.HTTPFlow) -> None:
        handler = self._handler(flow)
        watchdog = getattr(handler, "timeout_watchdog", None)
        if watchdog is None:
            return
        held = self._held.get(flow.client_conn.id)
        if held is None:
            held = self._held[flow.client_conn.id] = _Held(watchdog)
        held.count += 1
        flow.metadata["llama_metrics_idle_held"] = True

    def release_idle_limit(self, flow: http.HTTPFlow) -> None:
        try:
            if not flow.metadata.pop("llama_metrics_idle_held", False):
                return
            held = self._held.get(flow.client_conn.id)
            if held is None:
                return
            held.count -= 1
            if held.count <= 0:
                del self._held[flow.client_conn.id]
                watchdog = getattr(self._handler(flow), "timeout_watchdog", None)
                if watchdog is not None:
                    held.release(watchdog)
        except Exception:
            logger.exception("could not restore the idle limit of a connection")

    def _arm(self, flow: http.HTTPFlow, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._timers[flow.id] = loop.call_later(delay, self._expired, flow)

    def _disarm(self, flow: http.HTTPFlow) -> None:
        timer = self._timers.pop(flow.id, None)
        if timer is not None:
            timer.cancel()

    def _expired(self, flow: http.HTTPFlow) -> None:
        self._timers.pop(flow.id, None)
        try:
            if flow.response is not None or flow.error is not None or not flow.live:
                return
            handler = self._handler(flow)
            transports = getattr(handler, "transports", {})
            io = transports.get(flow.server_conn)
            if io is None or io.writer is None:  # still connecting: look again shortly
                self._arm(flow, RECHECK_S)
                return
            asyncio.ensure_future(self._answer_timeout(handler, flow))
        except Exception:
            logger.exception("could not time out %s %s", flow.request.method, flow.request.path)

    async def _answer_timeout(self, handler: Any, flow: http.HTTPFlow) -> None:
        """Answer the client as if Ollama had sent a 504, and drop the upstream connection.

        The answer goes in where Ollama's would have come from, so every hook (and the
        count) sees an ordinary response; ``Connection: close`` makes mitmproxy close the
        upstream connection, which tells Ollama its client left (it stops generating).
        """
        if flow.response is not None or flow.error is not None or not flow.live:
            return
        st = flow.metadata.get(KEY)
        if st is not None:
            st.error_type = "timeout"
        logger.warning("%s %s: no answer from Ollama in %g s; answering 504",
                       flow.request.method, flow.request.path, self.timeout_s)
        await handler.server_event(
            events.DataReceived(flow.server_conn, timeout_response(self.timeout_s)))
