"""Use by client and by user from the proxy's history file, with each client's day against its
budget: what ``/api/clients`` serves and the page's client and user tables show.

The rows are counted by SQL (``llama_core.history.readers.client_usage``); the budgets come
from the clients file (``security.clients_file``), read again when it changes, and the day's
use is the history's, as the proxy counts it (``llama_core.budgets``). Answers are cached for
a few seconds per window: the tables refresh with the history charts, not per request.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llama_core.budgets import day_start, seconds_to_midnight
from llama_core.catalogue import TTFT_BUCKETS
from llama_core.clients import ClientsFile
from llama_core.history import readers
from llama_core.history.schema import HistoryError
from llama_core.settings import ConfigError

from .stats import cumulative, histogram_quantile, ratio
from .window_cache import WindowCache
from .windows import SourceError, Window

logger = logging.getLogger(__name__)

CACHE_S = 5.0


@dataclass(slots=True)
class Usage:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    ttft_hist: list[float] = field(default_factory=lambda: [0.0] * (len(TTFT_BUCKETS) + 1))

    def add(self, row: dict[str, Any]) -> None:
        self.requests += row["requests"]
        self.errors += row["errors"]
        self.prompt_tokens += row["prompt_tokens"]
        self.generated_tokens += row["generated_tokens"]
        if row["ttft_le"] is not None:
            self.ttft_hist[row["ttft_le"]] += row["requests"]

    def row(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "tokens": self.prompt_tokens + self.generated_tokens,
            "ttft_p95": histogram_quantile(0.95, cumulative(TTFT_BUCKETS, self.ttft_hist)),
        }


class ClientUsage:
    """Reads ``history_path`` read-only (a fresh connection per answer) and the clients file."""

    def __init__(self, history_path: str, clients_file: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.history_path = history_path
        self.clients_path = clients_file
        self.clock = clock
        self._clients: ClientsFile | None = None
        self._clients_error: str | None = None
        self._cache = WindowCache(CACHE_S)

    def budgets(self) -> tuple[dict[str, int], list[str], str | None]:
        """Budgets per client, every configured name, and why they are unknown (or None)."""
        if not self.clients_path:
            return {}, [], None
        try:
            if self._clients is None:
                self._clients = ClientsFile(self.clients_path)
            else:
                self._clients.reload_if_changed()
        except ConfigError as exc:
            return {}, [], f"clients file not read: {exc}"
        clients = self._clients.clients
        return clients.budgets(), list(clients.names), None

    def answer(self, window: Window) -> dict[str, Any]:
        return self._cache.answer(window, self.clock(), self._read)

    def _read(self, window: Window, now: float) -> dict[str, Any]:
        since, today = now - window.seconds, day_start(now)
        try:
            conn = readers.connect_readonly(self.history_path)
        except (HistoryError, OSError) as exc:
            raise SourceError(str(exc)) from exc
        with contextlib.closing(conn):
            try:
                migrated = readers.has_clients(conn)
                by_client = readers.client_usage(conn, since, now + 1, ttft_bounds=TTFT_BUCKETS)
                by_user = readers.client_usage(conn, since, now + 1, ttft_bounds=TTFT_BUCKETS,
                                               by_user=True)
                today_use = readers.client_tokens_since(conn, today)
            except sqlite3.Error as exc:
                raise SourceError(f"cannot read history {self.history_path}: {exc}") from exc
        budgets, configured, clients_error = self.budgets()
        clients: dict[str, Usage] = {name: Usage() for name in configured}
        unidentified = Usage()
        for row in by_client:
            target = unidentified if row["client"] is None else clients.setdefault(
                row["client"], Usage())
            target.add(row)
        users: dict[tuple[str, str], Usage] = {}
        for row in by_user:
            if row["user"] is not None:
                users.setdefault((row["client"] or "", row["user"]), Usage()).add(row)
        client_rows = []
        for name, usage in clients.items():
            budget = budgets.get(name) or None
            used = today_use.get(name, 0)
            client_rows.append({"client": name, **usage.row(), "daily_token_budget": budget,
                                "used_today": used, "budget_used": ratio(used, budget)})
        client_rows.sort(key=lambda r: (-r["tokens"], -r["requests"], r["client"]))
        user_rows = [{"client": c, "user": u, **usage.row()} for (c, u), usage in users.items()]
        user_rows.sort(key=lambda r: (-r["tokens"], -r["requests"], r["client"], r["user"]))
        note = clients_error
        if not migrated:
            note = ("this history file has no client column yet (schema before 4): the proxy "
                    "adds it when it next starts")
        elif not self.clients_path and not client_rows:
            note = "no clients configured (security.clients_file)"
        return {
            "window": window.name,
            "since": since,
            "until": now,
            "source": "sqlite",
            "configured": bool(self.clients_path),
            "day_start": today,
            "renews_in_seconds": seconds_to_midnight(now),
            "clients": client_rows,
            "unidentified": unidentified.row(),
            "users": user_rows,
            "note": note,
        }


def usage_source(history_path: str, clients_file: str,
                 clock: Callable[[], float] = time.time) -> ClientUsage | None:
    """The source for ``/api/clients``: only the history file has clients (None without one)."""
    return ClientUsage(history_path, clients_file, clock) if history_path else None
