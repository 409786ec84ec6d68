"""Client keys through a real mitmdump with the official ollama and openai clients: each
request counted under its client, exactly, in the metrics and the history; 401 without a key;
429 past a day's budget, kept across a restart; a changed clients file picked up live."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest

from tests.reliability.wire import family_delta, requests_total
from tests.support.processes import ADDON, MITMDUMP, ROOT, Proxy, run_proxy

pytestmark = pytest.mark.e2e

ALICE = "alice-key-" + "a" * 16
BOT = "ci-bot-key-" + "b" * 16
CAROL = "carol-key-" + "c" * 16
MESSAGES: Any = [{"role": "user", "content": "Why is the sky blue?"}]
USER_HEADER = "X-OpenWebUI-User-Name"


def clients_yaml(bot_budget: int = 0, extra: str = "") -> str:
    return (f"clients:\n  alice:\n    token: {ALICE}\n"
            f"  ci-bot:\n    token_sha256: {hashlib.sha256(BOT.encode()).hexdigest()}\n"
            f"    daily_token_budget: {bot_budget}\n{extra}")


def start(sim: Any, tmp: Path, **env: str) -> Any:
    return run_proxy(sim.url, "--set", f"history_path={tmp / 'history.db'}", env={
        "LLAMA_METRICS_SECURITY_CLIENTS_FILE": str(tmp / "clients.yml"),
        "LLAMA_METRICS_SECURITY_CLIENT_USER_HEADER": USER_HEADER, **env})


def history(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute(sql).fetchall()


def wait_rows(db: Path, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not (db.exists() and history(db, "SELECT COUNT(*) FROM requests")[0][0] >= n):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} history rows not written in {timeout}s")
        time.sleep(0.05)  # the writer's thread in another process: nothing to await


def by_client(samples: dict, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, labels), v in samples.items():
        if n == "ollama_proxy_" + name:
            client = dict(labels).get("client", "?")
            out[client] = out.get(client, 0) + v
    return out


@pytest.fixture(scope="module")
def keyed(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proxy, Path]]:
    tmp = tmp_path_factory.mktemp("keys")
    (tmp / "clients.yml").write_text(clients_yaml())
    with start(sim, tmp) as proxy:
        yield proxy, tmp


def test_two_clients_counted_exactly(sim: Any, keyed: tuple[Proxy, Path]) -> None:
    proxy, tmp = keyed
    before, reports = proxy.scrape(), len(sim.reports)
    alice = ollama.Client(host=proxy.url, headers={"Authorization": f"Bearer {ALICE}",
                                                   USER_HEADER: "zoe.example"})
    with alice:
        assert "".join(p.message.content or "" for p in alice.chat(
            model="llama3.2", messages=MESSAGES, stream=True))
        assert alice.generate(model="llama3.2", prompt="hi", stream=False).response
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key=BOT, max_retries=0) as bot:
        assert bot.chat.completions.create(model="llama3.2", messages=MESSAGES).choices
        with bot.chat.completions.create(model="llama3.2", messages=MESSAGES,
                                         stream=True) as stream:
            assert any(chunk.choices for chunk in stream)
        assert bot.models.list().data  # metadata: counted, no tokens
    sent = sim.wait_for_reports(reports + 4)[reports:]
    after = proxy.wait_counted(requests_total(before) + 5)

    def grown(name: str) -> dict[str, float]:
        old = by_client(before, name)
        return {k: v - old.get(k, 0) for k, v in by_client(after, name).items()
                if v != old.get(k, 0)}

    assert grown("requests_total") == {"alice": 2, "ci-bot": 3}
    # The simulator's reports in order: alice's two answers, then ci-bot's two.
    prompt = {c: sum(r["prompt_eval_count"] for r in sent[i:i + 2])
              for c, i in (("alice", 0), ("ci-bot", 2))}
    generated = {c: sum(r["eval_count"] for r in sent[i:i + 2])
                 for c, i in (("alice", 0), ("ci-bot", 2))}
    assert grown("prompt_tokens_total") == prompt
    assert grown("generated_tokens_total") == generated
    assert not grown("errors_total")

    wait_rows(tmp / "history.db", 5)
    rows = history(tmp / "history.db", "SELECT client, user, COUNT(*),"
                   " SUM(COALESCE(prompt_tokens, 0)), SUM(COALESCE(generated_tokens, 0))"
                   " FROM requests GROUP BY client, user ORDER BY client")
    assert rows == [("alice", "zoe.example", 2, prompt["alice"], generated["alice"]),
                    ("ci-bot", None, 3, prompt["ci-bot"], generated["ci-bot"])]


def test_no_key_or_an_unknown_one_is_401_and_never_forwarded(
    sim: Any, keyed: tuple[Proxy, Path]
) -> None:
    proxy, _ = keyed
    before, reports = proxy.scrape(), len(sim.reports)
    for headers in ({}, {"Authorization": "Bearer unknown-key-0123456789"},
                    {"Authorization": f"Bearer {ALICE}x"}):
        with ollama.Client(host=proxy.url, headers=headers) as client, \
                pytest.raises(ollama.ResponseError) as e:
            client.generate(model="llama3.2", prompt="hi", stream=False)
        assert e.value.status_code == 401 and "client token" in e.value.error
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="not-a-key-0123456789",
                       max_retries=0) as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="llama3.2", messages=MESSAGES)
    after = proxy.wait_counted(requests_total(before) + 4)
    assert len(sim.reports) == reports
    assert family_delta(before, after, "requests_total", status="401", client="") == 4
    assert family_delta(before, after, "errors_total", error_type="unauthorized",
                        client="") == 4


def get(url: str, token: str, body: dict) -> tuple[int, dict[str, str], dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=20) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), json.loads(e.read())


def test_a_spent_budget_is_429_until_midnight_and_stays_spent_after_a_restart(
    sim: Any, tmp_path: Path
) -> None:
    (tmp_path / "clients.yml").write_text(clients_yaml(bot_budget=20))
    generate = {"model": "llama3.2", "prompt": "hi", "stream": False}
    with start(sim, tmp_path) as proxy:
        status, _, answer = get(proxy.url + "/api/generate", BOT, generate)
        assert status == 200
        spent = answer["prompt_eval_count"] + answer["eval_count"]
        assert spent >= 20  # one answer spends the day: 12 generated, a prompt besides
        before, reports = proxy.scrape(), len(sim.reports)
        with openai.OpenAI(base_url=proxy.url + "/v1", api_key=BOT, max_retries=0) as bot, \
                pytest.raises(openai.RateLimitError) as e:
            bot.chat.completions.create(model="llama3.2", messages=MESSAGES)
        assert f"{spent} of 20 tokens" in e.value.response.json()["error"]
        assert len(sim.reports) == reports
        after = proxy.wait_counted(requests_total(before) + 1)
        assert family_delta(before, after, "errors_total", error_type="budget_exceeded",
                            client="ci-bot") == 1
        status, _, _ = get(proxy.url + "/api/generate", ALICE, generate)  # no budget
        assert status == 200
    with start(sim, tmp_path) as proxy:  # the day's use comes back from the history
        reports = len(sim.reports)
        status, headers, body = get(proxy.url + "/api/generate", BOT, generate)
        assert status == 429, body
        wait = int(headers["Retry-After"])
        assert abs(wait - (86400 - time.time() % 86400)) < 5
        assert "ci-bot" in body["error"] and BOT not in body["error"]
        with ollama.Client(host=proxy.url, headers={"Authorization": f"Bearer {BOT}"}) as c, \
                pytest.raises(ollama.ResponseError) as err:
            c.generate(model="llama3.2", prompt="hi")
        assert err.value.status_code == 429
        assert len(sim.reports) == reports


def test_a_changed_clients_file_is_picked_up_and_a_bad_edit_ignored(
    sim: Any, tmp_path: Path
) -> None:
    clients = tmp_path / "clients.yml"
    clients.write_text(clients_yaml())
    generate = {"model": "llama3.2", "prompt": "hi", "stream": False}
    with start(sim, tmp_path) as proxy:
        assert get(proxy.url + "/api/generate", CAROL, generate)[0] == 401
        clients.write_text(clients_yaml(extra=f"  carol:\n    token: {CAROL}\n"))

        def status() -> int:
            return get(proxy.url + "/api/generate", CAROL, generate)[0]

        deadline = time.monotonic() + 15
        while status() != 200:  # the proxy looks at the file every 2 s, off the request path
            assert time.monotonic() < deadline, proxy.log[-3000:]
            time.sleep(0.2)
        clients.write_text(f"clients:\n  carol:\n    token: SECRET-{CAROL[:3]}\n")
        deadline = time.monotonic() + 15
        while "not reloaded" not in proxy.log:
            assert time.monotonic() < deadline, proxy.log[-3000:]
            time.sleep(0.1)
        line = next(x for x in proxy.lines if "not reloaded" in x)
        assert "clients.carol.token" in line and "SECRET" not in line
        assert status() == 200  # the last good file stays in force
        assert CAROL not in proxy.log and ALICE not in proxy.log


def test_a_bad_clients_file_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "clients.yml").write_text(f"clients:\n  alice:\n    token: {ALICE}\n"
                                          "    daily_token_budget: lots\n")
    done = subprocess.run(
        [str(MITMDUMP), "--mode", "reverse:http://127.0.0.1:9", "-p", "0", "-s", str(ADDON),
         "--set", "metrics_port=0", "--set", "history_path="],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
             "LLAMA_METRICS_CONFIG": str(ROOT / "config" / "llama-metrics.yml"),
             "LLAMA_METRICS_SECURITY_CLIENTS_FILE": str(tmp_path / "clients.yml")})
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert re.search(r"security\.clients_file: clients\.alice\.daily_token_budget='lots'", out)
    assert ALICE not in out
