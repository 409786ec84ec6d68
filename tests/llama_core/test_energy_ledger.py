"""llama_core/energy_ledger.py: exact attributions of GPU joules on synthetic timelines."""

from __future__ import annotations

import threading

import pytest

from llama_core.energy import COUNTER, INTEGRATED
from llama_core.energy_ledger import EnergyLedger, RequestEnergy
from llama_core.sampler import GpuSample

H100 = "NVIDIA H100 80GB HBM3"


def gpus(*joules: float | None, power: float | None = None) -> list[GpuSample]:
    """GPUs 0, 1, ... with these energy counters (joules since the driver loaded)."""
    return [GpuSample(index=i, name=H100, energy_joules=j, power_watts=power)
            for i, j in enumerate(joules)]


class Tokens:
    """A request's token count as the tap's parser would have it: set by the test."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        return self.n


class Done:
    def __init__(self) -> None:
        self.calls: list[float | None] = []

    def __call__(self, joules: float | None) -> None:
        self.calls.append(joules)


def begin(ledger: EnergyLedger, model: str, at: float) -> tuple[RequestEnergy, Tokens]:
    tokens = Tokens()
    return ledger.start((model,), tokens, at), tokens


def test_one_request_gets_every_interval_it_generated_in_and_the_rest_is_idle() -> None:
    ledger = EnergyLedger()
    ledger.poll(0.0, gpus(1000.0))  # the baseline
    request, tokens = begin(ledger, "llama3.2:latest", 2.0)
    tokens.n = 10
    ledger.poll(5.0, gpus(1500.0))
    tokens.n = 30
    ledger.poll(10.0, gpus(2500.0))
    tokens.n = 35
    done = Done()
    ledger.finish(request, 12.0, done)
    assert done.calls == []  # its last interval is not over: it waits for the next poll
    assert ledger.pending == 1
    ledger.poll(15.0, gpus(2600.0))
    assert done.calls == [1600.0]  # 500 + 1000 + 100
    ledger.poll(20.0, gpus(2700.0))  # nothing in flight
    totals = ledger.totals()
    assert totals.attributed == {("llama3.2:latest",): 1600.0}
    assert totals.idle == {("0", H100): 100.0}
    assert totals.gpu == {("0", H100, COUNTER): 1700.0}
    assert ledger.pending == 0


def test_overlapping_requests_share_in_proportion_to_their_tokens() -> None:
    ledger = EnergyLedger()
    ledger.poll(0.0, gpus(0.0, 0.0))
    a, a_tokens = begin(ledger, "big", 1.0)
    b, b_tokens = begin(ledger, "small", 1.0)
    a_tokens.n, b_tokens.n = 30, 10
    ledger.poll(5.0, gpus(300.0, 100.0))  # 400 J from both GPUs: 3 to 1
    a_done, b_done = Done(), Done()
    a_tokens.n = 40
    ledger.finish(a, 7.0, a_done)
    b_tokens.n = 20  # B keeps going after A ended
    ledger.poll(10.0, gpus(400.0, 200.0))  # 200 J: A 10 tokens, B 10 tokens
    assert a_done.calls == [300.0 + 100.0]
    ledger.poll(15.0, gpus(500.0, 300.0))  # B alone, but in prefill (no tokens): by time
    ledger.finish(b, 16.0, b_done)
    ledger.poll(20.0, gpus(600.0, 350.0))  # B in flight 1 s of 5, the only one: all 150 J
    assert b_done.calls == [100.0 + 100.0 + 200.0 + 150.0]
    totals = ledger.totals()
    assert totals.attributed == {("big",): 400.0, ("small",): 550.0}
    assert totals.idle == {}
    assert sum(totals.gpu.values()) == sum(totals.attributed.values()) + sum(totals.idle.values())


def test_requests_without_tokens_share_by_time_in_flight() -> None:
    ledger = EnergyLedger()
    ledger.poll(0.0, gpus(0.0))
    loading, _ = begin(ledger, "m", 0.0)  # in flight all 4 s
    late, _ = begin(ledger, "m", 3.0)  # in flight 1 s
    ledger.poll(4.0, gpus(500.0))
    done_loading, done_late = Done(), Done()
    ledger.finish(loading, 4.0, done_loading)
    ledger.finish(late, 4.0, done_late)
    ledger.poll(8.0, gpus(600.0))  # neither was in flight after 4.0: idle
    assert done_loading.calls == [400.0] and done_late.calls == [100.0]
    assert ledger.totals().idle == {("0", H100): 100.0}


def test_idle_gaps_between_requests_are_idle_per_gpu() -> None:
    ledger = EnergyLedger()
    ledger.poll(0.0, gpus(0.0, 0.0))
    ledger.poll(5.0, gpus(50.0, 30.0))  # idle
    request, tokens = begin(ledger, "m", 6.0)
    tokens.n = 4
    done = Done()
    ledger.finish(request, 8.0, done)
    ledger.poll(10.0, gpus(250.0, 130.0))
    ledger.poll(15.0, gpus(300.0, 160.0))  # idle again
    assert done.calls == [300.0]
    totals = ledger.totals()
    assert totals.idle == {("0", H100): 100.0, ("1", H100): 60.0}
    assert totals.attributed == {("m",): 300.0}


def test_a_driver_reload_in_the_middle_of_a_request_is_integrated_from_power() -> None:
    ledger = EnergyLedger()
    ledger.poll(0.0, gpus(90_000.0, power=200.0))
    request, tokens = begin(ledger, "m", 0.5)
    tokens.n = 1
    ledger.poll(5.0, gpus(91_000.0, power=200.0))
    tokens.n = 2
    ledger.poll(10.0, gpus(30.0, power=200.0))  # the counter went down: 200 W * 5 s instead
    done = Done()
    ledger.finish(request, 11.0, done)
    ledger.poll(15.0, gpus(530.0, power=200.0))
    assert done.calls == [1000.0 + 1000.0 + 500.0]
    assert ledger.totals().gpu == {("0", H100, COUNTER): 1500.0, ("0", H100, INTEGRATED): 1000.0}


def test_without_a_gpu_records_complete_at_once_with_no_energy() -> None:
    ledger = EnergyLedger()
    request, tokens = begin(ledger, "m", 0.0)
    ledger.poll(1.0, [])
    ledger.poll(2.0, [])
    tokens.n = 5
    done = Done()
    ledger.finish(request, 3.0, done)
    assert done.calls == [None]
    assert ledger.totals().gpu == {} and ledger.pending == 0


def test_a_gpu_without_counter_nor_power_is_no_gpu_for_energy() -> None:
    ledger = EnergyLedger()
    ledger.poll(0.0, gpus(None))
    ledger.poll(1.0, gpus(None))
    request, _ = begin(ledger, "m", 1.5)
    done = Done()
    ledger.finish(request, 2.0, done)
    assert done.calls == [None]


def test_a_request_that_ended_before_metering_began_has_no_energy() -> None:
    ledger = EnergyLedger()
    request, _ = begin(ledger, "m", 0.0)
    done = Done()
    ledger.finish(request, 1.0, done)  # no poll yet
    ledger.poll(2.0, gpus(0.0))
    assert done.calls == [None]


def test_close_completes_the_waiting_with_what_is_known() -> None:
    ledger = EnergyLedger()
    ledger.poll(0.0, gpus(0.0))
    request, tokens = begin(ledger, "m", 0.0)
    tokens.n = 3
    ledger.poll(5.0, gpus(70.0))
    done = Done()
    ledger.finish(request, 6.0, done)
    ledger.close()
    assert done.calls == [70.0]  # its share of the last second is not known
    later, _ = begin(ledger, "m", 7.0)
    late_done = Done()
    ledger.finish(later, 8.0, late_done)
    assert late_done.calls == [None]  # after close nothing is metered any more
    assert ledger.pending == 0


def test_a_failing_token_reader_does_not_break_the_ledger() -> None:
    ledger = EnergyLedger()
    ledger.poll(0.0, gpus(0.0))

    def broken() -> int:
        raise RuntimeError("parser gone")

    request = ledger.start(("m",), broken, 0.0)
    ledger.poll(5.0, gpus(10.0))  # in flight without tokens: by time
    done = Done()
    ledger.finish(request, 5.0, done)
    ledger.poll(6.0, gpus(10.0))
    assert done.calls == [10.0]


def test_polls_and_requests_from_two_threads_lose_no_joule() -> None:
    ledger = EnergyLedger()
    ledger.poll(0.0, gpus(0.0))
    stop = threading.Event()
    finished: list[float | None] = []

    def requests() -> None:
        at = 0.0
        while not stop.is_set():
            at += 0.001
            request = ledger.start(("m",), lambda: 1, at)
            ledger.finish(request, at, finished.append)

    worker = threading.Thread(target=requests)
    worker.start()
    try:
        for i in range(1, 200):
            ledger.poll(float(i), gpus(float(i * 10)))
    finally:
        stop.set()
        worker.join()
    ledger.poll(1000.0, gpus(1990.0 + 10.0))
    totals = ledger.totals()
    assert ledger.pending == 0
    assert sum(totals.gpu.values()) == pytest.approx(
        sum(totals.attributed.values()) + sum(totals.idle.values()))
    assert sum(j for j in finished if j is not None) == pytest.approx(
        sum(totals.attributed.values()))
