"""addons/energy.py and the ledger's wiring: the fake NVML's counter through the poller and tap."""

from __future__ import annotations

import time
from pathlib import Path

from mitmproxy.test import taddons, tutils
from prometheus_client import CollectorRegistry, generate_latest

from addons.access import AccessControl
from addons.clients import ClientBudgets
from addons.context import ProxyContext
from addons.energy import Energy, EnergyCollector
from addons.history import History
from addons.metrics import ProxyMetrics
from addons.resources import ResourcePoller
from addons.routes import ModelLabels
from addons.tap import TrafficTap
from llama_core import catalogue
from llama_core.energy_ledger import EnergyLedger
from llama_core.record import RequestRecord
from llama_core.sampler import GpuSample, ResourceSample, ResourceSampler
from llama_core.security import Security
from tests.addons.test_clients import ALICE, BOT, CLIENTS, bearer
from tests.addons.test_resources import FakeNvml, FakePsutil
from tests.addons.test_tap import make_flow, respond, start
from tests.support import addons

H100 = "NVIDIA H100 80GB HBM3"
RTX = "NVIDIA GeForce RTX 4090"


def value(registry: CollectorRegistry, name: str, /, **labels: str) -> float | None:
    """A sample's value, None when absent; ``client`` is "" unless given, where there is one."""
    full = f"ollama_proxy_{name}"
    if "client" in catalogue.BY_NAME[full].labels:
        labels = {"client": "", **labels}
    return registry.get_sample_value(full, labels)


def energy_series(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return sorted({line.split()[2] for line in text.splitlines()
                   if line.startswith("# TYPE ") and "energy" in line})


def poller_with(nvml: FakeNvml) -> tuple[ResourcePoller, EnergyLedger, CollectorRegistry]:
    """A poller whose polls happen at 0, 5, 10 ... seconds."""
    ledger = EnergyLedger()
    times = iter(range(0, 10_000, 5))
    poller = ResourcePoller(ResourceSampler(psutil_module=FakePsutil(), nvml=nvml),
                            on_sample=lambda s: ledger.poll(float(next(times)), s.gpus))
    registry = CollectorRegistry()
    registry.register(EnergyCollector(ledger))
    return poller, ledger, registry


def test_the_counter_and_the_integrated_gpu_are_exported_with_their_source() -> None:
    # GPU 0 has NVML's counter (mJ); GPU 1 has none, only power draw (mW).
    nvml = FakeNvml(energy_mj={0: [5_000_000, 5_600_000, 6_100_000]},
                    power_mw={0: [300_000], 1: [100_000, 100_000, 140_000]})
    poller, ledger, registry = poller_with(nvml)
    poller.poll_once()
    assert energy_series(registry) == []  # a baseline, no interval yet
    poller.poll_once()
    poller.poll_once()
    assert value(registry, "gpu_energy_joules_total", gpu="0", name=H100,
                 source="counter") == 1100.0
    integrated = value(registry, "gpu_energy_joules_total", gpu="1", name=RTX,
                       source="integrated")
    assert integrated == 100.0 * 5 + (100.0 + 140.0) / 2 * 5
    assert value(registry, "gpu_idle_energy_joules_total", gpu="0", name=H100) == 1100.0
    assert value(registry, "gpu_idle_energy_joules_total", gpu="1", name=RTX) == integrated
    assert energy_series(registry) == [
        "ollama_proxy_gpu_energy_joules_total", "ollama_proxy_gpu_idle_energy_joules_total"]
    assert ledger.totals().attributed == {}


def test_no_gpu_no_energy_series() -> None:
    poller, _, registry = poller_with(FakeNvml(init_error="Driver Not Loaded"))
    for _ in range(3):
        poller.poll_once()
    assert energy_series(registry) == []
    assert list(registry.collect()) == []


def gpu(joules: float) -> list[GpuSample]:
    return [GpuSample(index=0, name=H100, energy_joules=joules)]


def test_a_streamed_request_through_the_tap_gets_its_joules_at_the_next_poll() -> None:
    ledger = EnergyLedger()
    registry = CollectorRegistry()
    registry.register(EnergyCollector(ledger))
    finished: list[RequestRecord] = []
    completed: list[RequestRecord] = []
    tap = TrafficTap(ProxyMetrics(registry), ModelLabels(), on_record=finished.append,
                     energy=ledger, on_complete=completed.append)
    lines = [b'{"model":"llama3.2","message":{"role":"assistant","content":"%d"},"done":false}\n'
             % i for i in range(4)]
    final = (b'{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,'
             b'"eval_count":4,"prompt_eval_count":3}\n')
    # The tap stamps flows with the real perf_counter; the polls are put 10 s apart after it,
    # so the joules per interval stay within what a GPU can draw.
    t0 = time.perf_counter()
    ledger.poll(t0, gpu(100.0))
    with taddons.context(tap):
        flow = make_flow("/api/chat", {"model": "llama3.2", "messages": []})
        start(tap, flow)
        other = make_flow("/api/chat", {"model": "qwen3", "messages": []})
        start(tap, other)  # in flight, but no tokens in the first interval
        flow.response = tutils.tresp(status_code=200, content=None)
        flow.response.headers["content-type"] = "application/x-ndjson"
        tap.responseheaders(flow)
        stream = flow.response.stream
        assert callable(stream)
        for line in lines[:3]:
            stream(line)
        ledger.poll(t0 + 10.0, gpu(400.0))  # 300 J: llama3.2's 3 tokens, qwen3's 0
        stream(lines[3])
        stream(final)
        stream(b"")
        tap.response(flow)
        assert [r.model for r in finished] == ["llama3.2:latest"]
        assert finished[0].energy_j is None and completed == []  # waits for the poll
        tap.error(other)  # qwen3 is cut off; still in flight until now
        ledger.poll(t0 + 20.0, gpu(500.0))  # 100 J: llama3.2's 1 token, qwen3's 0
    assert [(r.model, r.energy_j) for r in completed] == [
        ("llama3.2:latest", 400.0), ("qwen3:latest", 0.0)]
    assert finished[0] is completed[0]  # /requests shows the same record, now with its joules
    assert value(registry, "energy_joules_total", model="llama3.2:latest") == 400.0
    assert value(registry, "energy_joules_total", model="qwen3:latest") == 0.0
    assert value(registry, "gpu_idle_energy_joules_total", gpu="0", name=H100) == 0.0
    assert ledger.pending == 0


def test_without_a_ledger_the_record_is_complete_at_once() -> None:
    completed: list[RequestRecord] = []
    tap = TrafficTap(ProxyMetrics(CollectorRegistry()), ModelLabels(),
                     on_complete=completed.append)
    with taddons.context(tap):
        flow = make_flow("/api/tags", b"")
        start(tap, flow)
        flow.response = tutils.tresp(status_code=200, content=b"{}")
        tap.response(flow)
    assert [(r.endpoint, r.energy_j) for r in completed] == [("/api/tags", None)]


def chat_lines(tokens: int) -> list[bytes]:
    lines = [b'{"model":"llama3.2","message":{"role":"assistant","content":"%d"},"done":false}\n'
             % i for i in range(tokens)]
    return [*lines, b'{"model":"llama3.2","message":{"role":"assistant","content":""},'
            b'"done":true,"eval_count":%d,"prompt_eval_count":3}\n' % tokens]


def test_joules_are_attributed_by_client_as_tokens_are_counted(tmp_path: Path) -> None:
    """energy_joules_total has generated_tokens_total's model and client: J/token divides."""
    clients_file = tmp_path / "clients.yml"
    clients_file.write_text(CLIENTS)
    security = Security(clients_file=str(clients_file), allow_anonymous=True)
    ledger = EnergyLedger()
    registry = CollectorRegistry()
    registry.register(EnergyCollector(ledger))
    completed: list[RequestRecord] = []
    tap = TrafficTap(ProxyMetrics(registry), ModelLabels(), energy=ledger,
                     on_complete=completed.append)
    budgets = ClientBudgets()
    budgets.apply(security, "", None)
    access = AccessControl(ProxyContext(security=security), clients=budgets.clients)
    t0 = time.perf_counter()
    ledger.poll(t0, gpu(100.0))
    with taddons.context(tap):
        # alice 6 tokens, ci-bot 3, an anonymous client 1, all in one interval of 500 J.
        for headers, tokens in ((bearer(ALICE), 6), (bearer(BOT), 3), ({}, 1)):
            flow = make_flow("/api/chat", {"model": "llama3.2", "messages": []}, headers)
            for addon in (tap, access, budgets):
                addon.requestheaders(flow)
            tap.request(flow)
            assert flow.response is None  # forwarded
            respond(tap, flow, 200, "application/x-ndjson", chat_lines(tokens))
        ledger.poll(t0 + 10.0, gpu(600.0))
    assert sorted((r.client, r.energy_j) for r in completed) == [
        ("alice", 300.0), ("anonymous", 50.0), ("ci-bot", 150.0)]
    model = "llama3.2:latest"
    for client, joules, tokens in (("alice", 300.0, 6), ("ci-bot", 150.0, 3),
                                   ("anonymous", 50.0, 1)):
        assert value(registry, "energy_joules_total", model=model, client=client) == joules
        assert value(registry, "generated_tokens_total", model=model, client=client) == tokens
    assert value(registry, "energy_joules_total", model=model) is None  # no client "" here


def machine(joules: float | None) -> ResourceSample:
    gpus = [] if joules is None else gpu(joules)
    return ResourceSample(cpu_percent=1.0, memory_used_bytes=1, memory_total_bytes=2, gpus=gpus)


def test_the_addon_feeds_the_ledger_from_each_sample_and_closes_it_in_done() -> None:
    """Energy in mitmproxy's test context: samples from the context, stamped by its clock."""
    context = ProxyContext()
    moments = iter([0.0, 10.0, 20.0])
    energy = Energy(context, clock=lambda: next(moments))
    got: list[float | None] = []
    with taddons.context() as tctx:
        script = addons.start(tctx, energy)
        addons.running(tctx, script)
        context.publish_sample(machine(100.0))  # at 0 s: the baseline
        assert energy_series(context.registry) == []
        request = context.energy.start(("llama3.2:latest", "alice"), lambda: 4, 1.0)
        context.publish_sample(machine(400.0))  # at 10 s: 300 J, all the request's
        context.energy.finish(request, 12.0, got.append)
        assert got == [] and context.energy.pending == 1  # waits for the poll after its end
        addons.done(tctx, script)
    # done() completed it with what was known: its share of 10-12 s is lost with the stop.
    assert got == [300.0] and context.energy.pending == 0
    assert value(context.registry, "energy_joules_total", model="llama3.2:latest",
                 client="alice") == 300.0
    assert value(context.registry, "gpu_idle_energy_joules_total", gpu="0", name=H100) == 0.0
    # Closed: a request that ends now is completed at once, and no sample is taken any more.
    late = context.energy.start(("llama3.2:latest", "alice"), lambda: 1, 13.0)
    context.energy.finish(late, 14.0, got.append)
    assert got == [300.0, None]


def test_the_addon_without_a_gpu_exports_nothing_and_completes_at_once() -> None:
    context = ProxyContext()
    energy = Energy(context, clock=iter([0.0, 5.0, 10.0]).__next__)
    got: list[float | None] = []
    with taddons.context() as tctx:
        script = addons.start(tctx, energy)
        addons.running(tctx, script)
        context.publish_sample(machine(None))
        request = context.energy.start(("m:latest", ""), lambda: 3, 1.0)
        context.publish_sample(machine(None))
        context.energy.finish(request, 6.0, got.append)
        assert got == [None]  # no meter: nothing to wait for
        addons.done(tctx, script)
    assert energy_series(context.registry) == []


def test_the_energy_addon_comes_before_the_history() -> None:
    """Its done() hands the rows still waiting for a poll on before the history file closes."""
    from addons.llama_metrics import compose  # the script composes its addons on import


    kinds = [type(addon) for addon in compose()]
    assert kinds.index(Energy) < kinds.index(History)
