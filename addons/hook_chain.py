"""One addon that calls the hooks of several, in order: mitmproxy asks it alone for each event.

mitmproxy's addon manager walks every addon of the chain for every event (``requestheaders``,
``request``, ``responseheaders``, ``response``, an ``update`` after each of them, the
connection events), asking each for the hook by name and for nested ``addons``, whether it
has the hook or not: with our sixteen addons about 20 microseconds of the event loop per
request (``docs/benchmarks.md``, 2026-12-02), a tenth of what measuring a short request
takes. ``HookChain`` is asked once per event and calls only the addons that have the hook,
in the order given, as mitmproxy would:

- a hook that returns an awaitable is awaited before the next addon's runs (the tap's
  ``request`` holds a queued request; the upstream guard's must see it once admitted);
- an exception stops the event for the addons after it, as it does for the addons of one
  script in mitmproxy (``safecall`` around the script), and mitmproxy logs it.

The hooks are looked up when the chain is made, on the addons as they are then (a profiler
that wraps them must do so first). Pure dispatch: it knows nothing of what the addons do.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mitmproxy import hooks

logger = logging.getLogger(__name__)


class HookChain:
    """Calls each hook of ``addons``, in their order, as one addon."""

    def __init__(self, addons: Sequence[object]) -> None:
        self.chained = list(addons)
        for name in sorted(hooks.all_hooks):
            found = [func for addon in self.chained
                     if callable(func := getattr(addon, name, None))]
            if found:
                # An attribute only for hooks someone has: mitmproxy skips the rest cheaply.
                setattr(self, name, _dispatcher(name, found))

    def __repr__(self) -> str:
        return f"HookChain({', '.join(type(a).__name__ for a in self.chained)})"


def _dispatcher(name: str, funcs: list[Callable[..., Any]]) -> Callable[..., Any]:
    if len(funcs) == 1:
        return funcs[0]

    def dispatch(*args: Any) -> Awaitable[None] | None:
        for i, func in enumerate(funcs):
            result = func(*args)
            if result is not None and inspect.isawaitable(result):
                return _finish(result, funcs[i + 1:], args)
        return None

    dispatch.__name__ = dispatch.__qualname__ = name
    return dispatch


async def _finish(pending: Awaitable[Any], rest: list[Callable[..., Any]],
                  args: tuple[Any, ...]) -> None:
    """The rest of an event after a hook that must be awaited first."""
    await pending
    for func in rest:
        result = func(*args)
        if result is not None and inspect.isawaitable(result):
            await result
