"""Which Ollama route a request is, and the bounded label values the metrics may use."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

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


class ModelLabels:
    """Keeps ``model`` label values bounded whatever names clients send.

    A model the upstream knows (``is_known``) is always its own label. Up to ``max_others``
    further names are admitted first come, first served; every name after that is ``other``.
    """

    def __init__(
        self, *, max_others: int = 20, is_known: Callable[[str], bool] | None = None
    ) -> None:
        self.max_others = max_others
        self._is_known = is_known or (lambda name: False)
        self._others: set[str] = set()
        self._lock = threading.Lock()
        self._warned = False

    def label(self, model: object) -> str:
        if not isinstance(model, str) or not model.strip():
            return NO_MODEL
        name = canonical_model(model)
        if len(name) > MAX_LABEL_LENGTH or not name.isprintable():
            return OTHER
        if name in self._others or self._is_known(name):
            return name
        with self._lock:
            if len(self._others) < self.max_others:
                self._others.add(name)
                return name
        if not self._warned:
            self._warned = True
            logger.warning(
                "more than %d model names unknown to the upstream; further ones are labelled %r",
                self.max_others,
                OTHER,
            )
        return OTHER
