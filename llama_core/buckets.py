"""The histogram bucket bounds the proxy's metrics and the history rollup both use."""

from __future__ import annotations

# Like vLLM's: a first token can take a model load (minutes) or a millisecond.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)
TOKEN_LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
    30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0,
)
SERVER_DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0, 300.0,
)
QUEUE_WAIT_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0,
)
RATE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)


def one_two_five(start: int, stop: int) -> tuple[float, ...]:
    """1-2-5 series from ``start`` up to ``stop``: 1, 2, 5, 10, 20, 50, ..."""
    out: list[float] = []
    decade = start
    while decade <= stop:
        out.extend(float(decade * m) for m in (1, 2, 5) if decade * m <= stop)
        decade *= 10
    return tuple(out)


TOKEN_COUNT_BUCKETS = one_two_five(1, 500_000)
SIZE_BUCKETS = tuple(float(4**n * 64) for n in range(12))  # 64 B ... 256 MiB
