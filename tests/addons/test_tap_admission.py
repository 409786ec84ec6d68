"""Admission inside the tap: queued flows, priorities, a full queue, clients that leave."""

from __future__ import annotations

import asyncio
import json

from mitmproxy import http
from mitmproxy.connection import ConnectionState
from mitmproxy.test import taddons
from prometheus_client import CollectorRegistry

from addons.admission import Admission, AdmissionCollector
from addons.metrics import ProxyMetrics
from addons.routes import ModelLabels
from addons.tap import TrafficTap
from llama_core.record import RequestRecord
from tests.addons.test_tap import make_flow, respond, value


def make_tap(limit: int, queue: int) -> tuple[TrafficTap, CollectorRegistry, list[RequestRecord]]:
    registry = CollectorRegistry()
    records: list[RequestRecord] = []
    admission = Admission(limit, queue)
    registry.register(AdmissionCollector(admission))
    tap = TrafficTap(ProxyMetrics(registry), ModelLabels(), on_record=records.append,
                     admission=admission)
    return tap, registry, records


def chat(priority: str) -> http.HTTPFlow:
    return make_flow("/api/chat", {"model": "m", "messages": []}, {"X-Priority": priority})


def begin(tap: TrafficTap, flow: http.HTTPFlow) -> asyncio.Future[None] | None:
    tap.requestheaders(flow)
    waiting = tap.request(flow)
    return asyncio.ensure_future(waiting) if waiting is not None else None


def finish_ok(tap: TrafficTap, flow: http.HTTPFlow) -> None:
    respond(tap, flow, 200, "application/x-ndjson",
            [b'{"message":{"content":"x"},"done":false}\n{"done":true,"eval_count":1}\n'])


async def turn() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_high_priority_overtakes_and_every_slot_comes_back() -> None:
    tap, registry, records = make_tap(limit=1, queue=10)

    async def scenario() -> list[str]:
        order: list[str] = []
        first = chat("normal")
        begin(tap, first)
        await turn()
        normal, low, high = chat("normal"), chat("low"), chat("high")
        waits = {name: begin(tap, f) for name, f in
                 (("normal", normal), ("low", low), ("high", high))}
        await turn()
        assert value(registry, "queue_depth", priority="normal") == 1
        assert value(registry, "queue_depth", priority="high") == 1
        assert value(registry, "active_requests", model="m:latest") == 1
        finish_ok(tap, first)
        for flow in (high, normal, low):
            await turn()
            done = [n for n, w in waits.items() if w is not None and w.done()]
            order.append(",".join(sorted(done)))
            finish_ok(tap, flow)
        return order

    with taddons.context(tap):
        order = asyncio.run(scenario())
    assert order == ["high", "high,normal", "high,low,normal"]
    assert tap.admission.active == 0
    assert value(registry, "active_requests", model="m:latest") == 0
    assert all(value(registry, "queue_depth", priority=p) == 0 for p in ("high", "normal", "low"))
    assert value(registry, "queue_wait_seconds_count", priority="high") == 1
    assert len(records) == 4


def test_full_queue_answers_503_with_retry_after() -> None:
    tap, registry, records = make_tap(limit=1, queue=0)

    async def scenario() -> http.HTTPFlow:
        holder, rejected = chat("normal"), chat("normal")
        begin(tap, holder)
        waiting = begin(tap, rejected)
        assert waiting is not None
        await waiting
        assert rejected.response is not None
        tap.response(rejected)
        finish_ok(tap, holder)
        return rejected

    with taddons.context(tap):
        rejected = asyncio.run(scenario())
    assert rejected.response is not None and rejected.response.status_code == 503
    assert int(rejected.response.headers["Retry-After"]) >= 1
    assert "error" in json.loads(rejected.response.content or b"")
    assert value(registry, "errors_total", endpoint="/api/chat", model="m:latest",
                 error_type="queue_full") == 1
    assert tap.admission.active == 0


def test_client_leaving_while_queued_is_cancelled_and_frees_its_place() -> None:
    tap, registry, records = make_tap(limit=1, queue=10)

    async def scenario() -> http.HTTPFlow:
        holder, leaver = chat("normal"), chat("normal")
        begin(tap, holder)
        waiting = begin(tap, leaver)
        assert waiting is not None
        await turn()
        assert tap.admission.total_depth == 1
        leaver.client_conn.state &= ~ConnectionState.CAN_READ  # the client hung up
        await asyncio.wait_for(waiting, 5)
        assert tap.admission.total_depth == 0
        finish_ok(tap, holder)
        return leaver

    with taddons.context(tap):
        leaver = asyncio.run(scenario())
    assert leaver.error is not None  # killed: never forwarded upstream
    assert value(registry, "errors_total", endpoint="/api/chat", model="m:latest",
                 error_type="client_cancelled") == 1
    assert tap.admission.active == 0
    assert value(registry, "active_requests", model="m:latest") == 0


def test_one_watcher_for_every_queued_client() -> None:
    """1,000 queued requests are watched by one task (not one wake-up each per interval);
    those whose client left are let go, the others keep waiting and are served in order."""
    tap, registry, records = make_tap(limit=1, queue=2000)

    async def scenario() -> None:
        holder = chat("normal")
        begin(tap, holder)
        queued = [chat("normal") for _ in range(1000)]
        waits = [begin(tap, f) for f in queued]
        await turn()
        assert tap.admission.total_depth == 1000 and len(tap.queued_clients) == 1000
        watchers = [t for t in asyncio.all_tasks() if "ClientWatcher._run" in repr(t)]
        assert len(watchers) == 1
        for flow in queued[::2]:  # every other client hangs up
            flow.client_conn.state &= ~ConnectionState.CAN_READ
        await asyncio.wait_for(asyncio.gather(*(w for w in waits[::2] if w)), 5)
        assert tap.admission.total_depth == 500 and len(tap.queued_clients) == 500
        assert all(not w.done() for w in waits[1::2] if w)
        finish_ok(tap, holder)
        for flow, waiting in zip(queued[1::2], waits[1::2], strict=True):
            assert waiting is not None
            await asyncio.wait_for(waiting, 5)  # its turn came: forwarded
            assert flow.error is None
            finish_ok(tap, flow)
        assert len(tap.queued_clients) == 0

    with taddons.context(tap):
        asyncio.run(scenario())
    assert value(registry, "errors_total", endpoint="/api/chat", model="m:latest",
                 error_type="client_cancelled") == 500
    assert sum(1 for r in records if r.status == 200) == 501
    assert tap.admission.active == 0 and tap.admission.total_depth == 0


def test_metadata_requests_never_wait() -> None:
    tap, registry, _ = make_tap(limit=1, queue=0)

    async def scenario() -> None:
        begin(tap, chat("normal"))
        tags = make_flow("/api/tags", b"")
        assert begin(tap, tags) is None  # straight through, even with every slot taken

    with taddons.context(tap):
        asyncio.run(scenario())
