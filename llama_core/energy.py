"""GPU energy per poll interval, from NVML's energy counter or integrated from power draw.

``GpuMeter`` turns one GPU's successive readings (the counter in joules since the driver
loaded, the power draw in watts) into the joules it used between two polls. It never reports
a negative or impossible amount: when the counter goes down (the driver was reloaded and
counts from zero again) or jumps further than any GPU could draw, that interval is
integrated from the power draw instead, and counted as such. ``GpuMeters`` keeps one meter
per GPU and the totals the proxy exports. Nothing here imports mitmproxy; the attribution of
these joules to requests is ``llama_core.energy_ledger``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from .sampler import GpuSample

logger = logging.getLogger(__name__)

# Above any single GPU's draw (an H200 or B200 is rated 700-1200 W): a counter step larger
# than this many watts over its interval is a discontinuity, not energy.
MAX_GPU_WATTS = 5000.0

COUNTER = "counter"  # the joules come from NVML's energy counter
INTEGRATED = "integrated"  # the joules are power draw samples integrated over time


@dataclass(frozen=True, slots=True)
class GpuEnergy:
    """The joules one GPU used over one poll interval, and how they were measured."""

    gpu: str  # the GPU's index, as the other gpu_* series label it
    name: str
    source: str  # COUNTER or INTEGRATED
    joules: float


def trapezoid(p0: float | None, p1: float | None, dt: float) -> float | None:
    """Joules over ``dt`` seconds from the power at both ends (or the one end known)."""
    known = [p for p in (p0, p1) if p is not None]
    if not known or dt <= 0:
        return None
    return max(0.0, sum(known) / len(known)) * dt


class GpuMeter:
    """One GPU's readings, turned into the energy of each interval between two of them."""

    __slots__ = ("label", "_at", "_counter", "_power", "discontinuities")

    def __init__(self, label: str = "GPU") -> None:
        self.label = label
        self._at: float | None = None
        self._counter: float | None = None
        self._power: float | None = None
        self.discontinuities = 0  # counter resets and impossible jumps seen

    def read(
        self, at: float, counter_j: float | None, power_w: float | None
    ) -> tuple[str, float] | None:
        """The (source, joules) since the previous reading; None when there is no measure.

        ``at`` is a monotonic clock in seconds (``perf_counter``); the first reading is only
        the baseline.
        """
        prev_at, prev_counter, prev_power = self._at, self._counter, self._power
        if prev_at is not None and at <= prev_at:
            return None  # not later than the last reading: nothing elapsed, keep the baseline
        self._at, self._counter, self._power = at, counter_j, power_w
        if prev_at is None:
            return None
        dt = at - prev_at
        integrated = trapezoid(prev_power, power_w, dt)
        if counter_j is not None and prev_counter is not None:
            delta = counter_j - prev_counter
            if 0.0 <= delta <= MAX_GPU_WATTS * dt:
                return COUNTER, delta
            self.discontinuities += 1
            logger.warning(
                "%s: energy counter went from %.3f J to %.3f J in %.1f s (driver reload?); "
                "this interval is %s", self.label, prev_counter, counter_j, dt,
                "integrated from power draw" if integrated is not None else "not counted",
            )
            if integrated is not None:
                return INTEGRATED, integrated
            # A reset without a power reading: what the counter shows since it restarted is
            # all of this interval that can be known, if it is possible at all.
            if 0.0 <= counter_j <= MAX_GPU_WATTS * dt:
                return COUNTER, counter_j
            return None
        if integrated is not None:
            return INTEGRATED, integrated
        return None

    @property
    def measurable(self) -> bool:
        """Whether the last reading had a counter or a power draw to measure the next from."""
        return self._counter is not None or self._power is not None


class GpuMeters:
    """A meter per GPU, fed every poll's GPU samples; totals by (gpu, name, source)."""

    def __init__(self) -> None:
        self._meters: dict[tuple[int, str], GpuMeter] = {}
        self.totals: dict[tuple[str, str, str], float] = {}

    def read(self, at: float, gpus: Iterable[GpuSample]) -> list[GpuEnergy]:
        """The energy of each GPU since the previous poll (GPUs without a measure left out)."""
        out: list[GpuEnergy] = []
        for gpu in gpus:
            key = (gpu.index, gpu.name)
            meter = self._meters.get(key)
            if meter is None:
                meter = self._meters[key] = GpuMeter(f"GPU {gpu.index} ({gpu.name})")
            measured = meter.read(at, gpu.energy_joules, gpu.power_watts)
            if measured is None:
                continue
            source, joules = measured
            energy = GpuEnergy(str(gpu.index), gpu.name, source, joules)
            out.append(energy)
            total_key = (energy.gpu, energy.name, source)
            self.totals[total_key] = self.totals.get(total_key, 0.0) + joules
        return out

    @property
    def metering(self) -> bool:
        """True while some GPU's last reading can measure the next interval."""
        return any(meter.measurable for meter in self._meters.values())
