"""Readings of this machine: host CPU and memory, Ollama's processes, NVIDIA GPUs.

``ResourceSampler.sample()`` reads the host through psutil and the GPUs through NVML. The
proxy polls it in the background (``addons.resources``); the health daemon samples it for its
resource checks (``healthd.resource_checks``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuSample:
    """One NVIDIA GPU; a field is ``None`` where NVML does not support it on this card."""

    index: int
    name: str
    utilization_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_celsius: float | None = None
    power_watts: float | None = None
    # NVML's energy counter: joules since the driver loaded (Volta and later); None elsewhere.
    energy_joules: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceSample:
    """The machine at one moment. ``ollama_*`` are ``None`` when no Ollama process is visible."""

    cpu_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    ollama_rss_bytes: int | None = None
    ollama_cpu_percent: float | None = None
    gpus: list[GpuSample] = field(default_factory=list)


class ResourceSampler:
    """Reads host CPU and memory, the Ollama server process(es) and NVIDIA GPUs.

    ``process_names`` match a process name exactly or as the stem of a runner: ``ollama``
    matches ``ollama`` and ``ollama_llama_server`` (older Ollama's runner), not ``ollama app``.
    ``nvml=None`` imports ``pynvml`` on the first sample; without a driver, GPU or library the
    sampler logs why once and reports no GPUs.
    """

    def __init__(
        self,
        *,
        psutil_module: Any = psutil,
        nvml: object | None = None,
        process_names: Sequence[str] = ("ollama",),
    ) -> None:
        self._ps = psutil_module
        self._nvml: Any = nvml
        self._names = tuple(n.lower() for n in process_names)
        # psutil.Process objects are kept between samples: cpu_percent(None) measures since
        # the previous call on the same object, so a fresh object always reads 0.0.
        self._procs: dict[int, Any] = {}
        self._denied: set[int] = set()
        self._nvml_state = "new"  # new -> ready | unavailable
        self._gpus: list[tuple[int, Any, str]] = []
        self._failed_fields: set[tuple[int, str]] = set()
        # The first host cpu_percent(None) call only sets psutil's baseline.
        self._ps.cpu_percent(interval=None)

    def sample(self) -> ResourceSample:
        memory = self._ps.virtual_memory()
        rss, cpu = self._sample_ollama()
        return ResourceSample(
            cpu_percent=float(self._ps.cpu_percent(interval=None)),
            # total - available is what the OS could not hand out now; psutil's own
            # `used` is computed differently on each platform.
            memory_used_bytes=int(memory.total - memory.available),
            memory_total_bytes=int(memory.total),
            ollama_rss_bytes=rss,
            ollama_cpu_percent=cpu,
            gpus=self._sample_gpus(),
        )

    def close(self) -> None:
        """Shut NVML down if this sampler started it; a later sample starts it again."""
        if self._nvml_state == "ready":
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as exc:
                logger.debug("nvmlShutdown failed: %s", exc)
        if self._nvml_state != "unavailable":
            self._nvml_state = "new"
        self._gpus = []

    # -- Ollama processes ------------------------------------------------------------------

    def _matches(self, name: str) -> bool:
        name = name.lower().removesuffix(".exe")
        return any(name == n or name.startswith(n + "_") for n in self._names)

    def _sample_ollama(self) -> tuple[int | None, float | None]:
        seen: dict[int, Any] = {}
        for proc in self._ps.process_iter(["name"]):
            name = proc.info.get("name")
            if not name or not self._matches(name):
                continue
            kept = self._procs.get(proc.pid)
            seen[proc.pid] = kept if kept is not None and kept.is_running() else proc
        rss_total: int | None = None
        cpu_total: float | None = None
        for pid, proc in list(seen.items()):
            is_new = pid not in self._procs or self._procs[pid] is not proc
            try:
                rss = int(proc.memory_info().rss)
                cpu = float(proc.cpu_percent(interval=None))
            except self._ps.NoSuchProcess:
                del seen[pid]
                continue
            except self._ps.AccessDenied:
                del seen[pid]
                if pid not in self._denied:
                    self._denied.add(pid)
                    logger.info("ollama process %d is not readable (access denied)", pid)
                continue
            rss_total = (rss_total or 0) + rss
            if not is_new:  # a new object's first cpu_percent is only the baseline
                cpu_total = (cpu_total or 0.0) + cpu
        self._procs = seen
        return rss_total, cpu_total

    # -- NVIDIA GPUs -----------------------------------------------------------------------

    def _start_nvml(self) -> None:
        try:
            if self._nvml is None:
                self._nvml = importlib.import_module("pynvml")
            self._nvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded...
            self._nvml_state = "unavailable"
            logger.info("no GPU metrics: NVML unavailable (%s)", str(exc) or type(exc).__name__)
            return
        try:
            gpus = []
            for index in range(self._nvml.nvmlDeviceGetCount()):
                handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
                name = self._nvml.nvmlDeviceGetName(handle)
                if isinstance(name, bytes):  # pynvml before 11.5 returned bytes
                    name = name.decode("utf-8", "replace")
                gpus.append((index, handle, str(name)))
        except self._nvml.NVMLError as exc:
            self._nvml_state = "unavailable"
            logger.info("no GPU metrics: cannot list NVIDIA GPUs (%s)", exc)
            self._shutdown_quietly()
            return
        self._gpus = gpus
        self._nvml_state = "ready"
        logger.debug("NVML ready with %d GPU(s)", len(gpus))

    def _shutdown_quietly(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception as exc:
            logger.debug("nvmlShutdown failed: %s", exc)

    def _sample_gpus(self) -> list[GpuSample]:
        if self._nvml_state == "new":
            self._start_nvml()
        if self._nvml_state != "ready":
            return []
        return [self._sample_gpu(index, handle, name) for index, handle, name in self._gpus]

    def _sample_gpu(self, index: int, handle: Any, name: str) -> GpuSample:
        nvml = self._nvml
        util = self._read(index, name, "utilization", nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = self._read(index, name, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
        temp = self._read(
            index, name, "temperature", nvml.nvmlDeviceGetTemperature, handle,
            nvml.NVML_TEMPERATURE_GPU,
        )
        power_mw = self._read(index, name, "power", nvml.nvmlDeviceGetPowerUsage, handle)
        energy_mj = self._read_energy(index, name, handle)
        return GpuSample(
            index=index,
            name=name,
            utilization_percent=None if util is None else float(util.gpu),
            memory_used_bytes=None if memory is None else int(memory.used),
            memory_total_bytes=None if memory is None else int(memory.total),
            temperature_celsius=None if temp is None else float(temp),
            power_watts=None if power_mw is None else power_mw / 1000.0,
            energy_joules=None if energy_mj is None else energy_mj / 1000.0,
        )

    def _read_energy(self, index: int, name: str, handle: Any) -> Any:
        # A pynvml without the call (older than the driver API) is a card without the counter.
        func = getattr(self._nvml, "nvmlDeviceGetTotalEnergyConsumption", None)
        if func is None:
            if (index, "energy") not in self._failed_fields:
                self._failed_fields.add((index, "energy"))
                logger.info("GPU %d (%s): no energy reading (pynvml has no counter)", index, name)
            return None
        return self._read(index, name, "energy", func, handle)

    def _read(self, index: int, name: str, what: str, func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except self._nvml.NVMLError as exc:
            if (index, what) not in self._failed_fields:
                self._failed_fields.add((index, what))
                logger.info("GPU %d (%s): no %s reading (%s)", index, name, what, exc)
            return None
