"""A stand-in ``pynvml`` for end-to-end tests: one GPU drawing a constant power.

A mitmdump started with this folder first on ``PYTHONPATH`` imports it instead of the real
nvidia-ml-py (``llama_core.sampler`` imports ``pynvml`` by name). The GPU draws
``FAKE_NVML_WATTS`` (default 200) watts from the moment the module is imported, and its
energy counter (millijoules, as NVML's) counts exactly that, from the monotonic clock, so a
test knows how many joules any span of time holds.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

NAME = "Fake NVIDIA GPU"
WATTS = float(os.environ.get("FAKE_NVML_WATTS", "200"))
NVML_TEMPERATURE_GPU = 0
_T0 = time.monotonic()


class NVMLError(Exception):
    pass


def nvmlInit() -> None:
    pass


def nvmlShutdown() -> None:
    pass


def nvmlDeviceGetCount() -> int:
    return 1


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    return index


def nvmlDeviceGetName(handle: int) -> str:
    return NAME


def nvmlDeviceGetUtilizationRates(handle: int) -> SimpleNamespace:
    return SimpleNamespace(gpu=50, memory=10)


def nvmlDeviceGetMemoryInfo(handle: int) -> SimpleNamespace:
    return SimpleNamespace(used=1 << 30, total=8 << 30)


def nvmlDeviceGetTemperature(handle: int, sensor: int) -> int:
    return 50


def nvmlDeviceGetPowerUsage(handle: int) -> int:
    return int(WATTS * 1000)


def nvmlDeviceGetTotalEnergyConsumption(handle: int) -> int:
    return int((time.monotonic() - _T0) * WATTS * 1000)
