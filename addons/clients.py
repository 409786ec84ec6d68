"""The proxy's clients: the clients file kept current, and each client's daily token budget.

``addons/access.py`` names each request's client from the clients in force here; this addon
refuses an inference request of a client whose tokens of the current UTC day have reached its
``daily_token_budget`` (429, ``Retry-After`` until the next UTC midnight, error type
``budget_exceeded``, never forwarded). A request already forwarded always finishes: the check
is made on arrival, so requests in flight when the budget is reached may end above it.

It reads the clients file when the configuration is resolved (``LlamaConfig``: at start, and
for a new ``llama_config``) and follows the history file the ``History`` addon writes. Its
thread (never the request path) looks at the clients file every ``RELOAD_S`` and, with
a history file, reads the day's use per client from it every ``REFRESH_S``: proxies that share
the file share their budgets to within that, and a restarted proxy starts from the day's use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mitmproxy import http

from llama_core.budgets import DailyUsage, seconds_to_midnight
from llama_core.clients import Clients, ClientsFile
from llama_core.endpoints import INFERENCE_ENDPOINTS
from llama_core.history import readers
from llama_core.history.schema import HistoryError
from llama_core.history.writer import HistoryWriter
from llama_core.record import RequestRecord
from llama_core.security import Security

from . import options
from .context import ProxyContext
from .history import History
from .tap import JSON_TYPE, KEY

logger = logging.getLogger(__name__)

RELOAD_S = 2.0
REFRESH_S = 5.0


class ClientBudgets:
    """Clients and their day's use; ``configure`` sets them up with ``apply``."""

    def __init__(
        self, context: ProxyContext | None = None, history: History | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.context = context
        self.history = history  # the History addon: its writer is flushed before a refresh
        self.started = False
        self.clock = clock
        self.file: ClientsFile | None = None
        self.usage = DailyUsage(clock)
        self.history_path = ""
        self.writer: HistoryWriter | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if context is not None:
            # Subscribed after the History addon: a refresh then finds the record in the file.
            context.subscribe(self.observe)

    def configure(self, updated: set[str]) -> None:
        if self.context is None or not updated & {"llama_config", "history_path"}:
            return
        writer = self.history.writer if self.history is not None else None
        with options.refusing(starting=not self.started):
            self.apply(self.context.security, options.read("history_path"), writer)

    def clients(self) -> Clients | None:
        """The clients in force (None: no clients file)."""
        file = self.file
        return file.clients if file is not None else None

    def apply(self, security: Security, history_path: str,
              writer: HistoryWriter | None) -> None:
        """Read the clients file (ConfigError when it cannot be used) and the day's use."""
        if not security.clients_file:
            self.file = None
        elif self.file is None or (self.file.path, self.file.access_token) != (
                Path(security.clients_file), security.access_token):
            self.file = ClientsFile(security.clients_file, access_token=security.access_token)
            clients = self.file.clients
            logger.info("clients from %s: %d (%d with a daily token budget)%s",
                        security.clients_file, len(clients.clients), len(clients.budgets()),
                        ", anonymous allowed" if security.allow_anonymous else "")
            if not security.access_token:
                logger.warning(
                    "clients_file without security.access_token: our own processes' requests "
                    "through the proxy (the health daemon's probe) are %s",
                    "counted as client 'anonymous'" if security.allow_anonymous
                    else "refused with 401")
            if clients.budgets() and not history_path:
                logger.warning("daily token budgets without a history file: a restart of "
                               "the proxy starts the day's use again from zero")
        self.history_path, self.writer = history_path, writer
        if self.file is not None and history_path:
            self.refresh()

    def observe(self, record: RequestRecord) -> None:
        """A finished client request (after it went to the history writer)."""
        self.usage.add(record)

    # -- hooks -------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        st = flow.metadata.get(KEY)
        clients = self.clients()
        if (clients is None or st is None or st.client is None or flow.response is not None
                or flow.error is not None or st.endpoint not in INFERENCE_ENDPOINTS):
            return
        budget = clients.budget(st.client)
        if not budget:
            return
        used = self.usage.used(st.client)
        if used < budget:
            return
        wait = seconds_to_midnight(self.clock())
        st.error_type = "budget_exceeded"
        flow.request.stream = False
        message = (f"llama-metrics proxy: client {st.client!r} has used its daily token budget "
                   f"({used} of {budget} tokens today, UTC); it renews at 00:00 UTC, in "
                   f"{wait} s")
        flow.response = http.Response.make(
            429, json.dumps({"error": message}),
            {"Content-Type": JSON_TYPE, "Retry-After": str(wait)})

    def running(self) -> None:
        self.started = True
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="clients", daemon=True)
            self._thread.start()

    def done(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- background ----------------------------------------------------------------------

    def _run(self) -> None:
        next_refresh = time.monotonic() + REFRESH_S
        while not self._stop.wait(RELOAD_S):
            try:
                file = self.file
                if file is not None:
                    file.reload_if_changed()
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + REFRESH_S
                    if file is not None and self.history_path:
                        self.refresh()
            except Exception:
                logger.exception("clients: background check failed; going on")

    def refresh(self) -> None:
        """Read the day's use per client from the history file (the writer flushed first, so
        that every request this proxy finished before is in it)."""
        day = self.usage.begin_read()
        try:
            if self.writer is not None:
                self.writer.flush(timeout=2.0)
            sums = self._read(day)
        except (HistoryError, sqlite3.Error, OSError) as exc:
            self.usage.abandon_read()
            logger.debug("clients: the day's use not read from %s: %s", self.history_path, exc)
            return
        except BaseException:
            self.usage.abandon_read()
            raise
        self.usage.finish_read(day, sums)

    def _read(self, day: float) -> dict[str, int]:
        if not Path(self.history_path).is_file():
            return {}
        conn = readers.connect_readonly(self.history_path)
        with contextlib.closing(conn):
            return readers.client_tokens_since(conn, day)

