"""The dashboard in headless Chromium, in front of a real proxy and the Ollama simulator.

The dashboard runs as a real process (``python -m dashboard``, gunicorn) on a free port.
The page must load without console errors, draw its charts, show a request sent through the
proxy in the live feed within 2 s, render hostile model names as text, and stream a
narrative that does not count as proxy traffic. At 390 px it must not scroll sideways; a
non-streamed answer must leave time to first token alone; with its server gone the page
marks every value stale, with its proxy gone it names the proxy unreachable, and both
recover by themselves. (The README's screenshots come from scripts/screenshots.py.)
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llama_core import catalogue
from ollama_sim import SimServer
from tests.support.processes import Proxy, Service, run_dashboard, run_proxy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                       reason="needs Debian's chromium (apt-get install chromium)"),
]

XSS = "<img src=x onerror=window.__xss=1>"
XSS_LABEL = XSS + ":latest"  # Ollama's spelling, as the proxy labels it
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api")


def chat(proxy: Proxy, model: str, **headers: str) -> int:
    body = json.dumps({"model": model, "stream": False,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(proxy.url + "/api/chat", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Proxy, Service]]:
    history = tmp_path_factory.mktemp("browser") / "history.db"
    sim = SimServer(port=0, tokens=8, seed=5, models=("llama3.2:latest",
                                                                  "qwen3:latest", XSS))
    sim.start()
    try:
        # The inventory is polled often so that loaded models show within the test.
        with run_proxy(sim.url, "--set", f"history_path={history}",
                       env={"LLAMA_METRICS_PROXY_INVENTORY_INTERVAL_SECONDS": "0.2"}
                       ) as proxy, run_dashboard(
            "--proxy-metrics", proxy.metrics_url, "--history", str(history),
            "--healthd", "http://127.0.0.1:9",  # nothing there: shown as unknown
            env={"LLAMA_METRICS_DASHBOARD_OLLAMA_URL": sim.url},
        ) as dashboard:
            yield sim, proxy, dashboard
    finally:
        sim.stop()


def test_the_page_live(stack: tuple[Any, Proxy, Service]) -> None:
    sim, proxy, dashboard = stack
    for model, headers in (("llama3.2", {}), ("qwen3", {"X-Sim-Tokens": "30"}),
                           ("llama3.2", {"X-Sim-Fault": "status:500"})):
        chat(proxy, model, **headers)
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1500})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(dashboard.url)
            # Functions, not expressions: the page's CSP forbids eval, which Playwright
            # would use to poll a bare expression.
            page.wait_for_function(
                "() => document.querySelector('#status-proxy span').textContent"
                ".startsWith('reachable') && window.llamaDashboard.points.length >= 2",
                timeout=10_000)

            # A request through the proxy shows in the feed within 2 s of its answer.
            assert chat(proxy, XSS) == 200
            page.wait_for_function(
                "label => [...document.querySelectorAll('#feed tbody tr td:nth-child(2)')]"
                ".some(td => td.textContent === label)", arg=XSS_LABEL, timeout=2000)
            # ... as text: nothing ran, no element was made from it.
            assert page.locator("#feed td", has_text=XSS_LABEL).first.is_visible()
            assert page.evaluate("typeof window.__xss") == "undefined"
            assert page.locator("main img").count() == 0

            # The charts draw: uPlot canvases, live points with the traffic in them.
            page.wait_for_function(
                "() => window.llamaDashboard.points.some(p => p.requests_per_second > 0)",
                timeout=5000)
            assert page.locator("#live-charts .uplot canvas").count() == 7
            # The history file keeps the proxy's machine samples: the host chart draws them.
            page.wait_for_function(
                "() => document.querySelectorAll('#history-charts .uplot canvas').length == 7",
                timeout=5000)
            host = page.locator("#history-charts [data-chart=resources]")
            assert "CPU" in host.locator(".u-legend").inner_text()
            assert "not kept" not in host.inner_text()
            # GPU series only where the proxy sees a GPU, live and in history alike.
            gpu = any(name == catalogue.GPU_UTILIZATION.name for name, _ in proxy.scrape())
            for where in ("live", "history"):
                legend = page.locator(f"#{where}-charts [data-chart=resources] .u-legend")
                assert ("GPU" in legend.inner_text()) == gpu, where
            assert page.evaluate(
                "[...document.querySelectorAll('.uplot canvas')].every(c => c.width > 0)")
            assert "unreachable" in page.locator("#status-healthd").inner_text()
            page.wait_for_function(
                "() => document.querySelector('#loaded-table').textContent"
                ".includes('fits in GPU memory')", timeout=5000)
            assert page.locator("#status-ollama span").inner_text().startswith("up")

            # History from the file the proxy writes (in batches, within a second or so).
            page.click("button[data-window='15m']")
            for _ in range(10):
                try:
                    page.wait_for_function(
                        "() => window.llamaDashboard.charts.history.requests.plot.data[1]"
                        ".some(v => v > 0)", timeout=1000)
                    break
                except sync_api.TimeoutError:
                    page.click("button[data-window='15m']")
            assert page.locator("#models-table", has_text="qwen3:latest").count() == 1
            # Per-model history: the tokens chart names the models that generated them.
            page.wait_for_function(
                "() => document.querySelector('#history-charts [data-chart=tokens] .u-legend')"
                ".textContent.includes('qwen3:latest')", timeout=5000)
            # ... and the host chart has points from the proxy's samples in the 15 min window
            # (the proxy's first sample is in a closed bucket within 5 s: reload till then).
            for _ in range(10):
                try:
                    page.wait_for_function(
                        "() => window.llamaDashboard.charts.history.resources.plot.data[1]"
                        ".some(v => v !== null)", timeout=1000)
                    break
                except sync_api.TimeoutError:
                    page.click("button[data-window='15m']")
            assert page.evaluate(
                "() => window.llamaDashboard.charts.history.resources.plot.data[1]"
                ".some(v => v !== null)")

            # The narrative streams from Ollama directly: the proxy counts nothing new.
            counted = proxy.total("requests_total")
            page.click("#narrative-button")
            page.wait_for_function(
                "() => document.querySelector('#narrative-status').textContent"
                ".startsWith('written by')"
                " && !document.querySelector('#narrative-button').disabled",
                timeout=10_000)
            assert page.locator("#narrative-text").inner_text().strip()
            assert sim.reports[-1]["endpoint"] == "/api/generate"
            assert proxy.total("requests_total") == counted

            # Legends show the latest value without a hover.
            assert "–" not in page.locator(
                "#live-charts [data-chart=requests] .u-legend").inner_text()
        finally:
            browser.close()
    assert problems == []


def stream_chat(proxy: Proxy, model: str) -> None:
    body = json.dumps({"model": model, "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(proxy.url + "/api/chat", data=body)
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def open_page(browser: Any, url: str, width: int, height: int,
              problems: list[str]) -> Any:
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(url)
    page.wait_for_function("() => window.llamaDashboard.snapshot !== null", timeout=10_000)
    return page


def tile_text(page: Any, key: str) -> str:
    return str(page.locator(f"#numbers .tile[data-key={key}]").inner_text())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_phone_width_and_a_non_streamed_answer(tmp_path: Path) -> None:
    sim = SimServer(port=0, tokens=8, seed=5, models=(
        "llama3.2:latest", "a-model-with-a-rather-long-name-for-a-phone:latest"))
    sim.start()
    problems: list[str] = []
    try:
        # The proxy writes the history file, so the page's history is there, not a 503.
        with run_proxy(sim.url, "--set", f"history_path={tmp_path / 'h.db'}") as proxy, \
                run_dashboard(
            "--proxy-metrics", proxy.metrics_url, "--history", str(tmp_path / "h.db"),
            "--healthd", "", env={}) as dashboard, sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = open_page(browser, dashboard.url, 390, 844, problems)
                # A non-streamed answer has a duration, no first token.
                assert chat(proxy, "llama3.2") == 200
                page.wait_for_function(
                    "() => (window.llamaDashboard.snapshot.latency.counts.answer || 0) >= 1",
                    timeout=5000)
                snap = page.evaluate("() => window.llamaDashboard.snapshot")
                assert snap["point"]["ttft_p95"] is None
                assert tile_text(page, "ttft_p95").splitlines()[1] == "–"
                assert "no requests to judge" in tile_text(page, "ttft_p95")
                row = page.locator("#feed tbody tr").first
                assert row.locator("td[data-label=TTFT]").inner_text() == "–"
                # A streamed one sets it, with a state beside it in words.
                stream_chat(proxy, "a-model-with-a-rather-long-name-for-a-phone")
                page.wait_for_function(
                    "() => window.llamaDashboard.snapshot.point.ttft_p95 !== null",
                    timeout=5000)
                page.wait_for_function(
                    "() => document.querySelector('[data-key=ttft_p95] .state')"
                    ".textContent.includes('ok')", timeout=5000)
                # The request's timeline opens on click.
                page.locator("#feed tbody tr[data-key]").first.click()
                assert "time to first token" in page.locator("#feed tr.detail").inner_text()
                # Nothing scrolls sideways at 390 px, the long name included.
                wide = page.evaluate(
                    "() => [...document.querySelectorAll('body *')].filter(e =>"
                    " e.getBoundingClientRect().right > 391).slice(0, 8).map(e =>"
                    " e.tagName + '.' + e.className + '#' + e.id + ' ' +"
                    " Math.round(e.getBoundingClientRect().right))")
                assert page.evaluate("document.documentElement.scrollWidth") <= 390, wide
            finally:
                browser.close()
    finally:
        sim.stop()
    assert problems == []


def test_stale_and_unreachable_states_and_recovery(tmp_path: Path) -> None:
    sim = SimServer(port=0, tokens=8, seed=5, models=("llama3.2:latest",))
    sim.start()
    problems: list[str] = []
    metrics_port, dashboard_port = free_port(), free_port()
    args = ("--proxy-metrics", f"http://127.0.0.1:{metrics_port}", "--history",
            str(tmp_path / "h.db"), "--healthd", "")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                with run_proxy(sim.url, "--set", f"metrics_port={metrics_port}", "--set",
                               f"history_path={tmp_path / 'h.db'}") as proxy:
                    with run_dashboard(*args, "--port", str(dashboard_port), env={}) as first:
                        page = open_page(browser, first.url, 1280, 900, problems)
                        stream_chat(proxy, "llama3.2")
                        page.wait_for_function(
                            "() => document.querySelector('#status-proxy').className == 'ok'",
                            timeout=5000)
                    # The dashboard's server is gone: every value says it is stale.
                    page.wait_for_function("() => window.llamaDashboard.stale", timeout=10_000)
                    assert page.locator("#stale-banner").is_visible()
                    assert "as of" in page.locator("#stale-banner").inner_text()
                    states = page.eval_on_selector_all(
                        "#numbers .tile", "ts => ts.map(t => t.dataset.state)")
                    assert set(states) == {"stale"}
                    for dot in ("ollama", "proxy", "healthd"):
                        assert page.locator(f"#status-{dot}").get_attribute("class") == "stale"
                    # ... and it recovers when the server is back.
                    with run_dashboard(*args, "--port", str(dashboard_port), env={}):
                        page.wait_for_function("() => !window.llamaDashboard.stale",
                                               timeout=20_000)
                        assert page.locator("#stale-banner").is_hidden()
                        # The proxy is gone: the page names it unreachable.
                        proxy.process.terminate()
                        proxy.process.wait(timeout=10)
                        page.wait_for_function(
                            "() => document.querySelector('#status-proxy').className == 'bad'",
                            timeout=10_000)
                        assert "unreachable" in page.locator("#status-proxy").inner_text()
                        assert "proxy unreachable" in tile_text(page, "error_rate")
                        assert "unknown" in page.locator("#status-ollama").inner_text()
                        # A proxy on the same port again: reachable by itself.
                        with run_proxy(sim.url, "--set", f"metrics_port={metrics_port}"):
                            page.wait_for_function(
                                "() => document.querySelector('#status-proxy').className"
                                " == 'ok'", timeout=15_000)
            finally:
                browser.close()
    finally:
        sim.stop()
    # The refused websocket while the server was down is the browser's own report.
    assert [m for m in problems if "WebSocket" not in m and "ERR_CONNECTION" not in m] == []
