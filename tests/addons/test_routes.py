"""Route templates and the model label guard."""

from __future__ import annotations

import pytest

from addons.routes import ModelLabels
from llama_core.endpoints import NO_MODEL, OTHER, canonical_model, endpoint_template


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/api/chat", "/api/chat"),
        ("/api/chat/", "/api/chat"),
        ("/api/generate?x=1", "/api/generate"),
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/v1/models/llama3", "/v1/models/:model"),
        ("/api/blobs/sha256:abc", "/api/blobs/:digest"),
        ("/", "/"),
        ("/v1/chat", OTHER),
        ("/api/chat/12345-request-id", OTHER),
        ("/" + "x" * 5000, OTHER),
    ],
)
def test_endpoint_template(path: str, template: str) -> None:
    assert endpoint_template(path) == template


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("llama3", "llama3:latest"), ("qwen3:14b", "qwen3:14b"),
     ("hf.co/org/model", "hf.co/org/model:latest"), ("hf.co/org/m:Q4", "hf.co/org/m:Q4")],
)
def test_canonical_model(name: str, canonical: str) -> None:
    assert canonical_model(name) == canonical


def test_a_flood_of_model_names_stays_bounded() -> None:
    labels = ModelLabels(max_others=5, is_known=lambda m: m == "llama3.2:latest")
    seen = {labels.label(f"model-{i}") for i in range(100_000)}
    assert len(seen) == 6  # five admitted, then "other"
    assert OTHER in seen
    assert labels.label("llama3.2") == "llama3.2:latest"  # known models always get their own
    assert labels.label("model-3") == "model-3:latest"


@pytest.mark.parametrize("value", [None, "", "   ", 42, ["x"], {"a": 1}])
def test_missing_or_odd_model_is_none(value: object) -> None:
    assert ModelLabels().label(value) == NO_MODEL


def test_unprintable_or_huge_names_are_other() -> None:
    labels = ModelLabels()
    assert labels.label("bad\nname") == OTHER
    assert labels.label("x" * 500) == OTHER
