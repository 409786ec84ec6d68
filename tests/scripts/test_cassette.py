"""scripts/cassette.py: flow files and recorded Ollama traffic made into cassettes."""

from __future__ import annotations

from pathlib import Path

from mitmproxy import io
from mitmproxy.test import tflow

from addons import cassettes
from scripts import cassette


def test_flows_written_in_finishing_order_start_from_the_earliest(tmp_path: Path) -> None:
    quick, slow = tflow.tflow(resp=True), tflow.tflow(resp=True)
    slow.request.path, quick.request.path = "/api/chat", "/api/tags"
    slow.request.timestamp_start, quick.request.timestamp_start = 1000.0, 1002.5
    flows = tmp_path / "flows.mitm"
    with flows.open("wb") as f:  # mitmdump -w writes a flow when it finishes: quick first
        writer = io.FlowWriter(f)
        writer.add(quick)
        writer.add(slow)
    out = tmp_path / "c.jsonl"
    assert cassette.main(["from-flows", str(flows), "-o", str(out)]) == 0
    assert [(i.request.path, i.start) for i in cassettes.read(out)] == [
        ("/api/chat", 0.0), ("/api/tags", 2.5)]
