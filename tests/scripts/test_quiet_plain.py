"""The benchmark's quiet baseline loads the streaming-line filter and nothing else (what the
filter does is tested in tests/addons/test_streaming_log.py)."""

from __future__ import annotations

from addons.streaming_log import StreamingLog
from scripts import quiet_plain


def test_it_is_the_filter_alone() -> None:
    assert [type(a) for a in quiet_plain.addons] == [StreamingLog]
