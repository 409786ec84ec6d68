"""The proxy's addons with a timer around each stage, for scripts/profile_addon.py (mitmdump -s).

It composes the same addons as ``addons/llama_metrics.py`` (``compose()``, in one
``HookChain``) and wraps, on the instances, the hooks and the calls inside them that make up
the addons' work per request:

- ``request``: every ``requestheaders`` and ``request`` hook of every addon (recorder, tap,
  access control, client budgets, upstream guard);
- ``responseheaders``: every ``responseheaders`` hook (the tap's chooses the parser and
  installs the stream tap; the upstream guard's disarms its timer);
- ``chunk``: every call of what the tap set as ``flow.response.stream``, once per chunk;
- ``finish``: every ``response``/``error`` hook (recorder, tap, upstream guard) less the
  three stages inside the tap's: ``account`` (the parser's end and ``accounting.account``),
  ``observe`` (``ProxyMetrics.observe``/``observe_lifecycle``) and ``record`` (what the
  finished request is published to: the ``/requests`` ring, the history queue, the budgets);
- threads: the CPU time of every thread of the process (``pthread_getcpuclockid``), by name:
  the history writer, the pollers, the metrics server, and the event loop (``MainThread``).

Times are ``perf_counter_ns`` on the event loop (its hooks never wait, so that is CPU time),
less the cost of the timer itself, measured at start on an empty call. ``kill -USR2`` writes
the running totals as JSON to ``$PROFILE_ADDON_OUT`` (the driver takes differences).

With ``PYTHONPATH`` set to another checkout (``profile_addon.py --before DIR``) the addons come
from there; a tree from before ``addons/hook_chain.py`` hands mitmproxy its addons as a list,
as its own ``addons/llama_metrics.py`` did.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from addons.llama_metrics import compose
from addons.tap import TrafficTap

STAGES = ("request", "responseheaders", "chunk", "finish", "account", "observe", "record")
ns: dict[str, int] = dict.fromkeys(STAGES, 0)
calls: dict[str, int] = dict.fromkeys(STAGES, 0)
# finish() contains account, observe and record: its own share is finish minus those.
_inner = {"account", "observe", "record"}


def timed(stage: str, func: Callable[..., Any]) -> Callable[..., Any]:
    clock = time.perf_counter_ns

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return func(*args, **kwargs)
        finally:
            ns[stage] += clock() - start
            calls[stage] += 1

    return wrapper


def time_chunks(responseheaders: Callable[[Any], None]) -> Callable[[Any], None]:
    """The tap's ``responseheaders``, then the stream callable it set timed as ``chunk``:
    whatever mitmproxy calls per chunk (the ``StreamTap``, or the one-call path of a plain
    native stream), each call counted once."""
    @functools.wraps(responseheaders)
    def wrapper(flow: Any) -> None:
        responseheaders(flow)
        stream = getattr(flow.response, "stream", None)
        if callable(stream):
            flow.response.stream = timed("chunk", stream)

    return wrapper


def timer_cost_ns() -> float:
    """What one timed call adds over the plain call: subtracted from every stage."""
    def empty() -> None:
        return None

    n = 200_000
    wrapped = timed("_calibrate", empty)
    ns["_calibrate"] = calls["_calibrate"] = 0
    start = time.perf_counter_ns()
    for _ in range(n):
        empty()
    plain = time.perf_counter_ns() - start
    start = time.perf_counter_ns()
    for _ in range(n):
        wrapped()
    cost = (time.perf_counter_ns() - start - plain) / n
    del ns["_calibrate"], calls["_calibrate"]
    return cost


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread so far, by name (same names summed)."""
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            seconds = time.clock_gettime(clock)
        except (OSError, ProcessLookupError):
            continue
        name = thread.name.split(" ", 1)[0]  # "history-writer /tmp/x.db" -> "history-writer"
        out[name] = out.get(name, 0.0) + seconds
    return out


class Profiler:
    """Wraps the addons' stages once they are built, and dumps the totals on SIGUSR2."""

    def __init__(self, addons: list[Any]) -> None:
        self.timer_ns = 0.0
        tap = next(a for a in addons if isinstance(a, TrafficTap))
        for addon in addons:
            for hook, stage in (("requestheaders", "request"), ("request", "request"),
                                ("responseheaders", "responseheaders"),
                                ("response", "finish"), ("error", "finish")):
                if hasattr(addon, hook):
                    setattr(addon, hook, timed(stage, getattr(addon, hook)))
        tap.account = timed("account", tap.account)  # type: ignore[method-assign]
        metrics = tap.metrics
        metrics.observe = timed("observe", metrics.observe)  # type: ignore[method-assign]
        metrics.observe_lifecycle = timed(  # type: ignore[method-assign]
            "observe", metrics.observe_lifecycle)
        if tap.on_record is not None:
            tap.on_record = timed("record", tap.on_record)
        tap.responseheaders = time_chunks(tap.responseheaders)  # type: ignore[method-assign,assignment]

    def running(self) -> None:
        self.timer_ns = timer_cost_ns()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, self.dump)

    def dump(self) -> None:
        out = os.environ["PROFILE_ADDON_OUT"]
        snapshot = {"ns": ns, "calls": calls, "timer_ns": self.timer_ns,
                    "threads": thread_cpu(), "process": time.process_time()}
        with open(out + ".tmp", "w") as f:
            json.dump(snapshot, f)
        os.replace(out + ".tmp", out)


def chained(parts: list[Any]) -> list[Any]:
    """What ``addons/llama_metrics.py`` of this tree hands mitmproxy."""
    try:
        from addons.hook_chain import HookChain
    except ImportError:  # an older tree: one addon each
        return parts
    return [HookChain(parts)]


_addons = compose()
addons = [Profiler(_addons), *chained(_addons)]  # the profiler wraps the hooks first
