"""The bounded ``model`` label values the proxy's metrics may use."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from llama_core.endpoints import MAX_LABEL_LENGTH, NO_MODEL, OTHER

from .inventory import normalize_model

logger = logging.getLogger(__name__)

class ModelLabels:
    """Keeps ``model`` label values bounded whatever names clients send.

    A model the upstream knows (``is_known``) is always its own label. Up to ``max_others``
    further names are admitted first come, first served; every name after that is ``other``.

    Ollama matches names without regard to case and with ``:latest`` as the default tag
    (``Llama3.2``, ``llama3.2`` and ``llama3.2:latest`` are one model), so a name is first made
    ``canonical``: the spelling ``/api/tags`` lists (``listed_name``) when the upstream knows
    it, else the form Ollama compares (``inventory.normalize_model``).
    """

    def __init__(
        self, *, max_others: int = 20, is_known: Callable[[str], bool] | None = None,
        listed_name: Callable[[str], str | None] | None = None,
    ) -> None:
        self.max_others = max_others
        self._is_known = is_known or (lambda name: False)
        self._listed_name = listed_name or (lambda name: None)
        self._others: set[str] = set()
        self._lock = threading.Lock()
        self._warned = False

    def label(self, model: object) -> str:
        if not isinstance(model, str) or not model.strip():
            return NO_MODEL
        name = self.canonical(model)
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

    def canonical(self, model: str) -> str:
        """One spelling per model as Ollama sees it: the listed name, else its compared form."""
        name = model.strip()
        if not name:
            return ""
        try:
            listed = self._listed_name(name)
        except Exception:  # a label must never fail a request
            logger.exception("could not look up model %r", name[:100])
            listed = None
        return listed if listed else normalize_model(name)
