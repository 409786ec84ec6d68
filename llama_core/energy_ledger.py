"""Shares each poll interval's GPU energy among the requests generating in it; the rest is idle.

The ledger is fed three ways: ``start`` when a request is forwarded upstream (with a way to
read how many tokens it has produced so far), ``finish`` when it ends, and ``poll`` with
every resource poll's GPU readings. At each poll the joules all GPUs used since the previous
poll (``llama_core.energy.GpuMeters``) are shared:

1. among the requests that produced tokens in the interval, in proportion to their tokens;
2. else, among the requests in flight in the interval (prefill, a model load, an answer that
   is not streamed), in proportion to their time in flight in it;
3. else, nothing was in flight: the joules are idle energy, counted per GPU.

A request that ends between two polls is completed at the next one, when its share of that
last, partial interval is known: ``finish`` takes the callback that receives its joules. The
method, its error bounds and what it cannot know are in docs/energy.md. Nothing here imports
mitmproxy; the poller thread calls ``poll`` while the event loop calls ``start``/``finish``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .energy import GpuMeters
from .sampler import GpuSample

logger = logging.getLogger(__name__)

Labels = tuple[str, ...]  # the label values of catalogue.ENERGY: model, client
Done = Callable[[float | None], object]


class RequestEnergy:
    """One request as the ledger knows it, from its start to the poll after its end."""

    __slots__ = ("labels", "tokens", "started", "ended", "final_tokens", "seen", "joules",
                 "metered", "done")

    def __init__(self, labels: Labels, tokens: Callable[[], int], started: float) -> None:
        self.labels = labels
        self.tokens = tokens  # tokens produced so far, read at each poll (never per token)
        self.started = started
        self.ended: float | None = None
        self.final_tokens = 0
        self.seen = 0  # tokens already shared out at earlier polls
        self.joules = 0.0
        self.metered = False  # was in flight during an interval whose energy is known
        self.done: Done | None = None


@dataclass
class EnergyTotals:
    """What the ledger has counted since it started, in joules, for the collector."""

    gpu: dict[tuple[str, str, str], float] = field(default_factory=dict)  # gpu, name, source
    idle: dict[tuple[str, str], float] = field(default_factory=dict)  # gpu, name
    attributed: dict[Labels, float] = field(default_factory=dict)


class EnergyLedger:
    """GPU energy per poll interval, shared among the requests of that interval."""

    def __init__(self) -> None:
        self.meters = GpuMeters()
        self._lock = threading.Lock()
        self._live: dict[int, RequestEnergy] = {}  # started and not yet completed, in order
        self._t0: float | None = None  # the previous poll
        self._closed = False
        self._idle: dict[tuple[str, str], float] = {}
        self._attributed: dict[Labels, float] = {}

    def start(self, labels: Labels, tokens: Callable[[], int], at: float) -> RequestEnergy:
        """A request forwarded at ``at`` (``perf_counter``); ``tokens()`` counts its output."""
        request = RequestEnergy(labels, tokens, at)
        with self._lock:
            self._live[id(request)] = request
        return request

    def finish(self, request: RequestEnergy, at: float, done: Done) -> None:
        """The request ended at ``at``: ``done(joules)`` now, or at the next poll.

        ``done`` gets None when no GPU energy was measured while the request ran; it is called
        at once when the ledger is not metering (no GPU, or the proxy stopping), else from the
        poller thread once the interval the request ended in is shared out.
        """
        try:
            final = int(request.tokens())
        except Exception:  # a reader must never break accounting
            logger.exception("could not read the tokens of a finished request")
            final = request.seen
        with self._lock:
            request.ended, request.final_tokens = at, final
            wait = not self._closed and self._t0 is not None and self.meters.metering
            if wait:
                request.done = done
            else:
                self._live.pop(id(request), None)
        if not wait:
            done(request.joules if request.metered else None)

    def poll(self, at: float, gpus: Iterable[GpuSample]) -> None:
        """One resource poll at ``at``: share the energy since the previous one out."""
        with self._lock:
            energies = self.meters.read(at, gpus)
            t0, self._t0 = self._t0, at
            if t0 is None:
                t0 = at  # the first poll is only the meters' baseline
            present: list[tuple[RequestEnergy, int, float]] = []
            for request in self._live.values():
                produced = request.final_tokens if request.ended is not None else (
                    self._read_tokens(request))
                tokens = max(0, produced - request.seen)
                request.seen = max(request.seen, produced)
                end = at if request.ended is None else min(request.ended, at)
                in_flight = max(0.0, end - max(request.started, t0))
                if tokens or in_flight > 0:
                    present.append((request, tokens, in_flight))
            if energies:
                self._share(energies, present)
            finished = [r for r in self._live.values() if r.ended is not None]
            for request in finished:
                del self._live[id(request)]
        for request in finished:
            if request.done is not None:
                request.done(request.joules if request.metered else None)

    def _share(self, energies: list, present: list[tuple[RequestEnergy, int, float]]) -> None:
        joules = sum(e.joules for e in energies)
        tokens = sum(t for _, t, _ in present)
        in_flight = sum(f for _, _, f in present)
        if tokens == 0 and in_flight <= 0:
            for e in energies:
                key = (e.gpu, e.name)
                self._idle[key] = self._idle.get(key, 0.0) + e.joules
            return
        for request, t, f in present:
            share = joules * t / tokens if tokens else joules * f / in_flight
            request.joules += share
            request.metered = True
            self._attributed[request.labels] = self._attributed.get(request.labels, 0.0) + share

    @staticmethod
    def _read_tokens(request: RequestEnergy) -> int:
        try:
            return int(request.tokens())
        except Exception:
            logger.exception("could not read the tokens of a request in flight")
            return request.seen

    def close(self) -> None:
        """Stop metering: complete the finished requests now, with the energy known so far.

        Their share of the last, partial interval is lost (the proxy is stopping); a request
        that finishes afterwards is completed at once.
        """
        with self._lock:
            self._closed = True
            finished = [r for r in self._live.values() if r.ended is not None]
            for request in finished:
                del self._live[id(request)]
        for request in finished:
            if request.done is not None:
                request.done(request.joules if request.metered else None)

    def totals(self) -> EnergyTotals:
        with self._lock:
            return EnergyTotals(dict(self.meters.totals), dict(self._idle),
                                dict(self._attributed))

    @property
    def pending(self) -> int:
        """Requests started and not yet completed."""
        with self._lock:
            return len(self._live)
