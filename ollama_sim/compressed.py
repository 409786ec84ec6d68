"""Compressed bodies: responses a hop between a proxy and Ollama compresses, and zstd requests.

Ollama never compresses a response (no compression middleware, 0.6.0 to 0.32.15; net/http
does not either), but a reverse proxy or gateway in front of it may: ``X-Sim-Encoding: gzip``,
``deflate``, ``br`` or ``zstd`` makes the simulator answer in that coding, a stream flushed
chunk by chunk as such a hop does. Request bodies in ``Content-Encoding: zstd`` are decoded on
/v1 routes (as Ollama 0.18.0 on does for every /v1 inference route, /v1/responses since
0.16.3, up to 20 MiB decoded); on /api routes Ollama reads them as JSON, and so fail.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Mapping

import brotli

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

HEADER = "X-Sim-Encoding"
CODINGS = ("gzip", "deflate", "br", "zstd")
MAX_DECODED = 20 << 20  # Ollama's maxDecompressedBodySize


def encoder(coding: str) -> Callable[[bytes, bool], bytes]:
    """A function compressing the next piece of a body; ``last`` ends the stream.

    Every piece is flushed, so a streamed chunk is readable when it arrives.
    """
    if coding in ("gzip", "deflate"):
        z = zlib.compressobj(wbits=16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS)

        def step(data: bytes, last: bool) -> bytes:
            return z.compress(data) + z.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

        return step
    if coding == "br":
        b = brotli.Compressor()

        def step_br(data: bytes, last: bool) -> bytes:
            out = b.process(data)
            return out + (b.finish() if last else b.flush())

        return step_br
    if coding == "zstd":
        c = zstd.ZstdCompressor()

        def step_zstd(data: bytes, last: bool) -> bytes:
            if last:
                return c.compress(data, zstd.ZstdCompressor.FLUSH_FRAME)
            return c.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)

        return step_zstd
    raise ValueError(f"{HEADER}: {coding!r} is not one of {', '.join(CODINGS)}")


def requested(headers: Mapping[str, str]) -> str | None:
    """The coding a request asks the simulator to answer in (``X-Sim-Encoding``), if any."""
    value = headers.get(HEADER, "").strip().lower()
    return value or None


def decoded_request(raw: bytes, content_encoding: str, path: str) -> bytes:
    """A request body as Ollama's handler reads it; ValueError for a bad zstd body."""
    if content_encoding.strip().lower() != "zstd" or not path.startswith("/v1/"):
        return raw  # native routes decode nothing: the JSON decoder meets the bytes
    d = zstd.ZstdDecompressor()
    try:
        out = d.decompress(raw, max_length=MAX_DECODED + 1)
    except zstd.ZstdError as exc:
        raise ValueError("failed to decompress request body") from exc
    if len(out) > MAX_DECODED or not d.eof:
        raise ValueError("failed to decompress request body")
    return out
