"""Per-model rows from the proxy's series: the cache-hit share only where cache counts exist."""

from __future__ import annotations

import pytest

from dashboard import promtext, snapshot

TEXT = """\
ollama_proxy_requests_total{endpoint="/v1/chat/completions",model="a:latest",status="200"} 4
ollama_proxy_requests_total{endpoint="/api/chat",model="b:latest",status="200"} 2
ollama_proxy_prompt_tokens_total{model="a:latest"} 200
ollama_proxy_prompt_tokens_total{model="b:latest"} 50
ollama_proxy_cached_prompt_tokens_total{model="a:latest"} 150
"""


def test_cache_hit_share_per_model() -> None:
    rows = {r["model"]: r for r in snapshot.models(None, promtext.parse(TEXT))}
    assert rows["a:latest"]["cache_hit_share"] == pytest.approx(0.75)
    assert rows["b:latest"]["cache_hit_share"] is None  # never reported: unknown, not 0 %


def test_cache_hit_share_over_a_window() -> None:
    old = promtext.parse(TEXT)
    new = promtext.parse(TEXT.replace("} 200", "} 300").replace("} 150", "} 150"))
    rows = {r["model"]: r for r in snapshot.models(old, new)}
    assert rows["a:latest"]["cache_hit_share"] == 0.0  # 100 new prompt tokens, none cached
