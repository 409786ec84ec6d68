"""The least a mitmproxy addon can do to time every token: the floor under ours (bench.py --floor).

``mitmdump -s scripts/floor_addon.py`` streams every response through a callable that only
reads the clock and keeps the reading, as any proxy timing tokens inside mitmproxy must: a
Python call per chunk, made by mitmproxy. It counts nothing, exports nothing and keeps nothing
past the response. Plain mitmdump against this is what per-chunk timing costs in mitmproxy
itself; this against ours is what the addon's own work costs.
"""

from __future__ import annotations

import time

from mitmproxy import http


class FloorAddon:
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        arrivals: list[float] = []
        clock, keep = time.perf_counter, arrivals.append

        def tap(data: bytes) -> bytes:
            keep(clock())
            return data

        flow.response.stream = tap


addons = [FloorAddon()]
