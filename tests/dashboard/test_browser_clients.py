"""The page's clients section (static/clients.js) in headless Chromium, through the real path.

A real proxy with a clients file (alice; ci-bot with a day's budget of 1,000 tokens) answers
the official ollama client under each key, its history file is the dashboard's, and the page
shows each client by name with its requests, tokens and budget meter, a user table for the
user header, and on a phone the same rows as labelled cards without sideways scroll.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import pytest

from ollama_sim import SimServer
from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, open_page
from tests.e2e.test_client_keys import ALICE, BOT, USER_HEADER, clients_yaml, wait_rows
from tests.support.processes import run_dashboard, run_proxy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                       reason="needs Debian's chromium (apt-get install chromium)"),
]

sync_api = pytest.importorskip("playwright.sync_api")

ROWS = "#clients-table tbody tr"


@pytest.fixture
def sim() -> Iterator[SimServer]:
    server = SimServer(port=0, tokens=20, seed=11)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def cells(page: Any, selector: str) -> list[list[tuple[str, str]]]:
    """Each row of a table as (column label, text) pairs."""
    return [[(str(label), str(text)) for label, text in row] for row in page.eval_on_selector_all(
        selector, "rows => rows.map(r => [...r.cells].map(c => [c.dataset.label, c.textContent]))")]


def test_clients_by_name_with_budget_and_users(sim: SimServer, tmp_path: Path) -> None:
    history = tmp_path / "history.db"
    clients_file = tmp_path / "clients.yml"
    clients_file.write_text(clients_yaml(bot_budget=1000))
    env = {"LLAMA_METRICS_SECURITY_CLIENTS_FILE": str(clients_file),
           "LLAMA_METRICS_SECURITY_CLIENT_USER_HEADER": USER_HEADER}
    problems: list[str] = []
    with run_proxy(sim.url, "--set", f"history_path={history}", env=env) as proxy, run_dashboard(
            "--proxy-metrics", proxy.metrics_url, "--history", str(history), "--healthd", "",
            env=env) as dashboard, sync_api.sync_playwright() as p:
        used: dict[str, int] = {}
        for key, name, user, times in ((ALICE, "alice", None, 1), (BOT, "ci-bot", "build-7", 2)):
            headers = {"Authorization": f"Bearer {key}", **({USER_HEADER: user} if user else {})}
            client = ollama.Client(host=proxy.url, headers=headers)
            try:
                for _ in range(times):
                    answer = client.chat(model="llama3.2", messages=[
                        {"role": "user", "content": "hi"}])
                    used[name] = used.get(name, 0) + (answer.prompt_eval_count or 0) + (
                        answer.eval_count or 0)
            finally:
                client.close()
        proxy.wait_counted(3)
        wait_rows(history, 3)  # the page reads the history once at load, then every 30 s
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for width, height in ((1440, 900), (390, 844)):
                page = open_page(browser, dashboard.url, width, height, problems)
                page.wait_for_function(
                    f"() => [...document.querySelectorAll('{ROWS}')].filter("
                    "r => r.cells.length === 6 && r.cells[1].textContent !== '0').length === 2",
                    timeout=15_000)
                rows = {row[0][1]: dict(row) for row in cells(page, ROWS)}
                assert set(rows) == {"alice", "ci-bot"}, rows
                bot = rows["ci-bot"]
                assert bot["Requests"] == "2", bot
                assert re.fullmatch(r"[\d,]+ → [\d,]+", bot["Tokens in → out"]), bot
                budget = f"{used['ci-bot']:,} of 1,000 ({math.floor(used['ci-bot'] / 10 + 0.5)} %)"
                assert bot["Budget used today"] == budget, (bot, used)
                assert rows["alice"]["Budget used today"] == f"{used['alice']:,} tokens, no budget"
                assert page.locator("#clients-table td.budget .meter span").count() == 1
                # The name cell elides a long name and keeps the whole one on hover.
                assert page.get_attribute("#clients-table td.name span", "title") in rows
                assert cells(page, "#users-table tbody tr")[0][:2] == [
                    ("User", "build-7"), ("Client", "ci-bot")]
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                page.close()
        finally:
            browser.close()
    assert problems == []
