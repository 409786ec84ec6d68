"""llama_core/budgets.py: a client's tokens of the UTC day, from its requests and the history."""

from __future__ import annotations

import pytest

from llama_core.budgets import DailyUsage, day_start, seconds_to_midnight
from llama_core.record import RequestRecord

DAY = 86400 * 20000.0  # a UTC midnight


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(client: str | None, prompt: int | None, generated: int | None,
           started_at: float) -> RequestRecord:
    return RequestRecord(started_at=started_at, endpoint="/api/chat", model="m", status=200,
                         prompt_tokens=prompt, generated_tokens=generated, client=client)


@pytest.mark.parametrize("now, start, wait", [
    (DAY, DAY, 86400), (DAY + 0.5, DAY, 86400), (DAY + 86399.2, DAY, 1),
    (DAY + 86399.99, DAY, 1), (DAY - 1, DAY - 86400, 1),
])
def test_day_start_and_retry_after(now: float, start: float, wait: int) -> None:
    assert day_start(now) == start
    assert seconds_to_midnight(now) == wait


def test_counts_a_clients_prompt_and_generated_tokens_of_today() -> None:
    clock = Clock(DAY + 100)
    usage = DailyUsage(clock)
    usage.add(record("alice", 10, 5, DAY + 50))
    usage.add(record("alice", None, 7, DAY + 60))
    usage.add(record("bob", 3, None, DAY + 60))
    usage.add(record(None, 100, 100, DAY + 60))  # no client: nobody's
    usage.add(record("alice", 1000, 1000, DAY - 1))  # started yesterday
    assert usage.used("alice") == 22 and usage.used("bob") == 3
    assert usage.all_used() == {"alice": 22, "bob": 3}
    clock.now = DAY + 86400  # midnight: a new day
    assert usage.used("alice") == 0


def test_history_reads_add_other_proxies_use() -> None:
    clock = Clock(DAY + 100)
    usage = DailyUsage(clock)
    usage.add(record("alice", 10, 0, DAY + 1))
    day = usage.begin_read()
    usage.add(record("alice", 5, 0, DAY + 2))  # finished during the read: not in it
    # The file had ours (10) and another proxy's (100); the one during the read counts on.
    usage.finish_read(day, {"alice": 110})
    assert usage.used("alice") == 115
    day = usage.begin_read()
    usage.finish_read(day, {"alice": 115})  # now the file has it all
    assert usage.used("alice") == 115


def test_a_failed_read_keeps_what_was_counted() -> None:
    clock = Clock(DAY + 100)
    usage = DailyUsage(clock)
    day = usage.begin_read()
    usage.finish_read(day, {"alice": 50})
    usage.add(record("alice", 5, 0, DAY + 2))
    usage.begin_read()
    usage.abandon_read()
    assert usage.used("alice") == 55


def test_a_read_across_midnight_is_dropped_and_own_use_wins_a_shrunk_file() -> None:
    clock = Clock(DAY + 86399)
    usage = DailyUsage(clock)
    day = usage.begin_read()
    clock.now = DAY + 86401
    usage.finish_read(day, {"alice": 999})
    assert usage.used("alice") == 0
    usage.add(record("alice", 40, 0, DAY + 86400.5))
    day = usage.begin_read()
    usage.finish_read(day, {})  # the file was replaced or pruned
    assert usage.used("alice") == 40
