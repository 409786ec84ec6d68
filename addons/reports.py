"""What a server reported about a request: ``Usage``, from Ollama's final chunk or a ``usage``.

Bytes are not read here: the parsers (``addons/streams.py``) hand over decoded JSON objects.
Which fields each Ollama version writes, and why a count is or is not taken, is in
docs/ollama-wire.md.
"""

from __future__ import annotations

from dataclasses import dataclass

NS = 1e-9


@dataclass(slots=True)
class Usage:
    """What the server reported about a request (native final chunk or OpenAI ``usage``)."""

    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    total_duration_s: float | None = None
    load_duration_s: float | None = None
    prompt_eval_duration_s: float | None = None
    eval_duration_s: float | None = None
    cached_prompt_tokens: int | None = None  # of prompt_tokens, served from a cache


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(value: object) -> float | None:
    return value * NS if isinstance(value, int | float) and not isinstance(value, bool) else None


def native_usage(obj: dict) -> Usage:
    """The statistics of an Ollama final chunk; every field is optional."""
    return Usage(
        prompt_tokens=_int(obj.get("prompt_eval_count")),
        generated_tokens=_int(obj.get("eval_count")),
        total_duration_s=_seconds(obj.get("total_duration")),
        load_duration_s=_seconds(obj.get("load_duration")),
        prompt_eval_duration_s=_seconds(obj.get("prompt_eval_duration")),
        eval_duration_s=_seconds(obj.get("eval_duration")),
    )


def openai_usage(usage: object) -> Usage | None:
    """OpenAI ``usage`` (chat/completions/embeddings) or Responses/Anthropic token fields.

    Cached prompt tokens, where the server reports them (docs/ollama-wire.md): OpenAI's
    ``prompt_tokens_details.cached_tokens`` (part of ``prompt_tokens``); Anthropic's
    ``cache_read_input_tokens``, which Anthropic counts apart from ``input_tokens``, so the
    prompt is their sum (with ``cache_creation_input_tokens``); Responses'
    ``input_tokens_details.cached_tokens``, except a 0 there, which Ollama hard-codes
    (0.14.2 to 0.32.15: "TODO: wire through the actual values") and which says nothing.
    """
    if not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("prompt_tokens"))
    cached = _detail(usage.get("prompt_tokens_details"))
    if prompt is None:
        prompt = _int(usage.get("input_tokens"))
        cached = _detail(usage.get("input_tokens_details")) or None  # 0: Ollama's placeholder
        read = _int(usage.get("cache_read_input_tokens"))
        if read is not None:
            cached = read
            created = _int(usage.get("cache_creation_input_tokens")) or 0
            prompt = (prompt or 0) + read + created
    generated = _int(usage.get("completion_tokens"))
    if generated is None:
        generated = _int(usage.get("output_tokens"))
    return Usage(prompt_tokens=prompt, generated_tokens=generated, cached_prompt_tokens=cached)


def _detail(details: object) -> int | None:
    return _int(details.get("cached_tokens")) if isinstance(details, dict) else None


def placeholder_usage(usage: object) -> bool:
    """Ollama's /v1/completions writer puts an all-zero usage on every chunk once
    ``include_usage`` is set (0.6.0 to 0.32.15); the real one follows with ``choices: []``."""
    return isinstance(usage, dict) and usage.get("prompt_tokens") == 0 and all(
        v == 0 for v in usage.values())
