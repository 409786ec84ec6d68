"""A non-streamed answer read without its vectors: the same object as json.loads, vectors empty."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from addons.answer_json import MIN_CUT, loads_answer


def compact(obj: object) -> bytes:
    """As Go's encoder writes it: no spaces."""
    return json.dumps(obj, separators=(",", ":")).encode()


def vector(n: int, seed: float = 0.5) -> list[float]:
    return [round(seed * (i % 7 - 3) / 3, 9) for i in range(n)]


def emptied(obj: Any) -> Any:
    """What loads_answer reads: every embedding(s) list emptied, everything else as it is."""
    if isinstance(obj, dict):
        return {k: [] if k in ("embedding", "embeddings") and isinstance(v, list) else emptied(v)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [emptied(v) for v in obj]
    return obj


def test_an_embed_answer_keeps_its_counts_and_loses_its_vectors() -> None:
    answer = {"model": "nomic-embed-text", "embeddings": [vector(768), vector(768, 0.25)],
              "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": 8}
    assert loads_answer(compact(answer)) == {**answer, "embeddings": []}


def test_each_openai_embedding_is_cut_and_the_usage_read() -> None:
    answer = {"object": "list", "data": [
        {"object": "embedding", "embedding": vector(768), "index": i} for i in range(3)],
        "model": "nomic-embed-text", "usage": {"prompt_tokens": 12, "total_tokens": 12}}
    got = loads_answer(compact(answer) + b"\n")
    assert got == emptied(answer)
    assert isinstance(got, dict) and got["usage"] == {"prompt_tokens": 12, "total_tokens": 12}


@pytest.mark.parametrize("body", [
    # a string inside the "vector": not numbers, so the whole body is parsed
    compact({"embeddings": [vector(400) + ["x"]], "prompt_eval_count": 3}),
    # the key inside a string is escaped, so it is never taken for the key
    compact({"response": '"embeddings":[' + "1," * 1500 + "]", "eval_count": 2}),
    # a list of objects under the key: no "]]" before other bytes, whole parse
    compact({"embeddings": [{"a": 1}] * 400, "prompt_eval_count": 1}),
    # nested deeper than a vector of vectors: the cut leaves a stray "]", whole parse
    compact({"embeddings": [[vector(300)]], "prompt_eval_count": 1}),
])
def test_what_is_not_a_plain_vector_is_parsed_whole(body: bytes) -> None:
    assert len(body) >= MIN_CUT
    assert loads_answer(body) == json.loads(body)


def test_malformed_json_outside_the_vectors_still_fails() -> None:
    body = compact({"embeddings": [vector(768)]})[:-1] + b',"prompt_eval_count":}'
    with pytest.raises(ValueError):
        loads_answer(body)
    with pytest.raises(ValueError):
        loads_answer(b'{"embeddings":[[' + b"1," * 2000 + b"1]]")  # never closed


def test_an_answer_that_is_not_an_object_reads_as_json_does() -> None:
    body = compact([vector(800)])
    assert loads_answer(body) == json.loads(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["embedding", "embeddings", "usage", "data", "x"])
                      | st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@given(extra=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
       rows=st.integers(min_value=0, max_value=3), key=st.sampled_from(["embedding",
                                                                          "embeddings"]))
def test_any_answer_reads_as_json_loads_with_its_vectors_emptied(
        extra: dict[str, Any], rows: int, key: str) -> None:
    vectors: Any = vector(300) if key == "embedding" else [vector(300) for _ in range(rows)]
    answer = {**extra, key: vectors, "prompt_eval_count": 5}
    body = compact(answer)
    got = loads_answer(body)
    full = json.loads(body)
    # Only the vectors may differ (emptied); every other key and value is json.loads's.
    assert emptied(got) == emptied(full)
    assert isinstance(got, dict) and got["prompt_eval_count"] == 5
