"""Scale-out: Debian's nginx with deploy/nginx/llama-metrics.conf in front of two real proxies.

The shipped nginx configuration is rendered onto this test's free ports (scripts/nginx_front.py)
and run by the real ``nginx`` binary in front of two ``mitmdump`` proxies that share one
history file, in front of the simulator. Official ``ollama`` clients talk to nginx. Every
answer must equal the direct one, streams must reach the client token by token, both proxies
must serve some, and the totals must agree everywhere: the proxies' counters summed, a real
Prometheus scraping both as config/prometheus.yml documents, and the dashboard merging both
(live view, Prometheus mode and history mode) all equal what the simulator reports.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import ollama
import pytest

from dashboard import create_app
from llama_core.history import readers as history
from ollama_sim import SimServer
from scripts import nginx_front, supervise
from tests.stack.tools import scrape_config, tool
from tests.support.ports import free_port, refusing_port
from tests.support.processes import Proxy, run_proxy, terminate
from tests.support.prometheus import Prometheus, run_prometheus
from tests.support.waits import poll, wait_until

pytestmark = pytest.mark.e2e

MODEL = "llama3.2"
INFERENCE = ("/api/chat", "/api/generate")


def nginx_binary() -> str:
    path = nginx_front.binary()
    if path is None:
        pytest.skip("nginx not installed (Debian package nginx-light or nginx); CI installs it")
    return str(path)


class Nginx:
    """The real nginx on the shipped configuration, listening on a free port of 127.0.0.1."""

    def __init__(self, directory: Path, proxies: list[str]) -> None:
        self.port = free_port()
        command = nginx_front.prepare(directory, f"127.0.0.1:{self.port}", proxies,
                                      nginx=nginx_binary())
        self.log = directory / "nginx.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        # nginx prints nothing when ready: its port answering is the sign.
        up = poll(lambda: self.process.poll() is None and self._accepts(),
                  lambda accepts: accepts or self.process.poll() is not None, 20, 0.02)
        if not up:
            self.stop()
            raise AssertionError(f"nginx did not start:\n{self.log.read_text()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accepts(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        terminate(self.process, timeout=15)


class Stack:
    def __init__(self, sim: Any, proxies: list[Proxy], nginx: Nginx, history_db: Path) -> None:
        self.sim, self.proxies, self.nginx, self.history_db = sim, proxies, nginx, history_db

    def summed(self, name: str, **labels: str) -> float:
        return sum(p.total(name, **labels) for p in self.proxies)

    def served(self) -> list[float]:
        """Inference requests each proxy counted."""
        return [sum(p.total("requests_total", endpoint=e) for e in INFERENCE)
                for p in self.proxies]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    nginx_binary()  # skip before starting anything
    tmp = tmp_path_factory.mktemp("scale")
    history_db = tmp / "history.db"
    with ExitStack() as stack:
        sim = SimServer(port=0, tokens=12, seed=5)
        sim.start()
        stack.callback(sim.stop)
        proxies = [stack.enter_context(run_proxy(sim.url, "--set", f"history_path={history_db}"))
                   for _ in range(2)]
        nginx = Nginx(tmp / "nginx", [f"127.0.0.1:{p.port}" for p in proxies])
        stack.callback(nginx.stop)
        yield Stack(sim, proxies, nginx, history_db)


def ask(client: ollama.Client, kind: str, prompt: str) -> tuple[str, int | None, int | None]:
    """One request of ``kind``: (text, prompt_eval_count, eval_count) as the client got them."""
    chat = [{"role": "user", "content": prompt}]
    if kind == "chat":
        r = client.chat(model=MODEL, messages=chat)
        return r.message.content or "", r.prompt_eval_count, r.eval_count
    if kind == "chat-stream":
        parts = list(client.chat(model=MODEL, messages=chat, stream=True))
        text = "".join(p.message.content or "" for p in parts)
        return text, parts[-1].prompt_eval_count, parts[-1].eval_count
    if kind == "generate":
        g = client.generate(model=MODEL, prompt=prompt)
        return g.response or "", g.prompt_eval_count, g.eval_count
    pieces = list(client.generate(model=MODEL, prompt=prompt, stream=True))
    text = "".join(p.response or "" for p in pieces)
    return text, pieces[-1].prompt_eval_count, pieces[-1].eval_count


JOBS = [(kind, f"question {i}: why is the sky blue?")
        for i, kind in enumerate(["chat", "chat-stream", "generate", "generate-stream"] * 3)]


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> dict[str, float]:
    """JOBS direct, then through nginx four at a time; the totals the simulator reports."""
    with ollama.Client(host=stack.sim.url) as direct:
        expected = [ask(direct, kind, prompt) for kind, prompt in JOBS]
    before = len(stack.sim.reports)
    with ollama.Client(host=stack.nginx.url, timeout=60) as client, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda job: ask(client, *job), JOBS))
    assert answers == expected
    reports = stack.sim.wait_for_reports(before + len(JOBS))[before:]
    assert [r["status"] for r in reports] == [200] * len(JOBS)
    return {"requests": len(JOBS),
            "prompt": sum(r["prompt_eval_count"] for r in reports),
            "generated": sum(r["eval_count"] for r in reports)}


def test_both_proxies_serve_and_their_counters_sum_to_what_the_simulator_served(
    stack: Stack, traffic: dict[str, float]
) -> None:
    wait_until(lambda: sum(stack.served()) >= traffic["requests"], "every request counted",
               timeout=15)
    served = stack.served()
    assert sum(served) == traffic["requests"] and min(served) > 0, served
    assert stack.summed("prompt_tokens_total") == traffic["prompt"]
    assert stack.summed("generated_tokens_total") == traffic["generated"]
    assert stack.summed("errors_total") == 0


def test_a_stream_reaches_the_client_token_by_token_through_nginx(stack: Stack) -> None:
    prompt = [{"role": "user", "content": "Stream this one."}]
    with ollama.Client(host=stack.sim.url) as direct:
        expected = "".join(p.message.content or "" for p in direct.chat(
            model=MODEL, messages=prompt, stream=True))
    before = len(stack.sim.reports)
    # The simulator holds the stream after its first token until released: the client can
    # only see that token if neither nginx nor the proxy waits for more.
    with ollama.Client(host=stack.nginx.url, timeout=30,
                       headers={"X-Sim-Hold": "scale-stream"}) as client:
        stream = client.chat(model=MODEL, messages=prompt, stream=True)
        first = next(iter(stream))
        assert first.message.content and not first.done
        assert len(stack.sim.reports) == before  # the upstream has not finished
        stack.sim.release("scale-stream")
        rest = list(stream)
    assert first.message.content + "".join(p.message.content or "" for p in rest) == expected
    assert rest[-1].done and rest[-1].eval_count == stack.sim.wait_for_reports(before + 1)[-1][
        "eval_count"]


def test_a_large_image_body_passes_and_no_proxy_gives_an_ollama_shaped_error(
    stack: Stack, tmp_path: Path
) -> None:
    image = bytes(range(256)) * 12_000  # 3 MB: 4 MB of base64 in the JSON body

    def outcome(url: str) -> tuple[Any, ...]:
        with ollama.Client(host=url, timeout=60) as client:
            try:
                reply = client.chat(model=MODEL, messages=[
                    {"role": "user", "content": "What is in this picture?", "images": [image]}])
            except ollama.ResponseError as e:  # the simulator may refuse big bodies itself
                return e.status_code, e.error
            return 200, reply.message.content

    # What nginx forwards, the upstream answers: nginx's own limit (1 MB by default) would
    # answer 413 with an HTML page instead.
    assert outcome(stack.nginx.url) == outcome(stack.sim.url)

    with refusing_port() as nobody:
        closed = Nginx(tmp_path / "nginx", [f"127.0.0.1:{nobody}"])
        try:
            with ollama.Client(host=closed.url) as client, pytest.raises(
                ollama.ResponseError
            ) as e:
                client.chat(model=MODEL, messages=[{"role": "user", "content": "anyone?"}])
        finally:
            closed.stop()
    assert e.value.status_code == 502
    assert e.value.error == "no llama-metrics proxy behind nginx answered"


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = tool("prometheus", "prometheus")
    tmp = tmp_path_factory.mktemp("prometheus-scale")
    port = free_port()
    config = scrape_config(tmp, [p.metrics_port for p in stack.proxies], port)
    with run_prometheus(binary, config, tmp, port) as server:
        yield server


def dashboard_numbers(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dashboard's /api/snapshot (live) and /api/models?window=15m (history)."""
    app = create_app({"TESTING": True, "AUTOSTART": False, "SETTINGS": {
        "healthd_url": "", "narrative_model": "", **settings}})
    try:
        client = app.test_client()
        live, models = client.get("/api/snapshot"), client.get("/api/models?window=15m")
        assert live.status_code == models.status_code == 200, models.get_data(as_text=True)
        return live.get_json(), models.get_json()
    finally:
        app.extensions["llama_metrics"].stop()


def totals(models: list[dict[str, Any]]) -> tuple[int, int, int]:
    return (sum(m["requests"] for m in models), sum(m["prompt_tokens"] for m in models),
            sum(m["generated_tokens"] for m in models))


def test_prometheus_and_the_dashboard_show_both_proxies_as_one(
    stack: Stack, traffic: dict[str, float], prometheus: Prometheus
) -> None:
    wait_until(lambda: sum(stack.served()) >= traffic["requests"], "every request counted",
               timeout=15)
    expected = (int(stack.summed("requests_total")), int(stack.summed("prompt_tokens_total")),
                int(stack.summed("generated_tokens_total")))
    assert expected[1] >= traffic["prompt"] and expected[2] >= traffic["generated"], expected
    queries = ("sum(ollama_proxy_requests_total)", "sum(ollama_proxy_prompt_tokens_total)",
               "sum(ollama_proxy_generated_tokens_total)")
    last: list[float | None] = []

    def scraped() -> bool:
        last[:] = [prometheus.value(q) for q in queries]
        return last == list(expected)

    assert prometheus.poll(scraped), f"prometheus has {last}, the proxies {expected}"
    assert prometheus.value('count(up{job="llama-metrics-proxy", instance="local"} == 1)') == 2

    def history_complete() -> bool:
        with closing(history.connect_readonly(stack.history_db)) as conn:
            return bool(history.totals(conn, 0)["requests"] >= expected[0])

    wait_until(history_complete, "every request in the history", timeout=15)

    urls = ",".join(p.metrics_url for p in stack.proxies)
    common = {"proxy_metrics_url": urls, "history_path": str(stack.history_db)}
    live, from_history = dashboard_numbers({**common, "prometheus_url": ""})
    _, from_prometheus = dashboard_numbers({**common, "prometheus_url": prometheus.url})
    assert [p["reachable"] for p in live["status"]["proxy"]["proxies"]] == [True, True]
    assert totals(live["models"]) == expected
    assert totals(from_history["models"]) == expected
    assert totals(from_prometheus["models"]) == expected


def test_scripts_up_with_two_proxies_plans_nginx_in_front_and_one_proxy_stays_as_it_was(
    tmp_path: Path,
) -> None:
    proxy = {"listen_host": "127.0.0.1", "listen_port": 11435, "metrics_host": "127.0.0.1",
             "metrics_port": 8001, "upstream": "http://127.0.0.1:11434"}
    urls = {"dashboard": "http://127.0.0.1:3001", "healthd": "http://127.0.0.1:8080"}
    launch = supervise.Launch(None, {}, tmp_path / "logs", False)
    one = supervise.plan(launch, 1, proxy, proxy["upstream"], urls)
    assert [p.name for p in one] == ["proxy", "dashboard", "healthd"]
    assert "--proxy-metrics" not in one[1].args and "metrics_port=8001" not in one[0].args

    nginx_binary()
    two = supervise.plan(launch, 2, proxy, proxy["upstream"], urls, tmp_path)
    assert [p.name for p in two] == ["proxy-1", "proxy-2", "nginx", "dashboard", "healthd"]
    assert [p.binds for p in two[:3]] == [
        [("127.0.0.1", 11436), ("127.0.0.1", 8001)], [("127.0.0.1", 11437), ("127.0.0.1", 8002)],
        [("127.0.0.1", 11435)]]
    assert two[3].args[-4:] == ["--proxy-metrics", "http://127.0.0.1:8001",
                                "--proxy-metrics", "http://127.0.0.1:8002"]
    site = (tmp_path / "llama-metrics.conf").read_text()
    assert "server 127.0.0.1:11436 " in site and "listen 127.0.0.1:11435;" in site
    checked = subprocess.run([*two[2].args, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr

    # Public on every interface: only nginx is; the proxies behind it stay on the loopback.
    public = supervise.plan(launch, 2, {**proxy, "listen_host": "0.0.0.0"}, proxy["upstream"],
                            urls, tmp_path)
    assert [p.binds[0] for p in public[:3]] == [
        ("127.0.0.1", 11436), ("127.0.0.1", 11437), ("0.0.0.0", 11435)]
