"""The objects the proxy starts with are moved out of the garbage collector's way.

Started, the proxy holds about 100,000 objects that live as long as it does (mitmproxy, the
metric series, the configuration, the modules). Python's oldest generation is collected now
and then under load, and each such collection walks all of them: about 20 microseconds of the
event loop per request on the benchmark machine, as much as one request's metrics cost
(``docs/benchmarks.md``, 2026-12-02). Once every addon is running (this one is composed last,
so its ``running`` comes after theirs), ``gc.freeze()`` moves what is alive then into a
generation the collector never walks, after one full collection so that nothing collectable
is kept. ``done`` (the script unloaded or reloaded) hands them back, so the objects of an
unloaded script can still be collected.

The youngest generation is collected after fewer allocations than a proxy makes for one
request: at Python's default threshold (700 allocations more than deallocations) mitmproxy and
the addons together trigger a young collection every six or so requests, and each one walks
what every request in flight holds at that moment (21-25 microseconds per request measured
with ``gc.callbacks``, in plain mitmdump as in ours). From ``running`` on, the threshold is
``YOUNG_THRESHOLD``: collections a fourteenth as often, each walking about as much, since
what they find alive is the requests in flight either way. The price is garbage in reference
cycles kept a little longer (the proxy's resident memory about 3 MB higher under load,
``docs/benchmarks.md``); ``done`` puts the old thresholds back.

Nothing changes in what is counted: the collector runs as before on every object made later.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)

# Allocations (less deallocations) between two collections of the youngest generation.
YOUNG_THRESHOLD = 10_000


class FrozenHeap:
    """``gc.freeze()`` and a higher young threshold once running; both undone when done."""

    def __init__(self) -> None:
        self.thresholds: tuple[int, int, int] | None = None  # as they were before running

    def running(self) -> None:
        gc.collect()
        gc.freeze()
        logger.debug("%d objects frozen out of the collector's walks", gc.get_freeze_count())
        if self.thresholds is None:
            self.thresholds = gc.get_threshold()
            young, *older = self.thresholds
            gc.set_threshold(max(young, YOUNG_THRESHOLD), *older)

    def done(self) -> None:
        gc.unfreeze()
        if self.thresholds is not None:
            gc.set_threshold(*self.thresholds)
            self.thresholds = None
