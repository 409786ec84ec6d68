"""What models the upstream Ollama has and has loaded, polled in the background.

``InventoryPoller`` asks ``/api/version``, ``/api/ps`` and ``/api/tags`` every ``interval``
seconds on a daemon thread (never on the request path, never on a scrape);
``InventoryCollector`` exposes the last poll to Prometheus.

A poll succeeds only when all three answer with well-formed JSON. Anything else (refused
connection, timeout, HTTP error, a body that is not the JSON Ollama sends) counts as the
upstream being down: ``up`` is False and ``loaded`` is cleared, while ``known`` and ``version``
keep their last good values so the label guard does not forget models during an outage.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from llama_core import catalogue, exposition

from .polling import Poller
from .upstream_client import UpstreamClient, UpstreamError

logger = logging.getLogger(__name__)

_DEFAULT_REGISTRY_PREFIXES = ("registry.ollama.ai/", "library/")


def normalize_model(name: str) -> str:
    """The form Ollama compares names in: ``llama3`` and ``Llama3:latest`` are one model."""
    # Asked several times per request (the label guard, the listed name): a name of usual
    # length is worked out once. Longer ones are not kept: the cache stays small.
    return _normalized(name) if len(name) <= _CACHED_NAME else _normalize(name)


_CACHED_NAME = 256


@functools.lru_cache(maxsize=1024)
def _normalized(name: str) -> str:
    return _normalize(name)


def _normalize(name: str) -> str:
    name = name.strip().casefold()
    for prefix in _DEFAULT_REGISTRY_PREFIXES:
        name = name.removeprefix(prefix)
    # A tag follows the last path segment; a ':' before a '/' is a registry's port.
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedModel:
    """One entry of ``/api/ps``: a model Ollama holds in memory."""

    name: str
    size: int | None = None
    size_vram: int | None = None
    expires_at: str | None = None
    parameter_size: str | None = None
    quantization_level: str | None = None


@dataclass(frozen=True, slots=True)
class InventoryState:
    """The result of the last poll, swapped in whole so readers see one consistent poll."""

    up: bool | None = None
    version: str | None = None
    loaded: dict[str, LoadedModel] = field(default_factory=dict)
    known: frozenset[str] = frozenset()
    known_normalized: frozenset[str] = frozenset()
    # normalize_model(name) -> the name as /api/tags (or /api/ps) lists it.
    listed: dict[str, str] = field(default_factory=dict)


def _object(body: bytes, path: str) -> dict[str, Any]:
    data = json.loads(body)  # JSONDecodeError and UnicodeDecodeError are ValueErrors
    if not isinstance(data, dict):
        raise ValueError(f"{path} returned {type(data).__name__}, not a JSON object")
    return data


def _models(body: bytes, path: str) -> list[dict[str, Any]]:
    models = _object(body, path).get("models")
    if models is None:  # Ollama sends "models": null when there are none
        return []
    if not isinstance(models, list):
        raise ValueError(f"{path} returned 'models' of type {type(models).__name__}")
    return [m for m in models if isinstance(m, dict) and isinstance(_name(m), str)]


def _name(entry: dict[str, Any]) -> Any:
    return entry.get("name") or entry.get("model")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_version(body: bytes) -> str:
    version = _object(body, "/api/version").get("version")
    if not isinstance(version, str):
        raise ValueError("/api/version has no 'version' string")
    return version


def parse_ps(body: bytes) -> dict[str, LoadedModel]:
    loaded = {}
    for entry in _models(body, "/api/ps"):
        details = entry.get("details")
        details = details if isinstance(details, dict) else {}
        name = _name(entry)
        loaded[name] = LoadedModel(
            name=name,
            size=_int(entry.get("size")),
            size_vram=_int(entry.get("size_vram")),
            expires_at=_str(entry.get("expires_at")),
            parameter_size=_str(details.get("parameter_size")),
            quantization_level=_str(details.get("quantization_level")),
        )
    return loaded


def parse_tags(body: bytes) -> frozenset[str]:
    return frozenset(_name(entry) for entry in _models(body, "/api/tags"))


class InventoryPoller(Poller):
    """Polls an Ollama server for its version, loaded models and local models."""

    thread_name = "inventory-poller"

    def __init__(
        self,
        base_url: str,
        *,
        interval: float = 5.0,
        timeout: float = 2.0,
        client: UpstreamClient | None = None,
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError(f"interval and timeout must be > 0, got {interval!r}, {timeout!r}")
        super().__init__(interval=interval)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client = client if client is not None else UpstreamClient()
        self._state = InventoryState()
        self._poll_lock = threading.Lock()

    # -- state (each read sees one whole poll) ---------------------------------------------

    @property
    def state(self) -> InventoryState:
        return self._state

    @property
    def up(self) -> bool | None:
        return self._state.up

    @property
    def version(self) -> str | None:
        return self._state.version

    @property
    def loaded(self) -> dict[str, LoadedModel]:
        return dict(self._state.loaded)

    @property
    def known(self) -> frozenset[str]:
        return self._state.known

    def is_known(self, model: str) -> bool:
        return normalize_model(model) in self._state.known_normalized

    def listed_name(self, model: str) -> str | None:
        """The name Ollama lists for ``model`` (``Llama3.2`` -> ``llama3.2:latest``), or None."""
        return self._state.listed.get(normalize_model(model))

    # -- polling ---------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Poll the upstream now and update the state; never raises for upstream trouble."""
        with self._poll_lock:  # a test's poll and the thread's never interleave
            super().poll_once()

    def _get(self, path: str) -> bytes:
        answer = self._client.get(self.base_url + path, timeout=self.timeout)
        if answer.status != 200:
            raise UpstreamError(f"answered HTTP {answer.status}")
        return answer.body

    def _poll(self) -> None:
        path = ""
        try:
            path = "/api/version"
            version = parse_version(self._get(path))
            path = "/api/ps"
            loaded = parse_ps(self._get(path))
            path = "/api/tags"
            tags = parse_tags(self._get(path))
        except (UpstreamError, ValueError) as exc:  # no answer, an error, or not Ollama's JSON
            self._went_down(f"{path}: {str(exc) or type(exc).__name__}")
            return
        known = tags | frozenset(loaded)
        was = self._state.up
        # /api/tags first: its spelling wins over /api/ps's for the same model.
        listed = {normalize_model(m): m for m in sorted(loaded)}
        listed.update({normalize_model(m): m for m in sorted(tags)})
        self._state = InventoryState(
            up=True,
            version=version,
            loaded=loaded,
            known=known,
            known_normalized=frozenset(listed),
            listed=listed,
        )
        if was is not True:
            logger.info(
                "upstream %s is %s: Ollama %s, %d model(s), %d loaded",
                self.base_url, "up" if was is None else "back", version, len(known), len(loaded),
            )

    def _went_down(self, reason: str) -> None:
        was = self._state.up
        self._state = InventoryState(
            up=False,
            version=self._state.version,
            known=self._state.known,
            known_normalized=self._state.known_normalized,
            listed=self._state.listed,
        )
        if was is not False:  # one warning per outage, not one per poll
            logger.warning("upstream %s is down: %s", self.base_url, reason)
        else:
            logger.debug("upstream %s still down: %s", self.base_url, reason)

    def stop(self, join_timeout: float | None = None) -> None:
        """Stop the thread; immediate unless a poll is in flight (then at most its timeouts)."""
        super().stop(3 * self.timeout + 1.0 if join_timeout is None else join_timeout)


def epoch_seconds(stamp: str | None) -> float | None:
    """Ollama's RFC 3339 ``expires_at`` as Unix time; None when absent, odd or "never".

    A model kept forever (``keep_alive: -1``) reports a time far in the future or Go's zero
    time; neither is an unload time worth showing.
    """
    if not stamp:
        return None
    try:
        value = datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None
    return value if 0 < value < 4102444800 else None  # before 2100-01-01


class InventoryCollector:
    """Prometheus collector for the last poll of an ``InventoryPoller``."""

    def __init__(self, poller: InventoryPoller) -> None:
        self._poller = poller

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families(InventoryState(), describe=True)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families(self._poller.state, describe=False)

    def _families(self, state: InventoryState, *, describe: bool) -> Iterator[GaugeMetricFamily]:
        if describe or state.up is not None:
            yield exposition.gauge_family(
                catalogue.UPSTREAM_UP, None if describe else int(bool(state.up))
            )
        if describe or state.version is not None:
            info = exposition.gauge_family(catalogue.UPSTREAM_INFO)
            if state.version is not None:
                info.add_metric([state.version], 1)
            yield info
        loaded = exposition.gauge_family(catalogue.MODEL_LOADED)
        vram = exposition.gauge_family(catalogue.MODEL_VRAM)
        size = exposition.gauge_family(catalogue.MODEL_SIZE)
        expires = exposition.gauge_family(catalogue.MODEL_EXPIRES_AT)
        for name, model in sorted(state.loaded.items()):
            loaded.add_metric([name], 1)
            if model.size_vram is not None:
                vram.add_metric([name], model.size_vram)
            if model.size is not None:
                size.add_metric([name], model.size)
            unload_at = epoch_seconds(model.expires_at)
            if unload_at is not None:
                expires.add_metric([name], unload_at)
        for family in (loaded, vram, size, expires):
            if describe or family.samples:
                yield family
