"""The clients addons beside the tap: who a request is from (access.py), and its budget
(clients.py): 401 and 429 answered on the headers, never forwarded, counted by client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mitmproxy import http
from prometheus_client import CollectorRegistry

from addons.access import AccessControl
from addons.clients import ClientBudgets
from addons.context import ProxyContext
from addons.metrics import ProxyMetrics
from addons.routes import ModelLabels
from addons.tap import KEY, TrafficTap
from llama_core import traffic
from llama_core.budgets import DAY_S
from llama_core.record import RequestRecord
from llama_core.security import Security
from llama_core.settings import ConfigError
from tests.addons.test_tap import make_flow, value
from tests.history_files import write_history

ALICE = "alice-token-0123456789"
BOT = "ci-bot-token-9876543210"
OWN = "own-access-token-0123456789"
CLIENTS = f"""clients:
  alice:
    token: "{ALICE}"
  ci-bot:
    token: "{BOT}"
    daily_token_budget: 100
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}


class Proxy:
    """The request side as addons/llama_metrics.py composes it: tap, access, budgets."""

    def __init__(self, tmp_path: Path, **security: object) -> None:
        path = tmp_path / "clients.yml"
        path.write_text(CLIENTS)
        self.security = Security(**{"clients_file": str(path), **security})  # type: ignore[arg-type]
        self.registry = CollectorRegistry()
        self.records: list[RequestRecord] = []
        self.forwarded: list[http.HTTPFlow] = []
        self.tap = TrafficTap(ProxyMetrics(self.registry), ModelLabels(),
                              on_record=self.record)
        self.budgets = ClientBudgets()
        self.budgets.apply(self.security, "", None)
        self.access = AccessControl(ProxyContext(security=self.security),
                                    clients=self.budgets.clients)

    def record(self, record: RequestRecord) -> None:
        self.records.append(record)
        self.budgets.observe(record)

    def send(self, path: str = "/api/chat", headers: dict[str, str] | None = None,
             body: object = CHAT) -> http.HTTPFlow:
        flow = make_flow(path, body, headers)
        for addon in (self.tap, self.access, self.budgets):
            addon.requestheaders(flow)
        self.tap.request(flow)
        if flow.response is None:  # forwarded: Ollama answers with 10 + 20 tokens
            final = {"done": True, "prompt_eval_count": 10, "eval_count": 20,
                     "message": {"role": "assistant", "content": "hello"}}
            flow.response = http.Response.make(200, json.dumps(final),
                                               {"Content-Type": "application/json"})
            self.forwarded.append(flow)
        self.tap.responseheaders(flow)
        stream = flow.response.stream
        if callable(stream):
            stream(flow.response.content or b"")
            stream(b"")
        self.tap.response(flow)
        return flow


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_clients_token_names_it_and_never_goes_upstream(tmp_path: Path) -> None:
    proxy = Proxy(tmp_path)
    flow = make_flow("/api/chat", CHAT, bearer(ALICE))
    for addon in (proxy.tap, proxy.access, proxy.budgets):
        addon.requestheaders(flow)
    assert flow.response is None
    assert "authorization" not in flow.request.headers
    assert flow.metadata[KEY].client == "alice"


@pytest.mark.parametrize("headers", [{}, bearer("unknown-token-0123456789"),
                                     {"Authorization": ALICE}, bearer(OWN)])
def test_without_a_known_token_401_counted_under_no_client(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    proxy = Proxy(tmp_path, access_token=OWN)
    flow = make_flow("/api/chat", CHAT, headers)
    for addon in (proxy.tap, proxy.access, proxy.budgets):
        addon.requestheaders(flow)
    proxy.tap.request(flow)
    assert flow.response is not None and flow.response.status_code == 401
    assert "client token" in json.loads(flow.response.content or b"")["error"]
    assert "authorization" not in flow.request.headers
    proxy.tap.response(flow)
    assert value(proxy.registry, "errors_total", endpoint="/api/chat", model="m:latest",
                 error_type="unauthorized", client="") == 1
    assert proxy.records[-1].client is None and proxy.records[-1].status == 401


def test_anonymous_when_allowed(tmp_path: Path) -> None:
    proxy = Proxy(tmp_path, allow_anonymous=True)
    for headers in ({}, bearer("unknown-token-0123456789")):
        flow = make_flow("/api/chat", CHAT, headers)
        for addon in (proxy.tap, proxy.access, proxy.budgets):
            addon.requestheaders(flow)
        assert flow.response is None
        assert flow.metadata[KEY].client == "anonymous"


def test_our_mark_counts_only_with_the_access_token(tmp_path: Path) -> None:
    proxy = Proxy(tmp_path, access_token=OWN)
    mark = traffic.header("healthd")

    def state(headers: dict[str, str]) -> tuple[object, str | None, str | None]:
        flow = make_flow("/api/chat", CHAT, headers)
        for addon in (proxy.tap, proxy.access, proxy.budgets):
            addon.requestheaders(flow)
        st = flow.metadata[KEY]
        return (flow.response.status_code if flow.response else None), st.internal, st.client

    assert state({**mark, **bearer(OWN)}) == (None, "healthd", None)
    # A client that marks its requests as ours is still that client (and its budget's).
    assert state({**mark, **bearer(ALICE)}) == (None, None, "alice")
    # A mark without any token proves nothing.
    assert state(mark) == (401, None, None)


def test_user_only_when_configured_and_never_in_a_label(tmp_path: Path) -> None:
    header = {"X-OpenWebUI-User-Name": "  Zoë Example  ", **bearer(ALICE)}
    off = Proxy(tmp_path)
    off.send(headers=header)
    assert off.records[-1].user is None
    on = Proxy(tmp_path, client_user_header="X-OpenWebUI-User-Name")
    on.send(headers=header)
    record = on.records[-1]
    assert (record.client, record.user) == ("alice", "Zoë Example")
    labels = {v for family in on.registry.collect() for s in family.samples
              for v in s.labels.values()}
    assert "alice" in labels and not any("Zo" in v for v in labels)


def test_counts_and_tokens_by_client(tmp_path: Path) -> None:
    proxy = Proxy(tmp_path)
    for token in (ALICE, ALICE, BOT):
        proxy.send(headers=bearer(token))
    for client, n in (("alice", 2), ("ci-bot", 1)):
        assert value(proxy.registry, "requests_total", endpoint="/api/chat", model="m:latest",
                     status="200", client=client) == n
        assert value(proxy.registry, "prompt_tokens_total", model="m:latest",
                     client=client) == 10 * n
        assert value(proxy.registry, "generated_tokens_total", model="m:latest",
                     client=client) == 20 * n


def test_a_client_over_its_budget_gets_429_until_midnight(tmp_path: Path) -> None:
    proxy = Proxy(tmp_path)
    for _ in range(4):  # 4 x 30 tokens: the fourth starts at 90 < 100 and ends at 120
        flow = proxy.send(headers=bearer(BOT))
        assert flow.response is not None and flow.response.status_code == 200
    assert proxy.budgets.usage.used("ci-bot") == 120
    flow = proxy.send(headers=bearer(BOT))
    assert flow.response is not None and flow.response.status_code == 429
    assert flow not in proxy.forwarded
    wait = int(flow.response.headers["Retry-After"])
    assert 0 < wait <= DAY_S and abs(wait - (DAY_S - time.time() % DAY_S)) < 5
    error = json.loads(flow.response.content or b"")["error"]
    assert "ci-bot" in error and "120 of 100" in error and BOT not in error
    assert value(proxy.registry, "errors_total", endpoint="/api/chat", model="m:latest",
                 error_type="budget_exceeded", client="ci-bot") == 1
    assert value(proxy.registry, "requests_total", endpoint="/api/chat", model="m:latest",
                 status="429", client="ci-bot") == 1
    # Metadata calls spend no tokens and still work; another client is not affected.
    assert proxy.send("/api/tags", bearer(BOT), b"").response.status_code == 200  # type: ignore[union-attr]
    assert proxy.send(headers=bearer(ALICE)).response.status_code == 200  # type: ignore[union-attr]


def test_the_days_use_is_rebuilt_from_the_history(tmp_path: Path) -> None:
    now = time.time()
    today = now - now % DAY_S
    db = tmp_path / "history.db"
    write_history(db, [
        RequestRecord(started_at=today + 1, endpoint="/api/chat", model="m", status=200,
                      prompt_tokens=60, generated_tokens=50, client="ci-bot"),
        RequestRecord(started_at=today - 10, endpoint="/api/chat", model="m", status=200,
                      prompt_tokens=500, generated_tokens=500, client="alice"),  # yesterday
    ])
    proxy = Proxy(tmp_path)
    proxy.budgets.apply(proxy.security, str(db), None)
    assert proxy.budgets.usage.used("ci-bot") == 110
    assert proxy.budgets.usage.used("alice") == 0
    assert proxy.send(headers=bearer(BOT)).response.status_code == 429  # type: ignore[union-attr]


def test_a_bad_clients_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("clients:\n  x: {token: short}\n")
    with pytest.raises(ConfigError, match="security.clients_file: clients.x.token"):
        ClientBudgets().apply(Security(clients_file=str(path)), "", None)
