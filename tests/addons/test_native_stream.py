"""The stream tap's one-call path for plain native streams counts exactly what the general path
counts, passes every byte on as it came, and never raises."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from addons.stream_tap import GAP_BATCH, StreamTap, native_stream
from addons.streams import NdjsonParser


def line(key: str, text: str, *, done: bool = False, **extra: object) -> bytes:
    body: dict[str, object] = {"model": "m"}
    if key == "message":
        body["message"] = {"role": "assistant", "content": text, **extra}
    else:
        body["response"] = text
        body.update(extra)
    body["done"] = done
    if done:
        body.update({"done_reason": "stop", "eval_count": 3, "prompt_eval_count": 2})
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def run(stream, pieces: list[bytes]) -> bytes:
    out = b""
    for piece in [*pieces, b""]:  # mitmproxy ends with b""
        got = stream(piece)
        assert got != b""  # b"" would end the client's chunked response early
        out += got if isinstance(got, bytes) else b"".join(got)
    return out


def both() -> tuple[StreamTap, StreamTap]:
    """Two taps of fresh parsers: one as mitmproxy gets it (``stream()``), one general."""
    fused, general = StreamTap(NdjsonParser(), None), StreamTap(NdjsonParser(), None)
    assert fused.stream() is not fused  # a plain native stream takes the one-call path
    return fused, general


def test_the_one_call_path_is_taken_only_for_a_plain_native_stream() -> None:
    captured = StreamTap(NdjsonParser(capture_text=True), None)
    assert captured.stream() is captured
    kept = StreamTap(NdjsonParser(), None, keep_chunks=True)
    assert kept.stream() is kept
    gzipped = StreamTap(NdjsonParser(content_encoding="gzip"), None)
    assert gzipped.stream() is gzipped


chunk_lines = st.lists(
    st.tuples(st.sampled_from(["message", "response"]),
              st.sampled_from(["a", "", " é", '"done":false}', "\n", "x" * 40]),
              st.sampled_from([{}, {"thinking": "hm"}])),
    max_size=40)


@settings(max_examples=200, deadline=None)
@given(chunk_lines, st.booleans(), st.data())
def test_it_counts_what_the_general_path_counts(lines, end, data) -> None:
    body = [line(key, text, **extra) for key, text, extra in lines]
    if end:
        body.append(line("message", "", done=True))
    whole = b"".join(body)
    # Mostly a line a chunk, as Ollama sends; sometimes cut anywhere.
    if data.draw(st.booleans()):
        cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=6)))
        pieces = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
        pieces = [p for p in pieces if p]
    else:
        pieces = body
    fused, general = both()
    assert run(fused.stream(), pieces) == whole
    assert run(general, pieces) == whole
    a, b = fused.parser.finish(9.0), general.parser.finish(9.0)
    assert (a.content_chunks, a.body_bytes, len(a.gaps), a.done, a.malformed, a.usage) == (
        b.content_chunks, b.body_bytes, len(b.gaps), b.done, b.malformed, b.usage)
    assert fused.sent == general.sent == len(whole)
    assert (a.first_token_at is None) == (b.first_token_at is None)


def test_gaps_are_handed_over_in_batches() -> None:
    batches: list[int] = []
    tap = StreamTap(NdjsonParser(), None, lambda gaps: batches.append(len(gaps)))
    stream = tap.stream()
    for _ in range(2 * GAP_BATCH + 1):
        stream(line("message", "x"))
    assert batches == [GAP_BATCH, GAP_BATCH]
    assert tap.parser.stats.content_chunks == 2 * GAP_BATCH + 1


def test_a_failure_inside_passes_the_rest_through() -> None:
    def broken_histogram(gaps: list[float]) -> None:
        raise RuntimeError("histogram bug")

    tap = StreamTap(NdjsonParser(), None, broken_histogram)
    stream = native_stream(tap, tap.parser)  # type: ignore[arg-type]
    chunk = line("message", "x")
    out = [stream(chunk) for _ in range(GAP_BATCH + 5)]
    assert b"".join(o if isinstance(o, bytes) else b"".join(o) for o in out) == chunk * (
        GAP_BATCH + 5)
    assert tap._broken
    assert stream(b"") == []


def test_a_line_cut_before_an_inner_brace_is_read_whole() -> None:
    """The second piece alone would look like a whole content line; it is the rest of one."""
    first, last = line("message", "a"), line("message", "", done=True)
    cut = first.index(b'{"role"')
    fused, general = both()
    for tap in (fused, general):
        stream = tap.stream() if tap is fused else tap
        assert run(stream, [first[:cut], first[cut:], last]) == first + last
    a, b = fused.parser.finish(9.0), general.parser.finish(9.0)
    assert (a.content_chunks, a.malformed, a.done) == (b.content_chunks, b.malformed, b.done) == (
        1, 0, True)


def test_empty_content_is_no_token() -> None:
    fused, _ = both()
    stream = fused.stream()
    stream(line("message", ""))
    stream(line("response", ""))
    stream(line("message", "", thinking="hm"))  # thinking is produced: a token
    assert fused.parser.stats.content_chunks == 1
