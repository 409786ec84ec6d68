#!/usr/bin/env python3
"""Make cassettes (docs/cassettes.md) from mitmproxy flow files and from recorded Ollama traffic.

    python scripts/cassette.py from-flows FLOWS.mitm -o OUT.jsonl
    python scripts/cassette.py from-fixture tests/fixtures/ollama-recorded/*.json -o OUT.jsonl
    python scripts/cassette.py show CASSETTE.jsonl

A flow file (``mitmdump -w FILE --set store_streamed_bodies=true``) keeps each body whole but
not when its pieces arrived: the body is cut into its natural chunks (NDJSON lines, SSE
events) and their offsets are spread evenly between the response's first and last byte.
A recording has no timing at all: NDJSON chunks are placed by their ``created_at``
after the reported load and prompt-evaluation time; other bodies are one chunk at 0.
Exit status: 0 done, 1 a file could not be read or converted, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from addons import cassettes  # noqa: E402

_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")
NS = 1e-9


def rfc3339_seconds(text: object) -> float | None:
    """Unix seconds of an RFC 3339 time with any number of fraction digits (Go writes nine)."""
    m = _RFC3339.match(text) if isinstance(text, str) else None
    if m is None:
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    whole = datetime.fromisoformat(m.group(1) + zone).timestamp()
    return whole + float(m.group(2) or 0)


def from_flows(path: Path) -> list[cassettes.Interaction]:
    from mitmproxy import http, io

    flows: list[http.HTTPFlow] = []
    with path.open("rb") as f:
        for n, flow in enumerate(io.FlowReader(f).stream()):
            if not isinstance(flow, http.HTTPFlow):
                continue
            if flow.response is not None and flow.response.raw_content is None:
                print(f"{path}: flow {n} {flow.request.method} {flow.request.path}: body not "
                      "stored (record with --set store_streamed_bodies=true)", file=sys.stderr)
            flows.append(flow)
    # A flow file is in finishing order: the first request to arrive may come later in it.
    first = min((flow.request.timestamp_start for flow in flows), default=0.0)
    interactions = [cassettes.from_flow(flow, start=flow.request.timestamp_start - first)
                    for flow in flows]
    interactions.sort(key=lambda i: i.start)
    return interactions


def _ndjson_chunks(pieces: list[bytes]) -> list[cassettes.Chunk]:
    """Offsets from the lines' ``created_at``, after the reported load and prompt evaluation."""
    objects: list[Any] = []
    for piece in pieces:
        try:
            objects.append(json.loads(piece))
        except ValueError:
            objects.append(None)
    times = [rfc3339_seconds(o.get("created_at")) if isinstance(o, dict) else None
             for o in objects]
    last = objects[-1] if objects else None
    ttft = 0.0
    if isinstance(last, dict):
        for key in ("load_duration", "prompt_eval_duration"):
            if isinstance(last.get(key), int | float):
                ttft += max(0.0, last[key] * NS)
    if not times or times[0] is None:
        return cassettes.spread(pieces, 0.0, 0.0)
    chunks, previous = [], ttft
    for piece, t in zip(pieces, times, strict=True):
        offset = previous if t is None else max(previous, ttft + t - times[0])
        chunks.append(cassettes.Chunk(offset, piece))
        previous = offset
    return chunks


def from_fixture(path: Path, start: float) -> cassettes.Interaction:
    """One recording (tests/fixtures/ollama-recorded/README.md) as an interaction."""
    data = json.loads(path.read_text(encoding="utf-8"))
    req, resp = data["request"], data["response"]
    body = b"" if req.get("body") is None else json.dumps(
        req["body"], ensure_ascii=False, separators=(",", ":")).encode()
    headers = list(req.get("headers", {}).items())
    if body and not cassettes.header(headers, "content-type"):
        headers.append(("content-type", "application/json"))
    response_headers = list(resp.get("headers", {}).items())
    content = resp["body"].encode("utf-8")
    content_type = cassettes.header(response_headers, "content-type")
    pieces = cassettes.natural_chunks(content, content_type)
    if content_type.startswith("application/x-ndjson"):
        chunks = _ndjson_chunks(pieces)
    else:
        chunks = cassettes.spread(pieces, 0.0, 0.0)
    return cassettes.Interaction(
        request=cassettes.Request(req["method"], req["path"], headers, body),
        response=cassettes.Response(
            resp["status"], cassettes.reason_phrase(resp["status"]), response_headers, chunks),
        start=start,
    )


def show(path: Path) -> None:
    for i in cassettes.read(path):
        r = i.response
        answer = "no response" if r is None else (
            f"{r.status} {len(r.chunks)} chunks {len(r.body)} bytes "
            f"last at {r.chunks[-1].offset if r.chunks else 0:.3f}s")
        print(f"{i.start:9.3f}s {i.request.method} {i.request.path}: {answer}"
              + (f" ({i.error})" if i.error else ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cassette.py", description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    flows = sub.add_parser("from-flows", help="convert a mitmdump -w flow file")
    flows.add_argument("flows", type=Path)
    flows.add_argument("-o", "--output", type=Path, required=True)
    fixture = sub.add_parser(
        "from-fixture", help="convert recordings (tests/fixtures/ollama-recorded), in order given"
    )
    fixture.add_argument("fixtures", type=Path, nargs="+")
    fixture.add_argument("-o", "--output", type=Path, required=True)
    fixture.add_argument("--gap", type=float, default=0.1,
                         help="seconds between the recordings' start offsets (0.1)")
    listing = sub.add_parser("show", help="one line per interaction")
    listing.add_argument("cassette", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            show(args.cassette)
            return 0
        if args.command == "from-flows":
            interactions = from_flows(args.flows)
        else:
            if not args.gap >= 0:
                parser.error(f"--gap must be >= 0, got {args.gap}")
            interactions = [from_fixture(p, n * args.gap) for n, p in enumerate(args.fixtures)]
        count = cassettes.write(args.output, interactions)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"cassette.py: {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # mitmproxy's FlowReadException and the like
        print(f"cassette.py: {args.command}: {e}", file=sys.stderr)
        return 1
    print(f"{count} interactions written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
