"""Ollama's routes as the three processes name them: endpoint templates and model spellings."""

from __future__ import annotations

# Requests that make the server generate or embed: parsed, timed, admitted through the queue.
INFERENCE_ENDPOINTS = frozenset(
    {
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
    }
)
METADATA_ENDPOINTS = frozenset(
    {
        "/",
        "/api/tags",
        "/api/ps",
        "/api/version",
        "/api/show",
        "/api/pull",
        "/api/push",
        "/api/create",
        "/api/copy",
        "/api/delete",
        "/v1/models",
    }
)
_KNOWN = INFERENCE_ENDPOINTS | METADATA_ENDPOINTS
_PREFIXES = (("/api/blobs/", "/api/blobs/:digest"), ("/v1/models/", "/v1/models/:model"))

OTHER = "other"
NO_MODEL = "none"
MAX_LABEL_LENGTH = 120


def endpoint_template(path: str) -> str:
    """The route template of a request path; anything we do not know is ``other``."""
    path = path.split("?", 1)[0]
    if len(path) > 1:
        path = path.rstrip("/")
    if path in _KNOWN:
        return path
    for prefix, template in _PREFIXES:
        if path.startswith(prefix) and len(path) > len(prefix):
            return template
    return OTHER


def canonical_model(name: str) -> str:
    """Ollama's own spelling: ``llama3`` is ``llama3:latest``."""
    name = name.strip()
    if name and ":" not in name.rsplit("/", 1)[-1]:
        return name + ":latest"
    return name
