"""The proxy's addon with a timer around each stage, for ``scripts/profile_addon.py`` (mitmdump -s).

It composes the same ``MetricsProxy`` as ``addons/llama_metrics.py`` and wraps, on the
instance, the hooks and the calls inside them that make up the addon's work per request:

- ``request``: every request hook of the nested addons (recorder, tap, access control);
- ``responseheaders``: the tap's, which chooses the parser and installs the stream tap;
- ``chunk``: every call of the stream tap (``StreamTap.__call__``), once per chunk;
- ``finish``: the tap's ``response``/``error`` hooks less the two stages inside them:
  ``account`` (the parser's end and ``accounting.account``), ``observe`` (``ProxyMetrics``)
  and ``record`` (the recent-requests ring and the history queue);
- threads: the CPU time of every thread of the process (``pthread_getcpuclockid``), by name:
  the history writer, the pollers, the metrics server, and the event loop (``MainThread``).

Times are ``perf_counter_ns`` on the event loop (its hooks never wait, so that is CPU time),
less the cost of the timer itself, measured at start on an empty call. ``kill -USR2`` writes
the running totals as JSON to ``$PROFILE_ADDON_OUT`` (the driver takes differences).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from addons.service import MetricsProxy, repeated_options
from addons.stream_tap import StreamTap

if _repeated := repeated_options(sys.argv[1:]):
    print(f"llama-metrics: option given more than once: {', '.join(_repeated)}", file=sys.stderr)
    raise SystemExit(2)

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
    """Wraps the proxy's stages once it is built, and dumps the totals on SIGUSR2."""

    def __init__(self, proxy: MetricsProxy) -> None:
        self.proxy = proxy
        self.timer_ns = 0.0
        tap = proxy.tap
        for addon in proxy.addons:
            for hook in ("requestheaders", "request"):
                if hasattr(addon, hook):
                    setattr(addon, hook, timed("request", getattr(addon, hook)))
        tap.responseheaders = timed("responseheaders", tap.responseheaders)  # type: ignore
        tap.response = timed("finish", tap.response)  # type: ignore[method-assign]
        tap.error = timed("finish", tap.error)  # type: ignore[method-assign]
        tap.account = timed("account", tap.account)  # type: ignore[method-assign]
        tap.metrics.observe = timed("observe", tap.metrics.observe)  # type: ignore
        tap.on_record = timed("record", tap.on_record)  # type: ignore[arg-type]
        StreamTap.__call__ = timed("chunk", StreamTap.__call__)  # type: ignore

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


_proxy = MetricsProxy()
addons = [Profiler(_proxy), _proxy]
