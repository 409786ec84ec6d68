"""Tests for healthd/resource_checks.py: thresholds over fake psutil, NVML and disk readings."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from healthd.config import DEFAULT_THRESHOLDS
from healthd.resource_checks import ResourceCheck
from healthd.results import Status
from llama_core.sampler import ResourceSampler
from llama_core.thresholds import Threshold

GIB = 1024**3


class FakePsutil:
    NoSuchProcess = ProcessLookupError
    AccessDenied = PermissionError

    def __init__(self, cpu: float = 10.0, used_gib: float = 4, total_gib: float = 16) -> None:
        self.cpu, self.used, self.total = cpu, int(used_gib * GIB), int(total_gib * GIB)

    def cpu_percent(self, interval: float | None = None) -> float:
        return self.cpu

    def virtual_memory(self) -> SimpleNamespace:
        return SimpleNamespace(total=self.total, available=self.total - self.used)

    def process_iter(self, attrs: list[str]) -> list[Any]:
        return []


class FakeNvml:
    """One GPU with ``used`` of 24 GiB in use."""

    class NVMLError(Exception):
        pass

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, used_gib: float) -> None:
        self.used = int(used_gib * GIB)

    def nvmlInit(self) -> None: ...  # noqa: N802 (NVML's names)
    def nvmlShutdown(self) -> None: ...  # noqa: N802
    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:  # noqa: N802
        return "RTX Fake"

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(gpu=50)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(used=self.used, total=24 * GIB)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:  # noqa: N802
        return 60

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:  # noqa: N802
        raise self.NVMLError("not supported")


class NoNvml:
    """A machine without an NVIDIA driver."""

    def nvmlInit(self) -> None:  # noqa: N802
        raise OSError("NVML Shared Library Not Found")


def make_check(*, disk: float | Exception = 50.0, thresholds: dict | None = None,
               gpu_used_gib: float | None = None, **ps: float) -> ResourceCheck:
    def disk_usage(path: str) -> SimpleNamespace:
        assert path == "/data"
        if isinstance(disk, Exception):
            raise disk
        return SimpleNamespace(percent=disk)

    nvml: Any = FakeNvml(gpu_used_gib) if gpu_used_gib is not None else NoNvml()
    sampler = ResourceSampler(psutil_module=FakePsutil(**ps), nvml=nvml)
    return ResourceCheck({**DEFAULT_THRESHOLDS, **(thresholds or {})}, disk_path="/data",
                         sampler=sampler, disk_usage=disk_usage, min_cpu_window_s=0)


def test_all_below_thresholds_is_ok() -> None:
    out = make_check(cpu=12.0, used_gib=4, gpu_used_gib=6)()
    assert out.status is Status.OK
    assert out.detail == "CPU 12%, memory 25%, disk /data 50%, GPU 0 memory 25%"
    assert out.data == {"cpu_percent": 12.0, "memory_percent": 25.0, "disk_percent": 50.0,
                        "gpu0_memory_percent": 25.0}


@pytest.mark.parametrize("kwargs, status, detail", [
    ({"used_gib": 14.6}, Status.WARN, "memory 91.2% >= 90% (warn)"),
    ({"used_gib": 15.5}, Status.CRITICAL, "memory 96.9% >= 95% (critical)"),
    ({"cpu": 99.0}, Status.CRITICAL, "CPU 99.0% >= 98% (critical)"),
    ({"disk": 90.0}, Status.WARN, "disk /data 90.0% >= 85% (warn)"),
    ({"gpu_used_gib": 23.9}, Status.CRITICAL, "GPU 0 memory 99.6% >= 99% (critical)"),
    ({"disk": PermissionError(13, "Permission denied")}, Status.WARN,
     "disk /data unreadable (Permission denied)"),
    ({"cpu": 99.0, "thresholds": {"cpu_percent": Threshold(None, None)}}, Status.OK, "CPU 99%"),
])
def test_thresholds(kwargs: dict, status: Status, detail: str) -> None:
    out = make_check(**kwargs)()
    assert out.status is status
    assert detail in out.detail


def test_worst_reading_decides_and_every_problem_is_named() -> None:
    out = make_check(cpu=95.0, used_gib=15.5)()
    assert out.status is Status.CRITICAL
    assert out.detail == "CPU 95.0% >= 90% (warn); memory 96.9% >= 95% (critical)"
