"""Security, with real processes: loopback by default, the access token, no secret in any output.

- Start-up: a non-loopback address without a token (and without the opt-out) stops the
  proxy, the dashboard and the health daemon with exit status 2 and a message naming the
  address and the keys to set.
- With a token (the proxy reads it from a file, the others from the environment) every
  port answers 401 without it, our processes send it to each other, and the proxy strips it
  before forwarding.
- Secret markers in Authorization headers and prompts, sent with the official clients
  through the stack at its default settings, appear in nothing the stack wrote or served;
  with ``store_prompts`` the prompt marker is in the history (so the search can fail).
- Client keys of a clients file, on accepted, refused and over-budget requests with history,
  cassette and header log on, are in nothing either (a recorded user is, as the control).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest

from tests.history_files import row_count
from tests.reliability.wire import family_delta, peak_rss_bytes, requests_total
from tests.support import websocket
from tests.support.ports import free_port
from tests.support.processes import ENV as BASE_ENV
from tests.support.processes import MITMDUMP, ROOT, Proxy, run_proxy, run_service
from tests.support.waits import wait_until

pytestmark = pytest.mark.e2e

TOKEN = "tok-" + uuid.uuid4().hex  # the stack's access token; also searched for in its output
KEYS = ("security.access_token", "LLAMA_METRICS_SECURITY_ACCESS_TOKEN",
        "security.allow_remote_without_token")


# -- processes ----------------------------------------------------------------------------


def service(args: list[str], env: dict[str, str], ready: str) -> Any:
    """``python -m <args>`` with ``env`` over the test environment, ready at its log line."""
    return run_service(args, ready, env)


def dashboard(env: dict[str, str], *args: str) -> Any:
    return service(["dashboard", "--port", "0", *args],
                   {"LLAMA_METRICS_DASHBOARD_NARRATIVE_MODEL": "", **env},
                   r"dashboard on (http://127\.0\.0\.1:\d+/)")


def healthd(env: dict[str, str], port: int, *, upstream: str, proxy: Proxy,
            dashboard_url: str) -> Any:
    return service(
        ["healthd", "--port", str(port)],
        {"LLAMA_METRICS_HEALTHD_UPSTREAM": upstream,
         "LLAMA_METRICS_HEALTHD_PROXY_METRICS_URL": proxy.metrics_url,
         "LLAMA_METRICS_HEALTHD_PROXY_URL": proxy.url,
         "LLAMA_METRICS_HEALTHD_DASHBOARD_URL": dashboard_url,
         "LLAMA_METRICS_HEALTHD_HISTORY_PATH": "", "LLAMA_METRICS_HEALTHD_STATE_PATH": "",
         "LLAMA_METRICS_HEALTHD_CHECK_INTERVALS": "resources=0", **env},
        r"healthd on (http://127\.0\.0\.1:\d+)")


def get(url: str, token: str | None = None, *, method: str = "GET",
        headers: dict[str, str] | None = None, data: bytes | None = None,
        ) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body, whatever the status; the token as Bearer when given."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    try:
        with opener.open(request, timeout=20) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def run_all(
    cases: dict[str, tuple[list[str], dict[str, str]]],
) -> dict[str, tuple[int, str]]:
    """Run every command at once (each is a whole interpreter start): exit status, output."""
    procs = {name: subprocess.Popen(args, cwd=ROOT, env={**BASE_ENV, **env}, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for name, (args, env) in cases.items()}
    results = {}
    for name, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        results[name] = (proc.returncode, out)
    return results


# -- start-up: loopback unless a token (or the opt-out) is set -----------------------------

PROXY = [str(MITMDUMP), "--mode", "reverse:http://127.0.0.1:9", "-p", "0",
         "-s", str(ROOT / "addons" / "llama_metrics.py"),
         "--set", "metrics_port=0", "--set", "history_path="]


def test_remote_addresses_without_a_token_stop_every_process(tmp_path: Path) -> None:
    short = "SECRET-" + uuid.uuid4().hex[:6]  # under 16 characters: refused, never shown
    missing = tmp_path / "no-such-token"
    results = run_all({
        "proxy.listen_host (--listen-host)": ([*PROXY, "--listen-host", "0.0.0.0"], {}),
        "proxy.metrics_host": ([*PROXY, "--set", "metrics_host=0.0.0.0"], {}),
        "dashboard.host": ([sys.executable, "-m", "dashboard", "--host", "0.0.0.0"], {}),
        "healthd.host": ([sys.executable, "-m", "healthd", "--host", "::"], {}),
        "short": ([sys.executable, "-m", "healthd", "check"],
                  {"LLAMA_METRICS_SECURITY_ACCESS_TOKEN": short}),
        "missing": ([sys.executable, "-m", "dashboard"],
                    {"LLAMA_METRICS_SECURITY_ACCESS_TOKEN_FILE": str(missing)}),
    })
    for key, address in [("proxy.listen_host (--listen-host)", "0.0.0.0"),
                         ("proxy.metrics_host", "0.0.0.0"), ("dashboard.host", "0.0.0.0"),
                         ("healthd.host", "::")]:
        status, out = results[key]
        assert status == 2, out
        assert f"{key}={address!r} is reachable from other machines" in out, out
        for name in KEYS:
            assert name in out, out
    status, out = results["short"]
    assert status == 2 and "bad setting security.access_token=" in out, out
    assert short not in out
    status, out = results["missing"]
    assert status == 2 and f"security.access_token_file='{missing}'" in out, out


def test_the_opt_out_lets_a_remote_address_start() -> None:
    env = {"LLAMA_METRICS_SECURITY_ALLOW_REMOTE_WITHOUT_TOKEN": "true",
           "LLAMA_METRICS_HEALTHD_STATE_PATH": "", "LLAMA_METRICS_HEALTHD_HISTORY_PATH": ""}
    with service(["healthd", "--host", "0.0.0.0", "--port", "0"], env,
                 r"healthd on (http://0\.0\.0\.0:\d+)") as s:
        assert s.process.poll() is None


# -- with a token: 401 everywhere without it; our processes send it -----------------------


@pytest.fixture(scope="module")
def guarded(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """sim <- proxy (token from a file) <- dashboard, healthd (token from the environment)."""
    tmp = tmp_path_factory.mktemp("guarded")
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    env = {"LLAMA_METRICS_SECURITY_ACCESS_TOKEN": TOKEN}
    with ExitStack() as stack:
        proxy = stack.enter_context(run_proxy(
            sim.url, "--set", "flow_detail=2",  # mitmdump logs each request's headers
            env={"LLAMA_METRICS_SECURITY_ACCESS_TOKEN_FILE": str(token_file)}))
        health_port = free_port()
        dash = stack.enter_context(dashboard(
            env, "--proxy-metrics", proxy.metrics_url, "--history", "",
            "--healthd", f"http://127.0.0.1:{health_port}"))
        health = stack.enter_context(healthd(
            {**env, "LLAMA_METRICS_HEALTHD_CHECK_INTERVALS": "resources=0,proxy_e2e=1"},
            health_port, upstream=sim.url, proxy=proxy, dashboard_url=dash.url))
        yield {"proxy": proxy, "dashboard": dash, "healthd": health}


HANDSHAKE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def assert_401(url: str, token: str | None = None, **kwargs: Any) -> None:
    status, headers, body = get(url, token, **kwargs)
    assert status == 401, (url, status, body)
    assert headers.get("WWW-Authenticate", "").startswith("Bearer"), (url, headers)
    assert "token" in json.loads(body)["error"]


def test_proxy_client_port_needs_the_token(sim: Any, guarded: dict[str, Any]) -> None:
    proxy: Proxy = guarded["proxy"]
    before = len(sim.reports)
    body = json.dumps({"model": "llama3.2", "prompt": "hi", "stream": False}).encode()
    assert_401(proxy.url + "/api/generate", data=body, method="POST")
    assert_401(proxy.url + "/api/generate", "wrong-" + TOKEN, data=body, method="POST")
    assert len(sim.reports) == before  # never forwarded

    # Accepted: forwarded without our header. The flow log (flow_detail=2) shows the headers
    # of the request as it went upstream.
    status, _, _ = get(proxy.url + "/api/version", TOKEN, headers={"X-Probe": "kept-header"})
    assert status == 200
    proxy.output.wait_for("kept-header", 30)  # the flow log line of /api/version
    assert not re.search(r"^\s*authorization:", proxy.log, re.I | re.M), proxy.log

    with ollama.Client(host=proxy.url, headers={"Authorization": f"Bearer {TOKEN}"}) as chat:
        assert chat.generate(model="llama3.2", prompt="hi").response
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key=TOKEN, max_retries=0) as client:
        reply = client.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
    with (openai.OpenAI(base_url=proxy.url + "/v1", api_key="not-the-token",
                        max_retries=0) as wrong, pytest.raises(openai.AuthenticationError)):
        wrong.models.list()

    def counted() -> dict[tuple[str, str], float] | None:
        _, _, text = get(proxy.metrics_url + "/metrics", TOKEN)
        found = {}
        for m in re.finditer(r'^ollama_proxy_(requests|errors)_total\{([^}]*)\} (\S+)$',
                             text.decode(), re.M):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            key = labels.get("status") or labels.get("error_type", "")
            found[(m.group(1), key)] = found.get((m.group(1), key), 0) + float(m.group(3))
        return found if found.get(("requests", "401"), 0) >= 3 else None

    found = wait_until(counted, "three 401s counted")
    assert found[("errors", "unauthorized")] >= 3
    assert found[("requests", "200")] >= 2


def test_proxy_metrics_port_needs_the_token(guarded: dict[str, Any]) -> None:
    proxy: Proxy = guarded["proxy"]
    for path in ("/metrics", "/health", "/requests", "/nowhere"):
        assert_401(proxy.metrics_url + path)
        assert_401(proxy.metrics_url + path, "Bearer-" + TOKEN)
    for path in ("/metrics", "/health", "/requests"):
        assert get(proxy.metrics_url + path, TOKEN)[0] == 200


def test_a_large_upload_without_the_token_is_cut_off_unread(sim: Any) -> None:
    """mitmproxy reads a body whole before it can answer: a client without the token must not
    make the proxy hold 64 MiB (or gigabytes) to hear 401. Its connection is closed instead."""
    mib = 1 << 20
    with run_proxy(sim.url, env={"LLAMA_METRICS_SECURITY_ACCESS_TOKEN": TOKEN}) as proxy:
        base = peak_rss_bytes(proxy.process.pid)
        before = proxy.scrape()
        head = (f"POST /api/blobs/sha256:{'0' * 64} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Length: {64 * mib}\r\n\r\n").encode()
        sent = 0
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
            try:
                sock.sendall(head)
                while sent < 64 * mib:
                    sock.sendall(b"\0" * mib)
                    sent += mib
                answer = sock.recv(65536)
            except (BrokenPipeError, ConnectionResetError):
                answer = b""
        assert answer == b"" and sent < 64 * mib  # closed, not read to the end
        after = proxy.wait_counted(requests_total(before) + 1)
        assert family_delta(before, after, "requests_total", endpoint="/api/blobs/:digest",
                            status="401") == 1
        assert family_delta(before, after, "errors_total", error_type="unauthorized") == 1
        assert peak_rss_bytes(proxy.process.pid) - base < 32 * mib
    assert sim.blobs == {}


def test_dashboard_needs_the_token_on_every_route(guarded: dict[str, Any]) -> None:
    url = guarded["dashboard"].url
    paths = ("/", "/static/dashboard.js", "/api/snapshot", "/api/requests", "/metrics", "/ws")
    for path in paths:
        assert_401(url + path)
    assert_401(url + "/ws", headers=HANDSHAKE)  # a browser's websocket handshake
    for path in paths[:-1]:
        assert get(url + path, TOKEN)[0] == 200, path
    assert_401(url + "/?token=wrong-" + TOKEN)

    # A browser: /?token= once sets the cookie and drops the token from the address.
    status, headers, _ = get(url + "/?token=" + TOKEN + "&window=1h")
    assert status == 303 and headers["Location"] == "/?window=1h"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    pair = {"Cookie": cookie.split(";", 1)[0]}
    assert get(url + "/api/snapshot", headers=pair)[0] == 200
    ws = websocket.connect(url.replace("http", "ws") + "/ws", headers=pair)
    try:
        assert json.loads(ws.receive(timeout=20))["type"] == "hello"
    finally:
        ws.close()


def test_healthd_needs_the_token(guarded: dict[str, Any]) -> None:
    url = guarded["healthd"].url
    for path in ("/health", "/health/live", "/health/ready", "/metrics", "/alerts"):
        assert_401(url + path)
    assert_401(url + "/health", method="POST", data=b"{}")
    assert get(url + "/health/live", TOKEN)[0] == 200
    assert get(url + "/metrics", TOKEN)[0] == 200


def test_our_processes_send_each_other_the_token(guarded: dict[str, Any]) -> None:
    health, dash = guarded["healthd"].url, guarded["dashboard"].url

    def checks_ok() -> dict[str, Any] | None:
        report = json.loads(get(health + "/health", TOKEN)[2])
        checks = report["checks"]
        wanted = ("ollama", "proxy", "proxy_e2e", "dashboard")
        return report if all(checks.get(n, {}).get("status") == "ok" for n in wanted) else None

    report = wait_until(checks_ok, "healthd's checks of the proxy and the dashboard pass")
    assert report["status"] == "healthy"

    def dashboard_view() -> dict[str, Any] | None:
        snap = json.loads(get(dash + "/api/snapshot", TOKEN)[2])
        status = snap["status"]
        healthy = status["healthd"]["status"] == "healthy"
        return snap if healthy and status["proxy"]["reachable"] else None

    wait_until(dashboard_view, "the dashboard reads the proxy and healthd", timeout=40)
    _, _, rows = get(dash + "/api/requests", TOKEN)
    assert isinstance(json.loads(rows), dict | list)
    for name in ("proxy", "dashboard", "healthd"):
        log = guarded[name].log
        assert TOKEN not in log, f"{name} logged the token:\n{log}"


# -- secret markers: nothing the stack wrote or served holds them --------------------------


def send_marked(url: str, auth: str, prompt: str) -> None:
    """Native and OpenAI, streamed and not, with the official clients."""
    messages: Any = [{"role": "user", "content": prompt}]
    with ollama.Client(host=url, headers={"Authorization": f"Bearer {auth}"}) as native:
        assert native.generate(model="llama3.2", prompt=prompt, stream=False).response
        assert "".join(c.response for c in native.generate(model="llama3.2", prompt=prompt,
                                                           stream=True))
        assert native.chat(model="llama3.2", messages=messages).message.content
    with openai.OpenAI(base_url=url + "/v1", api_key=auth, max_retries=0) as client:
        assert client.chat.completions.create(model="llama3.2", messages=messages).choices
        with client.chat.completions.create(model="llama3.2", messages=messages,
                                            stream=True) as stream:
            assert any(chunk.choices for chunk in stream)


def written(tmp: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(tmp.rglob("*")) if p.is_file()}


def test_secret_markers_reach_no_output(sim: Any, tmp_path: Path) -> None:
    auth, prompt = f"SECRET-AUTH-{uuid.uuid4()}", f"SECRET-PROMPT-{uuid.uuid4()}"
    db = tmp_path / "data" / "history.db"
    outputs: dict[str, bytes] = {}
    with ExitStack() as stack:
        # mitmdump's own flow log at its default detail (1), history on, nothing else set
        proxy = stack.enter_context(run_proxy(sim.url, "--set", "flow_detail=1",
                                              "--set", f"history_path={db}"))
        health_port = free_port()
        dash = stack.enter_context(dashboard(
            {}, "--proxy-metrics", proxy.metrics_url, "--history", str(db),
            "--healthd", f"http://127.0.0.1:{health_port}"))
        health = stack.enter_context(healthd({}, health_port, upstream=sim.url, proxy=proxy,
                                             dashboard_url=dash.url))
        send_marked(proxy.url, auth, prompt)
        wait_until(lambda: row_count(db) >= 5, "five history rows")
        assert stat.S_IMODE(os.stat(db).st_mode) == 0o600  # readable by its owner only
        for name, url in [
            ("proxy /metrics", proxy.metrics_url + "/metrics"),
            ("proxy /requests", proxy.metrics_url + "/requests?limit=500"),
            ("proxy /health", proxy.metrics_url + "/health"),
            ("healthd /health", health.url + "/health"),
            ("healthd /metrics", health.url + "/metrics"),
            ("healthd /alerts", health.url + "/alerts"),
            *[(f"dashboard {p}", dash.url + p) for p in (
                "/api/snapshot", "/api/requests", "/api/models", "/api/analysis",
                "/api/history?window=1h", "/metrics")],
        ]:
            status, _, body = get(url)
            assert status in (200, 503), (name, status, body)
            outputs[name] = body
        assert b"/api/chat" in outputs["proxy /requests"]  # the requests are there
        logs = {"proxy log": proxy.log, "dashboard log": dash.log, "healthd log": health.log}
    outputs.update({name: text.encode() for name, text in logs.items()})
    outputs.update(written(tmp_path))  # history.db and its -wal (and -shm), as they are
    assert any(name.endswith("history.db-wal") or name.endswith("history.db")
               for name in outputs)
    assert "POST" in logs["proxy log"]  # mitmdump did log the flows (one line each)
    for marker in (auth, prompt):
        leaks = [name for name, data in outputs.items() if marker.encode() in data]
        assert not leaks, f"{marker} found in {leaks}"


def test_stored_prompts_are_found_the_same_way(sim: Any, tmp_path: Path) -> None:
    """The positive control: with store_prompts the same search finds the prompt."""
    prompt = f"SECRET-PROMPT-{uuid.uuid4()}"
    db = tmp_path / "history.db"
    with run_proxy(sim.url, "--set", f"history_path={db}", "--set", "store_prompts=true",
                   ) as proxy:
        with ollama.Client(host=proxy.url) as client:
            client.generate(model="llama3.2", prompt=prompt, stream=False)
        wait_until(lambda: row_count(db) >= 1, "one history row")
        files = written(tmp_path)
    assert any(prompt.encode() in data for data in files.values())


def test_client_tokens_reach_no_output(sim: Any, tmp_path: Path,
                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    """Client keys (one in the file as is, one only as its SHA-256), sent on accepted, refused
    (401) and over-budget (429) requests, with the history, a cassette and mitmdump's header
    log on: neither key is in anything the stack wrote or served."""
    alice, bot = f"SECRET-CLIENT-{uuid.uuid4()}", f"SECRET-CLIENT-{uuid.uuid4()}"
    unknown = f"SECRET-CLIENT-{uuid.uuid4()}"
    keys = tmp_path_factory.mktemp("keys") / "clients.yml"  # outside what is searched
    keys.write_text(f"clients:\n  alice:\n    token: {alice}\n  ci-bot:\n    token_sha256: "
                    f"{hashlib.sha256(bot.encode()).hexdigest()}\n    daily_token_budget: 1\n")
    db, cassette = tmp_path / "history.db", tmp_path / "cassette.jsonl"
    env = {"LLAMA_METRICS_SECURITY_CLIENTS_FILE": str(keys),
           "LLAMA_METRICS_SECURITY_CLIENT_USER_HEADER": "X-OpenWebUI-User-Name"}
    outputs: dict[str, bytes] = {}
    with ExitStack() as stack:
        proxy = stack.enter_context(run_proxy(
            sim.url, "--set", "flow_detail=2", "--set", f"history_path={db}",
            "--set", f"record_path={cassette}", env=env))
        dash = stack.enter_context(dashboard(
            env, "--proxy-metrics", proxy.metrics_url, "--history", str(db),
            "--healthd", f"http://127.0.0.1:{free_port()}"))
        send_marked(proxy.url, alice, "hello")
        body = json.dumps({"model": "llama3.2", "prompt": "hi", "stream": False}).encode()
        answers = [get(proxy.url + "/api/generate", token, method="POST", data=body)
                   for token in (bot, bot, unknown, None)]
        assert [a[0] for a in answers] == [200, 429, 401, 401]
        user = f"SECRET-USER-{uuid.uuid4()}"  # recorded on purpose: the search's control
        assert get(proxy.url + "/api/generate", alice, method="POST", data=body,
                   headers={"X-OpenWebUI-User-Name": user})[0] == 200
        outputs.update({f"answer {i}": a[2] for i, a in enumerate(answers)})
        wait_until(lambda: row_count(db) >= 10, "ten history rows")
        for name, url in [("proxy /metrics", proxy.metrics_url + "/metrics"),
                          ("proxy /requests", proxy.metrics_url + "/requests?limit=500"),
                          ("dashboard /api/clients", dash.url + "/api/clients?window=1h"),
                          ("dashboard /api/requests", dash.url + "/api/requests"),
                          ("dashboard /api/snapshot", dash.url + "/api/snapshot")]:
            status, _, served = get(url)
            assert status == 200, (name, status, served)
            outputs[name] = served
        wait_until(lambda: cassette.exists() and cassette.read_bytes().count(b"\n") >= 10,
                   "ten interactions in the cassette")
        logs = {"proxy log": proxy.log, "dashboard log": dash.log}
    assert b'"ci-bot"' in outputs["dashboard /api/clients"]  # the clients are there
    assert b'client="alice"' in outputs["proxy /metrics"]
    assert b"<redacted>" in cassette.read_bytes()  # the cassette saw the header, redacted
    assert "POST" in logs["proxy log"]
    assert not re.search(r"^\s*authorization:", logs["proxy log"], re.I | re.M)
    outputs.update({name: text.encode() for name, text in logs.items()})
    outputs.update(written(tmp_path))  # history (and -wal), the cassette
    for marker in (alice, bot, unknown):
        leaks = [name for name, data in outputs.items() if marker.encode() in data]
        assert not leaks, f"a client token found in {leaks}"
    # The positive control: the same search finds the user the history keeps by design.
    assert [name for name, data in outputs.items() if user.encode() in data
            and name.startswith(str(tmp_path))], "the user is not in the history"
