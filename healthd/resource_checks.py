"""Resource thresholds: host CPU, memory, a disk, and each GPU's memory against warn/critical.

Readings come from ``llama_core.sampler.ResourceSampler`` (psutil, NVML where there is a GPU),
the disk from ``psutil.disk_usage``. Keep one checker for the life of the daemon: the CPU
figure is the utilisation since its previous sample.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import psutil

from healthd.results import Outcome, Status
from llama_core.sampler import ResourceSampler
from llama_core.thresholds import Threshold

logger = logging.getLogger(__name__)

_LEVELS = {None: Status.OK, "warn": Status.WARN, "critical": Status.CRITICAL}


class ResourceCheck:
    """Samples the machine and compares each reading to its threshold."""

    def __init__(
        self,
        thresholds: Mapping[str, Threshold],
        *,
        disk_path: str = "/",
        sampler: ResourceSampler | None = None,
        disk_usage: Callable[[str], Any] = psutil.disk_usage,
        min_cpu_window_s: float = 0.5,
    ) -> None:
        self._thresholds = thresholds
        self._disk_path = disk_path
        self._sampler = sampler if sampler is not None else ResourceSampler()
        self._disk_usage = disk_usage
        self._first_after: float | None = time.monotonic() + min_cpu_window_s

    def close(self) -> None:
        self._sampler.close()

    def __call__(self) -> Outcome:
        if self._first_after is not None:
            time.sleep(max(self._first_after - time.monotonic(), 0.0))
            self._first_after = None
        sample = self._sampler.sample()
        # (label, threshold name, key in data, percent)
        readings: list[tuple[str, str, str, float]] = [
            ("CPU", "cpu_percent", "cpu_percent", sample.cpu_percent),
            ("memory", "memory_percent", "memory_percent",
             100.0 * sample.memory_used_bytes / max(sample.memory_total_bytes, 1)),
        ]
        problems: list[str] = []
        try:
            disk = self._disk_usage(self._disk_path)
            readings.append(
                (f"disk {self._disk_path}", "disk_percent", "disk_percent", float(disk.percent)))
        except OSError as exc:
            problems.append(f"disk {self._disk_path} unreadable ({exc.strerror or exc})")
        for gpu in sample.gpus:
            if gpu.memory_used_bytes is not None and gpu.memory_total_bytes:
                percent = 100.0 * gpu.memory_used_bytes / gpu.memory_total_bytes
                readings.append((f"GPU {gpu.index} memory", "gpu_memory_percent",
                                 f"gpu{gpu.index}_memory_percent", percent))

        status = Status.WARN if problems else Status.OK
        data: dict[str, float] = {}
        parts: list[str] = []
        for label, name, key, percent in readings:
            data[key] = round(percent, 1)
            threshold = self._thresholds[name]
            level = threshold.breached(percent)
            status = max(status, _LEVELS[level])
            if level is not None:
                limit = threshold.critical if level == "critical" else threshold.warn
                problems.append(f"{label} {percent:.1f}% >= {limit:g}% ({level})")
            else:
                parts.append(f"{label} {percent:.0f}%")
        detail = "; ".join(problems) if problems else ", ".join(parts)
        return Outcome(status, detail, data)
