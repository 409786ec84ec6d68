"""Tests for addons.admission: limits, priority order, cancellation safety, metrics."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from addons.admission import Admission, AdmissionCollector, QueueFull, parse_priority
from llama_core.record import PRIORITIES

logger = logging.getLogger(__name__)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run one test body; a slot that never comes fails in seconds instead of hanging."""

    async def guarded() -> None:
        async with asyncio.timeout(5):
            await test()

    asyncio.run(guarded())


async def settle(turns: int = 5) -> None:
    """Let the loop run every callback that is ready (wake-ups chain a few turns deep)."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def acquire_in_order(adm: Admission, priorities: list[str]) -> list[asyncio.Task[float]]:
    """Start one waiter per priority, each queued before the next arrives."""
    tasks = []
    for priority in priorities:
        tasks.append(asyncio.create_task(adm.acquire(priority)))
        await settle()
    return tasks


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("high", "high"),
        ("HIGH", "high"),
        (" Low ", "low"),
        ("normal", "normal"),
        ("urgent", "normal"),
        ("", "normal"),
        (None, "normal"),
    ],
)
def test_parse_priority(value: str | None, expected: str) -> None:
    assert parse_priority(value) == expected


def test_unlimited_never_waits_or_queues() -> None:
    async def body() -> None:
        adm = Admission(0, max_queue=0)
        waits = [await adm.acquire(PRIORITIES[i % 3]) for i in range(1000)]
        assert waits == [0.0] * 1000
        assert adm.active == 1000 and adm.total_depth == 0
        for _ in range(1000):
            adm.release()
        assert adm.active == 0

    run(body)


def test_exactly_max_concurrency_holders() -> None:
    async def body() -> None:
        adm = Admission(3, max_queue=10)
        tasks = [asyncio.create_task(adm.acquire("normal")) for _ in range(5)]
        await settle()
        assert adm.active == 3 and adm.total_depth == 2
        assert sum(t.done() for t in tasks) == 3
        adm.release()
        await settle()
        assert adm.active == 3 and adm.total_depth == 1
        adm.release()
        adm.release()
        await settle()
        assert adm.active == 2 and adm.total_depth == 0
        await asyncio.gather(*tasks)

    run(body)


def test_high_overtakes_normal_and_low_fifo_within_priority() -> None:
    async def body() -> None:
        adm = Admission(1, max_queue=10)
        await adm.acquire("low")
        order = ["low", "normal", "high", "normal", "low", "high"]
        tasks = await acquire_in_order(adm, order)
        assert [adm.depth(p) for p in PRIORITIES] == [2, 2, 2]
        granted = []
        for _ in order:
            adm.release()
            await settle()
            done = [i for i, t in enumerate(tasks) if t.done() and i not in granted]
            assert len(done) == 1
            granted.extend(done)
        assert granted == [2, 5, 1, 3, 0, 4]
        assert adm.active == 1 and adm.total_depth == 0

    run(body)


def test_no_barging_newcomer_waits_behind_queue() -> None:
    async def body() -> None:
        adm = Admission(1, max_queue=10)
        await adm.acquire("normal")
        (waiter,) = await acquire_in_order(adm, ["low"])
        adm.release()  # handed to the low waiter, even before it runs again
        newcomer = asyncio.create_task(adm.acquire("high"))
        await settle()
        assert waiter.done() and not newcomer.done()
        assert adm.depth("high") == 1
        adm.release()
        await newcomer

    run(body)


def test_wait_time_measured_with_injected_clock() -> None:
    async def body() -> None:
        clock = FakeClock()
        adm = Admission(1, max_queue=10, clock=clock)
        assert await adm.acquire("normal") == 0.0
        (waiter,) = await acquire_in_order(adm, ["high"])
        clock.now += 2.5
        adm.release()
        assert await waiter == pytest.approx(2.5)

    run(body)


def test_queue_full_raises_at_once_with_retry_after() -> None:
    async def body() -> None:
        clock = FakeClock()
        adm = Admission(2, max_queue=2, clock=clock)
        await adm.acquire("normal")
        await adm.acquire("normal")
        no_queue = Admission(1, max_queue=0, clock=clock)
        await no_queue.acquire("normal")
        with pytest.raises(QueueFull) as first:
            await no_queue.acquire("high")
        assert first.value.retry_after == 1  # nothing held long yet: the floor
        clock.now += 10.0
        adm.release()  # a 10 s hold teaches the estimate
        await adm.acquire("normal")
        await acquire_in_order(adm, ["low", "high"])
        with pytest.raises(QueueFull) as full:
            await adm.acquire("high")
        # 10 s per slot x 3 in line / 2 slots
        assert full.value.retry_after == 15
        assert full.value.depth == 2 and adm.total_depth == 2

    run(body)


@pytest.mark.parametrize(("hold_s", "expected"), [(0.001, 1), (1000.0, 60)])
def test_retry_after_is_clamped(hold_s: float, expected: int) -> None:
    async def body() -> None:
        clock = FakeClock()
        adm = Admission(1, max_queue=0, clock=clock)
        await adm.acquire("normal")
        clock.now += hold_s
        adm.release()
        await adm.acquire("normal")
        with pytest.raises(QueueFull) as full:
            await adm.acquire("normal")
        assert full.value.retry_after == expected

    run(body)


def test_release_without_acquire_raises() -> None:
    async def body() -> None:
        adm = Admission(2)
        await adm.acquire("normal")
        adm.release()
        with pytest.raises(RuntimeError):
            adm.release()

    run(body)


@pytest.mark.parametrize(("concurrency", "queue"), [(-1, 0), (1, -1)])
def test_bad_limits_refused(concurrency: int, queue: int) -> None:
    with pytest.raises(ValueError):
        Admission(concurrency, queue)
    with pytest.raises(ValueError):
        Admission(1, 1).configure(concurrency, queue)


def test_unknown_priority_refused() -> None:
    with pytest.raises(ValueError):
        asyncio.run(Admission(1).acquire("urgent"))


def test_cancel_while_queued_drops_depth_at_once() -> None:
    async def body() -> None:
        adm = Admission(1, max_queue=10)
        await adm.acquire("normal")
        first, second = await acquire_in_order(adm, ["low", "low"])
        first.cancel()
        assert adm.depth("low") == 1  # before the cancelled task has run again
        await settle()
        assert first.cancelled()
        adm.release()
        await second
        assert adm.active == 1 and adm.total_depth == 0

    run(body)


def test_cancel_racing_hand_off_passes_slot_on() -> None:
    async def body() -> None:
        adm = Admission(1, max_queue=10)
        await adm.acquire("normal")
        first, second = await acquire_in_order(adm, ["high", "normal"])
        adm.release()  # slot handed to `first` ...
        first.cancel()  # ... which is cancelled in the same loop turn
        await settle()
        assert first.cancelled()
        assert second.done() and not second.cancelled()
        assert adm.active == 1 and adm.total_depth == 0
        adm.release()
        assert adm.active == 0

    run(body)


def test_configure_raising_limit_admits_waiters() -> None:
    async def body() -> None:
        adm = Admission(1, max_queue=10)
        await adm.acquire("normal")
        tasks = await acquire_in_order(adm, ["low", "normal", "high", "normal"])
        adm.configure(3, 10)
        await settle()
        assert [t.done() for t in tasks] == [False, True, True, False]
        adm.configure(0, 10)  # unlimited admits everyone
        await settle()
        assert all(t.done() for t in tasks) and adm.active == 5 and adm.total_depth == 0
        adm.configure(1, 0)  # lowering takes nothing away
        assert adm.active == 5
        with pytest.raises(QueueFull):
            await adm.acquire("high")

    run(body)


def test_many_tasks_with_cancellation_keep_invariants() -> None:
    limit = 7
    rng = random.Random(1234)

    async def body() -> None:
        adm = Admission(limit, max_queue=400)
        holders = 0
        max_holders = 0
        rejected = 0

        async def client(priority: str, hold_turns: int) -> None:
            nonlocal holders, max_holders, rejected
            try:
                await adm.acquire(priority)
            except QueueFull:
                rejected += 1
                return
            holders += 1
            max_holders = max(max_holders, holders)
            try:
                for _ in range(hold_turns):
                    await asyncio.sleep(0)
            finally:
                holders -= 1
                adm.release()

        tasks = [
            asyncio.create_task(client(rng.choice(PRIORITIES), rng.randrange(6)))
            for _ in range(500)
        ]
        while not all(t.done() for t in tasks):
            for task in rng.sample(tasks, 3):
                if not task.done() and rng.random() < 0.3:
                    task.cancel()
            assert adm.active <= limit
            await asyncio.sleep(0)
        await asyncio.gather(*tasks, return_exceptions=True)
        assert adm.active == 0 and holders == 0
        assert [adm.depth(p) for p in PRIORITIES] == [0, 0, 0]
        assert max_holders == limit
        assert rejected > 0 and sum(t.cancelled() for t in tasks) > 0

    run(body)


# One step of a random scenario: an operation name and an argument picking its target.
_steps = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "release", "cancel_waiter", "cancel_holder", "configure"]),
        st.integers(0, 11),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(steps=_steps, limit=st.integers(1, 3), max_queue=st.integers(0, 4))
def test_random_sequences_match_reference_model(
    steps: list[tuple[str, int]], limit: int, max_queue: int
) -> None:
    """Every step, who holds and who waits equals a plain reference model of the queue."""

    async def body() -> None:
        adm = Admission(limit, max_queue)
        model_limit = limit
        model_holders: set[int] = set()
        model_waiting: list[tuple[int, int]] = []  # (priority rank, task id): arrival order
        tasks: dict[int, asyncio.Task[None]] = {}
        leave: dict[int, asyncio.Event] = {}
        holding: set[int] = set()

        async def client(ident: int, priority: str) -> None:
            try:
                await adm.acquire(priority)
            except QueueFull:
                return
            holding.add(ident)
            try:
                await leave[ident].wait()
            finally:
                holding.discard(ident)
                adm.release()

        def model_dispatch() -> None:
            while model_waiting and (model_limit == 0 or len(model_holders) < model_limit):
                best = min(model_waiting, key=lambda w: w[0])  # min() keeps the earliest
                model_waiting.remove(best)
                model_holders.add(best[1])

        for ident, (op, arg) in enumerate(steps):
            if op == "acquire":
                priority = PRIORITIES[arg % 3]
                leave[ident] = asyncio.Event()
                tasks[ident] = asyncio.create_task(client(ident, priority))
                if model_limit == 0 or (len(model_holders) < model_limit and not model_waiting):
                    model_holders.add(ident)
                elif len(model_waiting) < adm.max_queue:
                    model_waiting.append((arg % 3, ident))
            elif op in ("release", "cancel_holder") and model_holders:
                target = sorted(model_holders)[arg % len(model_holders)]
                model_holders.remove(target)
                if op == "release":
                    leave[target].set()
                else:
                    tasks[target].cancel()
                model_dispatch()
            elif op == "cancel_waiter" and model_waiting:
                _, target = model_waiting.pop(arg % len(model_waiting))
                tasks[target].cancel()
                assert adm.total_depth == len(model_waiting)
            elif op == "configure":
                model_limit = arg % 4
                adm.configure(model_limit, max_queue)
                model_dispatch()
            await settle()
            assert holding == model_holders
            assert adm.active == len(model_holders)
            for rank, priority in enumerate(PRIORITIES):
                assert adm.depth(priority) == sum(1 for w in model_waiting if w[0] == rank)

        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        assert adm.active == 0 and adm.total_depth == 0

    run(body)


def test_collector_exposes_depth_per_priority() -> None:
    async def body() -> None:
        adm = Admission(1, max_queue=10)
        registry = CollectorRegistry()
        registry.register(AdmissionCollector(adm))

        def depth(priority: str) -> float | None:
            return registry.get_sample_value("ollama_proxy_queue_depth", {"priority": priority})

        assert [depth(p) for p in PRIORITIES] == [0.0, 0.0, 0.0]
        await adm.acquire("normal")
        tasks = await acquire_in_order(adm, ["low", "high", "low"])
        assert [depth(p) for p in PRIORITIES] == [1.0, 0.0, 2.0]
        tasks[0].cancel()
        assert depth("low") == 1.0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert [depth(p) for p in PRIORITIES] == [0.0, 0.0, 0.0]

    run(body)


def test_try_acquire_takes_a_free_slot_but_never_overtakes_waiters() -> None:
    async def scenario() -> None:
        admission = Admission(1, 5)
        assert admission.try_acquire()
        assert not admission.try_acquire()  # the one slot is taken
        waiter = asyncio.ensure_future(admission.acquire("low"))
        await asyncio.sleep(0)
        admission.release()  # handed straight to the waiter
        await waiter
        assert not admission.try_acquire()
        admission.release()
        assert admission.try_acquire() and admission.active == 1
        admission.release()

    asyncio.run(scenario())
