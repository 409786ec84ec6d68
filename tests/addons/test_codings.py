"""Content codings: what is encoded comes back whole, split anywhere; what is not, raises."""

from __future__ import annotations

import gzip
import random
import zlib

import brotli
import pytest

from addons.codings import CodingError, Decoder, decode_all, encode_all, zstd
from tests.addons.test_streams import random_splits

BODY = ('{"model":"llama3.2","embeddings":[[0.01,-0.5]],"prompt_eval_count":7}' * 50).encode()
ENCODED = {
    "gzip": gzip.compress(BODY),
    "x-gzip": gzip.compress(BODY),
    "deflate": zlib.compress(BODY),
    "br": brotli.compress(BODY),
    "zstd": zstd.compress(BODY),
    "identity": BODY,
    "": BODY,
}


@pytest.mark.parametrize("encoding", sorted(ENCODED))
@pytest.mark.parametrize("seed", range(5))
def test_incremental_decoding_split_anywhere(encoding: str, seed: int) -> None:
    decoder = Decoder(encoding.upper())
    pieces = random_splits(ENCODED[encoding], random.Random(seed))
    assert b"".join(decoder(p) for p in pieces) == BODY


def test_raw_deflate_is_read_too() -> None:
    z = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert Decoder("deflate")(z.compress(BODY) + z.flush()) == BODY


@pytest.mark.parametrize("encoding", ["compress", "gzip, br", "exi"])
def test_codings_not_read_raise(encoding: str) -> None:
    with pytest.raises(CodingError):
        Decoder(encoding)


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_bytes_not_in_the_coding_raise(encoding: str) -> None:
    with pytest.raises(CodingError):
        Decoder(encoding)(b"\x00\x01 certainly not compressed \xff" * 4)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", ""])
def test_whole_bodies_round_trip(encoding: str) -> None:
    assert decode_all(encode_all(BODY, encoding), encoding) == BODY


def test_decoding_a_body_is_bounded() -> None:
    bomb = zstd.compress(b"\0" * (1 << 20))
    with pytest.raises(CodingError, match="over"):
        decode_all(bomb, "zstd", limit=1000)
    with pytest.raises(CodingError, match="over"):
        decode_all(gzip.compress(b"\0" * (1 << 20)), "gzip", limit=1000)
    assert decode_all(zstd.compress(b"ab") + zstd.compress(b"cd"), "zstd") == b"abcd"
    with pytest.raises(CodingError, match="truncated"):
        decode_all(zstd.compress(BODY)[:-5], "zstd")
    with pytest.raises(CodingError):
        encode_all(BODY, "compress")
