"""FrozenHeap: what lives when the proxy is running is left out of the collector's walks."""

from __future__ import annotations

import gc
import weakref

from mitmproxy.test import taddons

from addons.frozen_heap import FrozenHeap
from tests.support.addons import done, running, start


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def tracked(obj: object) -> bool:
    """Whether the collector walks ``obj`` (frozen objects are not in get_objects)."""
    return any(o is obj for o in gc.get_objects())


def test_running_freezes_what_lives_and_collects_what_does_not_first() -> None:
    kept = [Node()]
    cycle = Node()
    cycle.other = Node()
    cycle.other.other = cycle
    dropped = weakref.ref(cycle)
    del cycle
    with taddons.context() as tctx:
        script = start(tctx, FrozenHeap())
        assert tracked(kept)
        running(tctx, script)
        try:
            assert gc.get_freeze_count() > 0
            assert not tracked(kept)
            assert dropped() is None  # the garbage was collected, not frozen
            later = [Node()]
            assert tracked(later)  # what is made after is collected as ever
        finally:
            done(tctx, script)
        assert gc.get_freeze_count() == 0
        assert tracked(kept)
