"""Content codings the proxy reads: incremental decoders for gzip, deflate, br and zstd.

Ollama never compresses a response (no compression middleware in any version, 0.6 to
0.32.15), but something between the proxy and Ollama may; and since 0.16.3 (/v1/responses)
and 0.18.0 (every /v1 inference route) Ollama decodes ``Content-Encoding: zstd`` request
bodies. The codecs are the ones mitmproxy itself uses: zlib, ``brotli`` and zstd
(``compression.zstd`` on Python 3.14, ``backports.zstd`` before). Nothing here imports
mitmproxy.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable

import brotli

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

# Ollama's own limit on a decompressed request body (middleware maxDecompressedBodySize).
MAX_DECODED_REQUEST = 20 << 20
IDENTITY = frozenset({"", "identity"})


class CodingError(ValueError):
    """An encoding we do not know, or bytes that are not in it."""


def _coding(encoding: str) -> str:
    enc = encoding.strip().lower()
    if "," in enc:  # several codings applied in turn: not something Ollama or a proxy sends
        raise CodingError(f"content-encoding {encoding!r} (stacked) is not read")
    return "gzip" if enc == "x-gzip" else enc


class Decoder:
    """Undoes one content coding incrementally; ``identity`` and ``""`` pass through.

    ``Decoder(encoding)`` raises ``CodingError`` for a coding it cannot read; calling it
    raises ``CodingError`` for bytes that are not in that coding.
    """

    __slots__ = ("encoding", "_step")

    def __init__(self, encoding: str) -> None:
        enc = self.encoding = _coding(encoding)
        step: Callable[[bytes], bytes] | None
        if enc == "gzip":
            step = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
        elif enc == "deflate":
            step = _Deflate()
        elif enc == "br":
            step = brotli.Decompressor().process
        elif enc == "zstd":
            step = zstd.ZstdDecompressor().decompress
        elif enc in IDENTITY:
            step = None
        else:
            raise CodingError(f"content-encoding {encoding!r} is not read")
        self._step = step

    @property
    def identity(self) -> bool:
        return self._step is None

    def __call__(self, data: bytes) -> bytes:
        if self._step is None or not data:
            return data
        try:
            return self._step(data)
        except (zlib.error, brotli.error, zstd.ZstdError, EOFError) as e:
            raise CodingError(f"{self.encoding}: {e}") from e


class _Deflate:
    """HTTP's ``deflate``: zlib-wrapped as the RFC says, or raw as some servers send it."""

    __slots__ = ("_z", "_first")

    def __init__(self) -> None:
        self._z = zlib.decompressobj()
        self._first = True

    def __call__(self, data: bytes) -> bytes:
        if self._first:
            self._first = False
            try:
                return self._z.decompress(data)
            except zlib.error:
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._z.decompress(data)


def decode_all(data: bytes, encoding: str, limit: int = MAX_DECODED_REQUEST) -> bytes:
    """A whole body decoded; ``CodingError`` when unreadable or larger than ``limit``."""
    enc = _coding(encoding)
    if enc in IDENTITY:
        return data
    if enc == "zstd":  # one frame or several; bounded without decoding past the limit
        out = bytearray()
        rest = data
        while rest:
            d = zstd.ZstdDecompressor()
            try:
                out += d.decompress(rest, max_length=limit + 1 - len(out))
            except zstd.ZstdError as e:
                raise CodingError(f"zstd: {e}") from e
            if len(out) > limit:
                raise CodingError(f"decoded body over {limit} bytes")
            if not d.eof:
                raise CodingError("zstd: truncated frame")
            rest = d.unused_data
        return bytes(out)
    decoder = Decoder(enc)
    out = bytearray()
    for start in range(0, len(data), 64 * 1024):
        out += decoder(data[start:start + 64 * 1024])
        if len(out) > limit:
            raise CodingError(f"decoded body over {limit} bytes")
    return bytes(out)


def encode_all(data: bytes, encoding: str) -> bytes:
    """A whole body encoded in ``encoding`` (the codings ``decode_all`` reads)."""
    enc = _coding(encoding)
    if enc in IDENTITY:
        return data
    if enc == "zstd":
        return zstd.compress(data)
    if enc == "gzip":
        return _gzip(data)
    if enc == "deflate":
        return zlib.compress(data)
    if enc == "br":
        return bytes(brotli.compress(data))
    raise CodingError(f"content-encoding {encoding!r} is not written")


def _gzip(data: bytes) -> bytes:
    z = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    return z.compress(data) + z.flush()
