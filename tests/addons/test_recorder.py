"""The cassette writer: appends off the caller's thread and continues an existing timeline."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from addons import cassettes
from addons.recorder import CassetteRecorder, CassetteWriter


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
