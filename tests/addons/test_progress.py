"""pull, push and create answers: an error line after progress lines is an error."""

from __future__ import annotations

import random

import pytest

from addons.progress import ProgressParser, progress_parser_for
from addons.streams import JsonParser, PassthroughParser
from tests.addons.test_streams import feed_all, random_splits

PROGRESS = (
    b'{"status":"pulling manifest"}\n'
    + b'{"status":"pulling dde5aa3fc5ff","digest":"sha256:dde5aa","total":2019377376,'
      b'"completed":241970}\n' * 200
    + b'{"status":"verifying sha256 digest"}\n{"status":"writing manifest"}\n'
)


@pytest.mark.parametrize("seed", range(10))
def test_success_line(seed: int) -> None:
    parser = ProgressParser()
    feed_all(parser, random_splits(PROGRESS + b'{"status":"success"}\n', random.Random(seed)))
    assert parser.stats.done and parser.stats.error is None and parser.stats.content_chunks == 0


@pytest.mark.parametrize(
    "last",
    [
        b'{"error":"pull model manifest: file does not exist"}\n',  # 0.12.6 on
        b'{"error":"invalid model name","status":400}\n',  # create, up to 0.12.5
        b'{"error":"max retries exceeded"}',  # no newline before EOF
    ],
)
@pytest.mark.parametrize("seed", range(5))
def test_error_line_after_progress(last: bytes, seed: int) -> None:
    parser = ProgressParser()
    feed_all(parser, random_splits(PROGRESS + last, random.Random(seed)))
    assert parser.stats.error is not None and not parser.stats.done


def test_parsers_by_content_type() -> None:
    assert isinstance(progress_parser_for("application/x-ndjson"), ProgressParser)
    assert isinstance(progress_parser_for("application/json; charset=utf-8"), JsonParser)
    assert isinstance(progress_parser_for("text/plain"), PassthroughParser)
    assert not ProgressParser().has_end  # a pull that ends without "success" is not judged
