"""llama_core/energy.py: a GPU's joules per interval, from its counter or its power draw."""

from __future__ import annotations

import logging

import pytest

from llama_core.energy import COUNTER, INTEGRATED, MAX_GPU_WATTS, GpuEnergy, GpuMeter, GpuMeters
from llama_core.sampler import GpuSample


def test_the_counter_gives_the_joules_between_two_readings() -> None:
    meter = GpuMeter()
    assert meter.read(0.0, 1000.0, 100.0) is None  # the baseline
    assert meter.read(5.0, 1600.0, 200.0) == (COUNTER, 600.0)
    assert meter.read(10.0, 1600.0, 0.0) == (COUNTER, 0.0)


def test_without_a_counter_the_power_draw_is_integrated_by_trapezoid() -> None:
    meter = GpuMeter()
    assert meter.read(0.0, None, 100.0) is None
    assert meter.read(5.0, None, 300.0) == (INTEGRATED, 1000.0)  # (100 + 300) / 2 * 5
    assert meter.read(7.0, None, None) == (INTEGRATED, 600.0)  # only the start is known
    assert meter.read(9.0, None, None) is None  # nothing to measure with
    assert not meter.measurable


@pytest.mark.parametrize(
    ("second", "power", "expected"),
    [
        # The driver reloaded: the counter starts again near zero; the power draw measures it.
        (50.0, 100.0, (INTEGRATED, 500.0)),
        # ... and without a power reading, what it counted since the reload is all that is known.
        (50.0, None, (COUNTER, 50.0)),
        # A jump no GPU can draw in 5 s is not energy either.
        (1000.0 + MAX_GPU_WATTS * 5 + 1, 100.0, (INTEGRATED, 500.0)),
        (1000.0 + MAX_GPU_WATTS * 5 + 1, None, None),
    ],
)
def test_a_counter_that_resets_or_jumps_is_never_negative_nor_huge(
    second: float, power: float | None, expected: tuple[str, float] | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    meter = GpuMeter("GPU 0 (H100)")
    meter.read(0.0, 1000.0, power)
    with caplog.at_level(logging.WARNING, logger="llama_core.energy"):
        assert meter.read(5.0, second, power) == expected
    assert meter.discontinuities == 1
    assert "GPU 0 (H100): energy counter went from 1000.000 J" in caplog.text
    # The next interval counts from the new value again.
    assert meter.read(10.0, second + 40.0, power) == (COUNTER, 40.0)


def test_a_reading_not_later_than_the_last_keeps_the_baseline() -> None:
    meter = GpuMeter()
    meter.read(5.0, 100.0, None)
    assert meter.read(5.0, 200.0, None) is None
    assert meter.read(6.0, 300.0, None) == (COUNTER, 200.0)


def gpu(index: int, energy: float | None, power: float | None) -> GpuSample:
    return GpuSample(index=index, name=f"GPU{index}", power_watts=power, energy_joules=energy)


def test_meters_keep_one_meter_per_gpu_and_totals_by_source() -> None:
    meters = GpuMeters()
    assert not meters.metering
    assert meters.read(0.0, [gpu(0, 10.0, 50.0), gpu(1, None, 20.0), gpu(2, None, None)]) == []
    assert meters.metering
    assert meters.read(2.0, [gpu(0, 110.0, 50.0), gpu(1, None, 40.0), gpu(2, None, None)]) == [
        GpuEnergy("0", "GPU0", COUNTER, 100.0),
        GpuEnergy("1", "GPU1", INTEGRATED, 60.0),
    ]
    meters.read(4.0, [gpu(0, 10.0, 50.0), gpu(1, None, 40.0)])  # GPU 0's driver reloaded
    assert meters.totals == {
        ("0", "GPU0", COUNTER): 100.0,
        ("0", "GPU0", INTEGRATED): 100.0,
        ("1", "GPU1", INTEGRATED): 140.0,
    }


def test_no_gpu_meters_nothing() -> None:
    meters = GpuMeters()
    assert meters.read(0.0, []) == [] and meters.read(5.0, []) == []
    assert not meters.metering and meters.totals == {}
