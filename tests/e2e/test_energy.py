"""Energy through a real mitmdump: a fake NVML GPU's joules reach /metrics, /requests and a row."""

from __future__ import annotations

import json
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

import ollama
import pytest

from llama_core.history import readers
from tests.support.processes import Proxy, run_proxy
from tests.support.sim import sim_fixture

pytestmark = pytest.mark.e2e

FAKE_NVML = Path(__file__).resolve().parents[1] / "support" / "fake_nvml"
WATTS = 200.0
INTERVAL = 0.1
GPU = {"gpu": "0", "name": "Fake NVIDIA GPU"}

# 20 tokens at 40 a second: half a second of generation, five polls.
sim = sim_fixture(tokens=20, token_rate=40.0, seed=3)


def fake_gpu_env() -> dict[str, str]:
    return {"PYTHONPATH": str(FAKE_NVML), "FAKE_NVML_WATTS": str(WATTS),
            "LLAMA_METRICS_PROXY_RESOURCES_INTERVAL_SECONDS": str(INTERVAL)}


def recent(proxy: Proxy) -> list[dict[str, Any]]:
    with urllib.request.urlopen(proxy.metrics_url + "/requests?limit=10", timeout=10) as r:
        body = json.load(r)
    return body["requests"] if isinstance(body, dict) else body


def wait_rows(path: Path, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        if path.exists():
            with closing(readers.connect_readonly(path)) as conn:
                rows = readers.recent_requests(conn, 10)
            if rows or time.monotonic() > deadline:
                return rows
        elif time.monotonic() > deadline:
            return []
        time.sleep(0.02)


def test_a_streamed_chat_gets_the_fake_gpus_joules(sim: Any, tmp_path: Path) -> None:
    history = tmp_path / "history.db"
    with run_proxy(sim.url, "--set", f"history_path={history}", env=fake_gpu_env()) as proxy:
        proxy.wait_for(lambda s: any(n == "ollama_proxy_gpu_energy_joules_total" for n, _ in s))
        client = ollama.Client(host=proxy.url)
        began = time.monotonic()
        try:
            list(client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}],
                             stream=True))
        finally:
            client.close()
        took = time.monotonic() - began
        [row] = wait_rows(history)
        samples = proxy.scrape()
        requests = recent(proxy)

    def sample(name: str, /, **labels: str) -> float:
        return samples.get(("ollama_proxy_" + name, tuple(sorted(labels.items()))), 0.0)

    gpu_total = sample("gpu_energy_joules_total", **GPU, source="counter")
    idle = sample("gpu_idle_energy_joules_total", **GPU)
    attributed = sample("energy_joules_total", model="llama3.2:latest", client="")
    # Every joule the GPU counted went to the request or to idle, nowhere else.
    assert gpu_total == pytest.approx(idle + attributed)
    assert idle > 0  # the polls before the request
    # The row waited for the poll after the request's end; it holds all the model's joules.
    assert row["energy_j"] == pytest.approx(attributed)
    assert requests[0]["energy_j"] == pytest.approx(row["energy_j"])
    # At least the time it was generating at 200 W, at most that plus a poll on each side.
    assert WATTS * 0.4 <= row["energy_j"] <= WATTS * (took + 2 * INTERVAL + 0.2)


def test_no_gpu_means_no_energy_series_and_no_energy_j(sim: Any, tmp_path: Path) -> None:
    history = tmp_path / "history.db"
    with run_proxy(sim.url, "--set", f"history_path={history}",
                   env={"LLAMA_METRICS_PROXY_RESOURCES_INTERVAL_SECONDS": str(INTERVAL)}) as proxy:
        client = ollama.Client(host=proxy.url)
        try:
            client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}])
        finally:
            client.close()
        [row] = wait_rows(history)
        proxy.wait_for(lambda s: any(n == "ollama_proxy_system_cpu_percent" for n, _ in s))
        names = {n for n, _ in proxy.scrape()}
    assert row["energy_j"] is None
    assert not {n for n in names if "energy" in n}
