"""A model load is decided once, by the proxy: /metrics and /api/history count the same loads."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboard import create_app
from ollama_sim import SimServer
from tests.support.processes import Proxy, run_proxy
from tests.support.waits import wait_rows

pytestmark = pytest.mark.e2e
BODY = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.fixture
def loading_sim() -> Iterator[Any]:
    server = SimServer(port=0, tokens=4, seed=3, load_delay=0.5)
    server.start()
    yield server
    server.stop()


def chat(proxy: Proxy) -> None:
    request = urllib.request.Request(proxy.url + "/api/chat", data=json.dumps(BODY).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


@pytest.mark.parametrize(("threshold", "loads"), [("1.0", 0), ("0.25", 1)])
def test_a_load_under_the_threshold_is_a_load_nowhere(
    loading_sim: Any, tmp_path: Path, threshold: str, loads: int
) -> None:
    history = tmp_path / "history.db"
    with run_proxy(loading_sim.url, "--set", f"history_path={history}",
                   "--set", f"load_threshold_seconds={threshold}") as proxy:
        chat(proxy)  # loads the model: 0.5 s
        chat(proxy)  # finds it loaded
        samples = proxy.wait_counted(2)
        [first, second] = sorted(wait_rows(history, 2), key=lambda r: r["ts"])
    assert first["load_duration_s"] >= 0.5 and second["load_duration_s"] < 0.25
    assert [first["loaded_model"], second["loaded_model"]] == [bool(loads), False]
    counted = sum(v for (n, _), v in samples.items() if n == "ollama_proxy_model_loads_total")
    assert counted == loads
    app = create_app({"TESTING": True, "AUTOSTART": False, "SETTINGS": {
        "history_path": str(history), "proxy_metrics_url": "http://127.0.0.1:9",
        "healthd_url": ""}})
    for window in ("15m", "24h"):  # from the rows (15 s steps) and from the rollup (minutes)
        body = app.test_client().get(f"/api/history?window={window}").get_json()
        [row] = body["models"]
        assert (row["requests"], row["loads"]) == (2, loads)
