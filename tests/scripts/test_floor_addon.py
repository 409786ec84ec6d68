"""The benchmark's floor addon streams every response and passes each chunk on untouched."""

from __future__ import annotations

from mitmproxy.test import tflow, tutils

from scripts.floor_addon import FloorAddon


def test_every_chunk_goes_on_as_it_came() -> None:
    flow = tflow.tflow(resp=tutils.tresp(content=None))
    FloorAddon().responseheaders(flow)
    stream = flow.response.stream
    assert callable(stream)
    assert [stream(c) for c in (b'{"a":1}\n', b"x", b"")] == [b'{"a":1}\n', b"x", b""]
