"""The cassette writer: appends off the caller's thread and continues an existing timeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow
from prometheus_client import CollectorRegistry

from addons import cassettes
from addons import stream_tap as tap_module
from addons.accounting import FlowState
from addons.metrics import ProxyMetrics
from addons.recorder import KEY, CassetteRecorder, CassetteWriter
from addons.routes import ModelLabels
from addons.stream_tap import StreamTap
from addons.streams import PassthroughParser
from addons.tap import KEY as TAP_KEY
from addons.tap import TrafficTap
from tests.support.addons import done, running, start


def one(start: float, started_at: float | None = None) -> cassettes.Interaction:
    return cassettes.Interaction(cassettes.Request("GET", "/api/tags"), None, start=start,
                                 started_at=started_at)


def test_appending_continues_after_what_the_file_holds(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    cassettes.write(path, [one(5.0, 1000.0), one(2.0, 997.0)])
    writer = CassetteWriter(path)
    assert writer.submit(one(0.0, 1003.0), 1003.0)
    assert writer.submit(one(0.5, 1003.5), 1003.0)
    writer.close()
    assert [i.start for i in cassettes.read(path)] == [5.0, 2.0, 8.0, 8.5]


def test_the_recorder_opens_and_closes_its_writer(tmp_path: Path) -> None:
    recorder = CassetteRecorder(CollectorRegistry())
    recorder.open(str(tmp_path / "new" / "c.jsonl"))
    assert recorder.writer is not None and (tmp_path / "new" / "c.jsonl").exists()
    recorder.open("")
    assert recorder.writer is None


def test_a_new_cassette_counts_from_its_own_first_request(tmp_path: Path) -> None:
    recorder = CassetteRecorder(CollectorRegistry())
    recorder.open(str(tmp_path / "a.jsonl"))
    recorder.requestheaders(tflow.tflow())
    recorder._t0 = (recorder._t0 or 0.0) - 100.0  # as if the first one came 100 s ago
    recorder.open(str(tmp_path / "b.jsonl"))
    flow = tflow.tflow()
    recorder.requestheaders(flow)
    recorder.close()
    assert flow.metadata[KEY]["start"] == 0.0


def test_a_failed_write_is_counted_and_the_writer_goes_on(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    recorder = CassetteRecorder(registry)
    recorder.open(str(tmp_path / "c.jsonl"))
    writer = recorder.writer
    assert writer is not None
    bad = one(0.0)
    bad.request.body = None  # type: ignore[assignment]  # cannot be serialised
    writer.submit(bad, 0.0)
    writer.submit(one(1.0), 0.0)
    recorder.close()
    assert registry.get_sample_value("ollama_proxy_record_dropped_total") == 1
    assert [i.start for i in cassettes.read(tmp_path / "c.jsonl")] == [1.0]


def test_a_response_too_big_to_keep_is_not_recorded_and_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While recording, a response's chunks are kept up to MAX_KEPT_BYTES: past that they are
    let go (no unbounded memory) and the interaction is dropped, counted, not cut short."""
    monkeypatch.setattr(tap_module, "MAX_KEPT_BYTES", 10)
    kept = StreamTap(PassthroughParser(), None, keep_chunks=True)
    assert kept(b"12345") == b"12345" and kept.chunks is not None and len(kept.chunks) == 1
    assert kept(b"678901") == b"678901"  # still passed on, byte for byte
    assert kept.chunks is None and kept.kept_too_much

    registry = CollectorRegistry()
    recorder = CassetteRecorder(registry)
    path = tmp_path / "c.jsonl"
    recorder.open(str(path))
    flow = tflow.tflow(resp=True)
    recorder.requestheaders(flow)
    recorder.request(flow)
    state = FlowState()
    state.tap = kept
    flow.metadata[TAP_KEY] = state
    recorder.response(flow)
    recorder.close()
    assert registry.get_sample_value("ollama_proxy_record_dropped_total") == 1
    assert path.read_text() == ""


def test_record_path_opens_the_cassette_and_the_tap_keeps_chunks_meanwhile(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    tap = TrafficTap(ProxyMetrics(registry), ModelLabels())
    recorder = CassetteRecorder(registry, tap=tap)
    path = tmp_path / "c.jsonl"
    with taddons.context() as tctx:
        script = start(tctx, recorder, command_line=(f"record_path={path}",))
        assert recorder.writer is not None and path.exists() and tap.keep_chunks
        running(tctx, script)
        tctx.options.record_path = ""
        assert recorder.writer is None and not tap.keep_chunks
        tctx.options.record_path = str(path)
        with pytest.raises(exceptions.OptionsError, match="record_path '/proc/llama-metrics"):
            tctx.options.record_path = "/proc/llama-metrics/r.jsonl"
        assert tctx.options.record_path == str(path)
        assert recorder.writer is not None and tap.keep_chunks  # the old cassette again
        done(tctx, script)
    assert recorder.writer is None and not tap.keep_chunks


def test_an_unusable_record_path_stops_the_start(caplog: pytest.LogCaptureFixture) -> None:
    with taddons.context() as tctx, pytest.raises(SystemExit) as stopped:
        start(tctx, CassetteRecorder(CollectorRegistry()),
              command_line=("record_path=/proc/llama-metrics/r.jsonl",))
    assert stopped.value.code == 2 and "cannot be used" in caplog.text
