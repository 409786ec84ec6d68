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

Nothing changes in what is counted: the collector runs as before on every object made later.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


class FrozenHeap:
    """``gc.freeze()`` once running, ``gc.unfreeze()`` when done."""

    def running(self) -> None:
        gc.collect()
        gc.freeze()
        logger.debug("%d objects frozen out of the collector's walks", gc.get_freeze_count())

    def done(self) -> None:
        gc.unfreeze()
