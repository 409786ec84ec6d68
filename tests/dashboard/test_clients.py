"""``/api/clients``: per-client and per-user use from a real history file, against the budgets
of a real clients file; a file of schema 3 (before clients) answers without failing."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from dashboard import create_app
from llama_core.budgets import DAY_S
from llama_core.history.schema import COLUMNS, columns_through
from llama_core.record import RequestRecord
from llama_core.security import Security
from tests.dashboard.conftest import PROXY, T0, Clock, FakeProxy
from tests.history_files import write_history

CLIENTS = """clients:
  alice:
    token: "alice-token-0123456789"
  ci-bot:
    token: "ci-bot-token-9876543210"
    daily_token_budget: 1000
  idle:
    token: "idle-token-0123456789"
"""
TODAY = T0 - T0 % DAY_S


def row(client: str | None, prompt: int, generated: int, *, at: float = T0 - 60,
        user: str | None = None, ttft: float | None = 0.2, error: str | None = None,
        ) -> RequestRecord:
    return RequestRecord(started_at=at, endpoint="/api/chat", model="m", status=200,
                         prompt_tokens=prompt, generated_tokens=generated, client=client,
                         user=user, ttft_s=ttft, stream=ttft is not None, error_type=error)


def get(tmp_path: Path, records: list[RequestRecord] | None, window: str = "1h",
        clients: str | None = CLIENTS) -> tuple[int, Any]:
    db = tmp_path / "history.db"
    if records is not None:
        write_history(db, records)
    security = Security()
    if clients is not None:
        (tmp_path / "clients.yml").write_text(clients)
        security = Security(clients_file=str(tmp_path / "clients.yml"))
    fake = FakeProxy()
    app = create_app({"TESTING": True, "TRANSPORT": fake.send, "CLOCK": Clock(),
                      "AUTOSTART": False, "SECURITY": security,
                      "SETTINGS": {"proxy_metrics_url": PROXY, "history_path": str(db)}})
    try:
        response = app.test_client().get(f"/api/clients?window={window}")
        return response.status_code, response.get_json()
    finally:
        app.extensions["llama_metrics"].stop()


def test_per_client_rows_with_budget_use(tmp_path: Path) -> None:
    status, body = get(tmp_path, [
        row("alice", 10, 20), row("alice", 5, 5, ttft=0.6, user="Zoë"),
        row("ci-bot", 100, 300, user="build-7"), row("ci-bot", 0, 0, error="budget_exceeded"),
        row("ci-bot", 50, 50, at=T0 - 2 * 3600),  # today (T0 is late in its day), not 1h
        row("ci-bot", 999, 999, at=TODAY - 10),  # yesterday
        row(None, 0, 0, error="unauthorized", ttft=None),
        row("anonymous", 1, 2),
    ])
    assert T0 - TODAY > 2 * 3600  # the fixture's clock is where the rows say
    assert status == 200, body
    assert body["configured"] and body["note"] is None
    assert body["renews_in_seconds"] == DAY_S - (T0 - TODAY)
    rows = {r["client"]: r for r in body["clients"]}
    assert [r["client"] for r in body["clients"]] == ["ci-bot", "alice", "anonymous", "idle"]
    assert rows["alice"] | {"ttft_p95": None} == {
        "client": "alice", "requests": 2, "errors": 0, "prompt_tokens": 15,
        "generated_tokens": 25, "tokens": 40, "ttft_p95": None,
        "daily_token_budget": None, "used_today": 40, "budget_used": None}
    assert 0.25 < rows["alice"]["ttft_p95"] <= 0.75
    bot = rows["ci-bot"]
    assert (bot["requests"], bot["errors"], bot["tokens"]) == (2, 1, 400)
    assert (bot["daily_token_budget"], bot["used_today"]) == (1000, 500)
    assert bot["budget_used"] == 0.5
    assert rows["idle"]["requests"] == 0 and rows["anonymous"]["tokens"] == 3
    assert body["unidentified"]["requests"] == 1 and body["unidentified"]["errors"] == 1
    assert {(u["client"], u["user"], u["tokens"]) for u in body["users"]} == {
        ("alice", "Zoë", 10), ("ci-bot", "build-7", 400)}


def test_the_window_counts_and_the_day_does_not_move(tmp_path: Path) -> None:
    status, body = get(tmp_path, [row("ci-bot", 50, 50, at=T0 - 2 * 3600)], window="15m")
    assert status == 200
    bot = next(r for r in body["clients"] if r["client"] == "ci-bot")
    assert bot["requests"] == 0 and bot["used_today"] == 100


def test_without_a_clients_file_rows_show_what_history_has(tmp_path: Path) -> None:
    status, body = get(tmp_path, [row(None, 1, 1)], clients=None)
    assert status == 200 and not body["configured"]
    assert body["clients"] == [] and body["unidentified"]["requests"] == 1
    assert "security.clients_file" in body["note"]


def test_a_bad_clients_file_is_a_note_not_a_failure(tmp_path: Path) -> None:
    status, body = get(tmp_path, [row("alice", 1, 1)], clients="clients: [x]\n")
    assert status == 200
    assert "clients file not read" in body["note"] and "security.clients_file" in body["note"]
    assert [r["client"] for r in body["clients"]] == ["alice"]


def test_no_history_file_is_503_and_a_bad_window_400(tmp_path: Path) -> None:
    status, body = get(tmp_path, None)
    assert status == 503 and "does not exist" in body["error"]
    status, body = get(tmp_path, [], window="2h")
    assert status == 400 and "window" in body["error"]


def test_a_schema_3_file_answers_without_clients(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    names = columns_through(3)
    types = {name: sqltype for name, sqltype, _ in COLUMNS}
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE requests (id INTEGER PRIMARY KEY, "
                     + ", ".join(f"{n} {types[n]}" for n in names) + ")")
        conn.execute("INSERT INTO requests (ts, endpoint, model, status, priority, stream,"
                     " usage_reported, duration_s, queue_wait_s, request_bytes, response_bytes)"
                     " VALUES (?, '/api/chat', 'm', 200, 'normal', 0, 1, 1.0, 0, 1, 1)",
                     (T0 - 60,))
        conn.execute("PRAGMA user_version = 3")
    status, body = get(tmp_path, None)
    assert status == 200, body
    assert "no client column" in body["note"]
    assert all(r["requests"] == 0 for r in body["clients"])
