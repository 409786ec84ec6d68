"""The page's energy section (static/energy.js) in headless Chromium, with and without a GPU.

A real proxy whose ``pynvml`` is the fake of tests/support/fake_nvml (one GPU drawing 200 W,
its energy counter counting exactly that) shows numbers with their units, on a desktop and a
phone without sideways scroll; a proxy on this machine's own NVML (no GPU here) shows the
words "no GPU energy meter on this machine" and no chart, bar or table of energy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollama_sim import SimServer
from tests.dashboard.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    chat,
    open_page,
    stream_chat,
)
from tests.e2e.test_energy import fake_gpu_env
from tests.support.processes import run_dashboard, run_proxy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                       reason="needs Debian's chromium (apt-get install chromium)"),
]

sync_api = pytest.importorskip("playwright.sync_api")

SHOWN = ("() => !document.querySelector('#energy-body').hidden"
         " && document.querySelector('#energy-models tbody td.name') !== null")


@pytest.fixture
def sim() -> Iterator[SimServer]:
    server = SimServer(port=0, tokens=20, token_rate=100.0, seed=7,
                       models=("llama3.2:latest", "qwen3:latest"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def texts(page: Any, selector: str) -> list[str]:
    return [str(t) for t in page.eval_on_selector_all(
        selector, "nodes => nodes.map(n => n.textContent)")]


def check_energy(page: Any) -> None:
    """Every number in the section carries its unit."""
    page.wait_for_function(SHOWN, timeout=15_000)
    values = texts(page, "#energy .tile .value")
    assert re.fullmatch(r"[\d.,]+ W", values[0]), values  # power now
    assert re.fullmatch(r"[\d.,]+ J/token", values[2]), values
    assert re.fullmatch(r"[\d.,]+ (J|Wh|kWh)", values[3]), values
    cells = texts(page, "#energy-models tbody td")
    assert "llama3.2:latest" in cells and "qwen3:latest" in cells
    for text in cells:
        number = re.search(r"\d", text) and not text.endswith(":latest")
        if number:
            assert re.search(r" (J/token|J|Wh|kWh|Wh/day|kWh/day|tokens)$", text), text
    split = " ".join(texts(page, "#energy-split .numbers"))
    assert "active" in split and "idle" in split
    assert re.search(r"active [\d.,]+ (J|Wh|kWh) \(\d+ %\)", split), split
    assert page.locator("#energy canvas").count() == 0  # words and tables, never a chart


def test_a_metered_gpu_shows_joules_per_token_and_watts(sim: SimServer, tmp_path: Path
                                                        ) -> None:
    history = tmp_path / "history.db"
    problems: list[str] = []
    with run_proxy(sim.url, "--set", f"history_path={history}",
                   env={**fake_gpu_env(), "LLAMA_METRICS_PROXY_RESOURCES_INTERVAL_SECONDS": "0.2"}
                   ) as proxy, run_dashboard(
            "--proxy-metrics", proxy.metrics_url, "--history", str(history), "--healthd", "",
            env={}) as dashboard, sync_api.sync_playwright() as p:
        proxy.wait_for(lambda s: any(n == "ollama_proxy_gpu_energy_joules_total" for n, _ in s))
        for model in ("llama3.2", "qwen3", "llama3.2"):
            stream_chat(proxy, model)
        assert chat(proxy, "qwen3") == 200
        proxy.wait_for(lambda s: sum(v for (n, _), v in s.items()
                                     if n == "ollama_proxy_energy_joules_total") > 0)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for width, height in ((1440, 900), (390, 844)):
                page = open_page(browser, dashboard.url, width, height, problems)
                check_energy(page)
                # The history window has the rows' joules: the window's columns fill in.
                page.wait_for_function(
                    "() => [...document.querySelectorAll('#energy-days tbody td')]"
                    ".some(td => / J\\/token$/.test(td.textContent))", timeout=15_000)
                assert page.locator("#energy-none").is_hidden()
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                page.close()
        finally:
            browser.close()
    assert problems == []


def test_without_a_gpu_the_section_says_so_in_words(sim: SimServer, tmp_path: Path) -> None:
    history = tmp_path / "history.db"
    problems: list[str] = []
    with run_proxy(sim.url, "--set", f"history_path={history}",
                   ) as proxy, run_dashboard(
            "--proxy-metrics", proxy.metrics_url, "--history", str(history), "--healthd", "",
            env={}) as dashboard, sync_api.sync_playwright() as p:
        if any("gpu" in n for n, _ in proxy.scrape()):
            pytest.skip("this machine has a GPU the proxy reads")
        stream_chat(proxy, "llama3.2")
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = open_page(browser, dashboard.url, 390, 844, problems)
            page.wait_for_function(
                "() => document.querySelector('#energy-none').textContent"
                " === 'no GPU energy meter on this machine'", timeout=10_000)
            assert page.locator("#energy-none").is_visible()
            assert page.locator("#energy-body").is_hidden()
            # Nothing drawn that could read as an empty chart.
            assert page.locator("#energy canvas").count() == 0
            assert page.locator("#energy-split li").count() == 0
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
        finally:
            browser.close()
    assert problems == []

