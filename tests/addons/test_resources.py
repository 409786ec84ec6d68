"""addons/resources.py and llama_core/sampler.py: sampling with fake psutil and NVML, the poller."""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from addons.resources import ResourceCollector, ResourcePoller
from llama_core.sampler import GpuSample, ResourceSample, ResourceSampler

GIB = 1024**3
LOGGER = "llama_core.sampler"


# -- fake psutil -------------------------------------------------------------------------------


class FakeNoSuchProcess(Exception):
    pass


class FakeAccessDenied(Exception):
    pass


@dataclass
class FakeOsProcess:
    """What the fake OS knows about one process; the psutil-like handles read it."""

    pid: int
    name: str
    rss: int = 0
    cpu: float = 0.0
    alive: bool = True
    denied: bool = False


class FakeProcess:
    """Like psutil.Process: cpu_percent(None) reads 0.0 on an object's first call."""

    def __init__(self, os_proc: FakeOsProcess) -> None:
        self._os = os_proc
        self.pid = os_proc.pid
        self.info = {"name": os_proc.name}
        self._primed = False

    def is_running(self) -> bool:
        return self._os.alive

    def _check(self) -> None:
        if not self._os.alive:
            raise FakeNoSuchProcess(self.pid)
        if self._os.denied:
            raise FakeAccessDenied(self.pid)

    def memory_info(self) -> SimpleNamespace:
        self._check()
        return SimpleNamespace(rss=self._os.rss)

    def cpu_percent(self, interval: float | None = None) -> float:
        self._check()
        if not self._primed:
            self._primed = True
            return 0.0
        return self._os.cpu


@dataclass
class FakePsutil:
    procs: list[FakeOsProcess] = field(default_factory=list)
    host_cpu: float = 12.5
    total: int = 16 * GIB
    available: int = 4 * GIB
    NoSuchProcess: type[Exception] = FakeNoSuchProcess
    AccessDenied: type[Exception] = FakeAccessDenied

    def cpu_percent(self, interval: float | None = None) -> float:
        assert interval is None, "the sampler must never block in cpu_percent"
        return self.host_cpu

    def virtual_memory(self) -> SimpleNamespace:
        return SimpleNamespace(total=self.total, available=self.available)

    def process_iter(self, attrs: list[str]) -> list[FakeProcess]:
        # A fresh handle per call: only a sampler that keeps its handles gets CPU readings.
        return [FakeProcess(p) for p in self.procs if p.alive]


# -- fake NVML ---------------------------------------------------------------------------------


class FakeNVMLError(Exception):
    pass


class FakeNvml:
    """Two GPUs; GPU 1 cannot report power; its name comes back as bytes like old pynvml."""

    NVMLError = FakeNVMLError
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, *, init_error: str | None = None) -> None:
        self.init_error = init_error
        self.inits = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.init_error:
            raise FakeNVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str | bytes:
        return "NVIDIA H100 80GB HBM3" if handle == 0 else b"NVIDIA GeForce RTX 4090"

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=[87, 3][handle], memory=40)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(used=[60 * GIB, 1 * GIB][handle], total=[80 * GIB, 24 * GIB][handle])

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return [71, 40][handle]

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        if handle == 1:
            raise FakeNVMLError("Not Supported")
        return 350_500  # milliwatts


def ollama_procs() -> list[FakeOsProcess]:
    return [
        FakeOsProcess(10, "ollama", rss=500_000_000, cpu=5.0),
        FakeOsProcess(11, "ollama_llama_server", rss=4_000_000_000, cpu=190.0),
        FakeOsProcess(12, "python3", rss=7, cpu=99.0),
        FakeOsProcess(13, "ollama app", rss=7, cpu=99.0),  # the desktop tray app
    ]


def registry_for(source: Any) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ResourceCollector(source))
    return registry


def value(registry: CollectorRegistry, metric: str, /, **labels: str) -> float | None:
    return registry.get_sample_value(f"ollama_proxy_{metric}", labels)


GPU_NAMES = (
    "gpu_utilization_percent",
    "gpu_memory_used_bytes",
    "gpu_memory_total_bytes",
    "gpu_temperature_celsius",
    "gpu_power_watts",
)


def gpu_series(registry: CollectorRegistry) -> list[str]:
    """GPU metric names in the exposition text: not even HELP/TYPE lines when absent."""
    text = generate_latest(registry).decode()
    return sorted({line.split()[2] for line in text.splitlines() if " ollama_proxy_gpu" in line})


# -- sampler -----------------------------------------------------------------------------------


def test_host_and_ollama_processes_summed_with_cpu_from_kept_handles() -> None:
    ps = FakePsutil(procs=ollama_procs())
    sampler = ResourceSampler(psutil_module=ps, nvml=FakeNvml(init_error="Driver Not Loaded"))

    first = sampler.sample()
    assert first.cpu_percent == 12.5
    assert first.memory_total_bytes == 16 * GIB
    assert first.memory_used_bytes == 12 * GIB
    assert first.ollama_rss_bytes == 4_500_000_000
    assert first.ollama_cpu_percent is None  # the first reading is psutil's baseline only

    second = sampler.sample()
    assert second.ollama_cpu_percent == 195.0
    assert second.ollama_rss_bytes == 4_500_000_000


def test_vanished_and_unreadable_processes_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    ps = FakePsutil(procs=ollama_procs())
    sampler = ResourceSampler(psutil_module=ps, nvml=FakeNvml(init_error="no"))
    sampler.sample()

    ps.procs[1].alive = False  # runner exited between samples
    ps.procs.append(FakeOsProcess(20, "ollama", rss=1, cpu=1.0, denied=True))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        sample = sampler.sample()
        sampler.sample()
    assert sample.ollama_rss_bytes == 500_000_000
    assert sample.ollama_cpu_percent == 5.0
    denied = [r for r in caplog.records if "access denied" in r.getMessage()]
    assert len(denied) == 1 and "20" in denied[0].getMessage()


def test_no_ollama_process_visible_gives_none_and_no_series() -> None:
    ps = FakePsutil(procs=[FakeOsProcess(1, "systemd", rss=10)])
    sampler = ResourceSampler(psutil_module=ps, nvml=FakeNvml(init_error="no"))
    sample = sampler.sample()
    assert sample.ollama_rss_bytes is None and sample.ollama_cpu_percent is None

    registry = registry_for(SimpleNamespace(last=sample))
    assert value(registry, "system_cpu_percent") == 12.5
    assert value(registry, "ollama_process_rss_bytes") is None
    assert value(registry, "ollama_process_cpu_percent") is None


def test_two_gpus_with_one_unsupported_field(caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml()
    sampler = ResourceSampler(psutil_module=FakePsutil(), nvml=nvml)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(3):
            sample = sampler.sample()

    assert nvml.inits == 1
    assert sample.gpus == [
        GpuSample(index=0, name="NVIDIA H100 80GB HBM3", utilization_percent=87.0,
                  memory_used_bytes=60 * GIB, memory_total_bytes=80 * GIB,
                  temperature_celsius=71.0, power_watts=350.5),
        GpuSample(index=1, name="NVIDIA GeForce RTX 4090", utilization_percent=3.0,
                  memory_used_bytes=1 * GIB, memory_total_bytes=24 * GIB,
                  temperature_celsius=40.0, power_watts=None),
    ]
    power_logs = [r.getMessage() for r in caplog.records if "power" in r.getMessage()]
    assert power_logs == ["GPU 1 (NVIDIA GeForce RTX 4090): no power reading (Not Supported)"]

    registry = registry_for(SimpleNamespace(last=sample))
    h100 = {"gpu": "0", "name": "NVIDIA H100 80GB HBM3"}
    rtx = {"gpu": "1", "name": "NVIDIA GeForce RTX 4090"}
    assert value(registry, "gpu_utilization_percent", **h100) == 87.0
    assert value(registry, "gpu_memory_used_bytes", **h100) == 60 * GIB
    assert value(registry, "gpu_memory_total_bytes", **rtx) == 24 * GIB
    assert value(registry, "gpu_temperature_celsius", **rtx) == 40.0
    assert value(registry, "gpu_power_watts", **h100) == 350.5
    assert value(registry, "gpu_power_watts", **rtx) is None
    assert gpu_series(registry) == sorted(f"ollama_proxy_{n}" for n in GPU_NAMES)

    sampler.close()
    assert nvml.shutdowns == 1


@pytest.mark.parametrize("broken", ["init", "import"])
def test_nvml_unavailable_logs_once_and_has_no_gpu_series(
    broken: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml: FakeNvml | None = FakeNvml(init_error="Driver Not Loaded")
    if broken == "import":
        monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
        nvml = None
    sampler = ResourceSampler(psutil_module=FakePsutil(), nvml=nvml)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        samples = [sampler.sample() for _ in range(3)]
        sampler.close()

    assert [r.getMessage() for r in caplog.records] == [caplog.records[0].getMessage()]
    assert caplog.records[0].getMessage().startswith("no GPU metrics: NVML unavailable (")
    if nvml is not None:
        assert "Driver Not Loaded" in caplog.records[0].getMessage()
        assert nvml.inits == 1 and nvml.shutdowns == 0
    assert all(s.gpus == [] for s in samples)
    registry = registry_for(SimpleNamespace(last=samples[-1]))
    assert gpu_series(registry) == []
    assert value(registry, "system_memory_total_bytes") == 16 * GIB


def test_real_psutil_and_pynvml_on_this_machine(caplog: pytest.LogCaptureFixture) -> None:
    sampler = ResourceSampler()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        sample = sampler.sample()
        sampler.sample()
        sampler.close()
    registry = registry_for(SimpleNamespace(last=sample))

    total = value(registry, "system_memory_total_bytes")
    assert total is not None and total > 0
    used = value(registry, "system_memory_used_bytes")
    assert used is not None and 0 < used <= total
    cpu = value(registry, "system_cpu_percent")
    assert cpu is not None and 0.0 <= cpu <= 100.0
    if sample.gpus:  # a machine with an NVIDIA driver: every GPU is exposed
        assert "ollama_proxy_gpu_memory_total_bytes" in gpu_series(registry)
        assert value(registry, "gpu_memory_total_bytes", gpu="0", name=sample.gpus[0].name)
    else:  # no driver (as on the CI machine): why, once, and no GPU series at all
        assert len([r for r in caplog.records if "no GPU metrics" in r.getMessage()]) == 1
        assert gpu_series(registry) == []


# -- collector and poller ----------------------------------------------------------------------


def test_collector_has_nothing_before_the_first_sample() -> None:
    poller = ResourcePoller(ResourceSampler(psutil_module=FakePsutil(), nvml=FakeNvml()))
    registry = registry_for(poller)
    assert list(registry.collect()) == []
    assert value(registry, "system_cpu_percent") is None


def test_collector_reads_the_last_sample_not_a_new_one() -> None:
    ps = FakePsutil()
    poller = ResourcePoller(ResourceSampler(psutil_module=ps, nvml=FakeNvml(init_error="x")))
    registry = registry_for(poller)
    poller.poll_once()
    ps.host_cpu = 99.0
    assert value(registry, "system_cpu_percent") == 12.5  # a scrape does not sample
    poller.poll_once()
    assert value(registry, "system_cpu_percent") == 99.0


def test_poller_samples_in_background_and_stops_at_once() -> None:
    ps = FakePsutil(procs=ollama_procs())
    nvml = FakeNvml()
    poller = ResourcePoller(ResourceSampler(psutil_module=ps, nvml=nvml), interval=0.01)
    registry = registry_for(poller)
    poller.start()
    try:
        assert poller.wait_for_poll(2, timeout=5.0)
    finally:
        poller.stop()
    assert isinstance(poller.last, ResourceSample)
    assert value(registry, "ollama_process_cpu_percent") == 195.0
    assert value(registry, "gpu_utilization_percent", gpu="0", name="NVIDIA H100 80GB HBM3")
    assert nvml.shutdowns == 1  # stop() closes the sampler

    slow = ResourcePoller(ResourceSampler(psutil_module=ps, nvml=FakeNvml()), interval=60.0)
    slow.start()
    assert slow.wait_for_poll(1, timeout=5.0)
    began = time.perf_counter()
    slow.stop()
    assert time.perf_counter() - began < 1.0
    assert not any(t.name == "resource-poller" for t in threading.enumerate())


def test_poller_logs_a_failed_sample_and_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    sampler = ResourceSampler(psutil_module=FakePsutil(), nvml=FakeNvml())
    real_sample = sampler.sample
    calls = 0

    def flaky() -> ResourceSample:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("psutil exploded")
        return real_sample()

    sampler.sample = flaky  # type: ignore[method-assign]
    poller = ResourcePoller(sampler, interval=0.01)
    with caplog.at_level(logging.ERROR, logger="addons.polling"):
        poller.start()
        try:
            assert poller.wait_for_poll(2, timeout=5.0)
        finally:
            poller.stop()
    assert poller.last is not None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0].getMessage() == "resource-poller: poll failed"
    assert errors[0].exc_info is not None


def test_poller_rejects_a_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        ResourcePoller(ResourceSampler(psutil_module=FakePsutil(), nvml=FakeNvml()), interval=0)


def test_poller_hands_every_sample_to_on_sample(caplog: pytest.LogCaptureFixture) -> None:
    ps = FakePsutil()
    handed: list[ResourceSample] = []
    poller = ResourcePoller(ResourceSampler(psutil_module=ps, nvml=FakeNvml()),
                            on_sample=handed.append)
    poller.poll_once()
    ps.host_cpu = 77.0
    poller.poll_once()
    assert [s.cpu_percent for s in handed] == [12.5, 77.0]
    assert handed[-1] is poller.last

    def broken(sample: ResourceSample) -> None:
        raise RuntimeError("history exploded")

    poller.on_sample = broken
    ps.host_cpu = 5.0
    with caplog.at_level(logging.ERROR, logger="addons.resources"):
        poller.poll_once()  # the callback's failure is logged; the sample is still shown
    assert "history exploded" in caplog.text
    assert poller.last is not None and poller.last.cpu_percent == 5.0
