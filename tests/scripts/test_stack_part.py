"""scripts/stack_part.py: what of a part's output reaches the terminal."""

from __future__ import annotations

import pytest

from scripts.stack_part import LineSorter

# Lines as our processes print them, and whether the terminal shows each by default.
PROXY = [
    ("[07:41:15.029] Loading script /x/addons/log_levels.py", False),
    ("INFO [07:41:15.270] history in data/history.db", False),
    ("INFO [07:41:18.015][127.0.0.1:36038] client connect", False),
    ("INFO [07:41:18.020][127.0.0.1:36038] Streaming response from 127.0.0.1.", False),
    ("WARNING [07:43:44.011] upstream http://127.0.0.1:1 is down: refused", True),
    ("ERROR [07:43:45.000] could not account for POST /api/chat", True),
    ("Traceback (most recent call last):", True),
    ('  File "addons/tap.py", line 399, in done', True),
    ("INFO [07:43:46.000][127.0.0.1:36040] client disconnect", False),
]
PYTHON_LOGGING = [
    ("2026-12-02 07:33:51,387 INFO __main__: proxy metrics http://127.0.0.1:8001", False),
    ("[2026-12-02 07:33:51 +0000] [19815] [INFO] Starting gunicorn 27.0.1", False),
    ("2026-12-02 07:43:47,764 WARNING healthd.monitor: check ollama: critical (...)", True),
    ("    a second line of that warning", True),
    ("[2026-12-02 07:33:51 +0000] [19815] [ERROR] Worker timeout", True),
    ("2026-12-02 07:44:12,767 INFO healthd.monitor: check ollama: ok (ERROR fixed)", False),
]


@pytest.mark.parametrize("lines", [PROXY, PYTHON_LOGGING], ids=["mitmdump", "python"])
def test_warnings_errors_and_tracebacks_are_shown_the_rest_is_not(
    lines: list[tuple[str, bool]],
) -> None:
    sorter = LineSorter()
    assert [sorter.shows(line) for line, _ in lines] == [shown for _, shown in lines]


def test_what_a_part_prints_before_its_logging_starts_is_shown() -> None:
    sorter = LineSorter()
    assert sorter.shows("ollama-sim: cannot listen on 127.0.0.1:11434: address in use")


def test_verbose_shows_everything() -> None:
    sorter = LineSorter(verbose=True)
    assert all(sorter.shows(line) for line, _ in PROXY + PYTHON_LOGGING)
