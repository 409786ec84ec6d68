"""The simulated models: what each says about itself, which are loaded and until when."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ollama_sim.encoding import go_json
from ollama_sim.responses import RequestError

DEFAULT_MODELS = ("llama3.2:latest", "qwen3:latest", "nomic-embed-text:latest")
FOREVER = 9e9  # seconds; what Ollama shows for a negative keep_alive is centuries away


def parse_keep_alive(value: object, default: float) -> float:
    """Seconds a model stays loaded; Ollama takes a number of seconds or a Go duration."""
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", value):
        units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
        seconds = sum(float(n) * units[u] for n, _, u in re.findall(
            r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", value)) * (-1 if value[0] == "-" else 1)
    else:
        raise RequestError(400, f"time: invalid duration {go_json(value)}")
    return FOREVER if seconds < 0 else seconds


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What /api/tags, /api/show and /api/ps say about one model."""

    name: str
    family: str
    parameter_size: str
    quantization: str
    size: int
    embedding_length: int
    embedding_only: bool
    digest: str
    modified_at: str

    @classmethod
    def describe(cls, name: str) -> ModelInfo:
        base = name.split(":", 1)[0]
        known = {  # family, parameters, quantization, file size, embedding length
            "llama3.2": ("llama", "3.2B", "Q4_K_M", 2_019_393_189, 3072),
            "llama3.1": ("llama", "8.0B", "Q4_K_M", 4_920_753_328, 4096),
            "qwen3": ("qwen3", "8.2B", "Q4_K_M", 5_225_388_164, 4096),
            "gemma3": ("gemma3", "4.3B", "Q4_K_M", 3_338_801_804, 2560),
            "nomic-embed-text": ("nomic-bert", "137M", "F16", 274_302_450, 768),
            "all-minilm": ("bert", "23M", "F16", 45_960_996, 384),
        }
        guess = (re.sub(r"[^a-z].*", "", base) or "llama", "7B", "Q4_K_M", 4_109_865_159, 4096)
        family, params, quant, size, dims = known.get(base, guess)
        digest = hashlib.sha256(name.encode()).hexdigest()
        embedding_only = "bert" in family or "embed" in base
        return cls(name, family, params, quant, size, dims, embedding_only, digest,
                   "2025-05-16T00:12:47.040277964Z")

    def details(self) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": self.family,
                "families": [self.family], "parameter_size": self.parameter_size,
                "quantization_level": self.quantization}


@dataclass(slots=True)
class _Residency:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    active: int = 0
    expires: float = 0.0  # time.monotonic()

    def loaded(self, now: float) -> bool:
        return self.active > 0 or self.expires > now


class Models:
    """The configured models, which of them are loaded, and for how long."""

    def __init__(self, names: Sequence[str], load_delay: float) -> None:
        self.infos = {name: ModelInfo.describe(name) for name in names}
        self._lower = {name.lower(): info for name, info in self.infos.items()}
        self._residency = {name: _Residency() for name in names}
        self._load_delay = load_delay

    def resolve(self, name: str) -> ModelInfo | None:
        """The model a name means to Ollama (``model.ParseName`` + ``getExistingName``).

        Case does not matter, the tag defaults to ``latest``, the default registry and
        namespace may be spelled out, and spaces around it are trimmed (0.17.6 and later).
        """
        key = name.strip().lower()
        for prefix in ("registry.ollama.ai/", "library/"):
            key = key.removeprefix(prefix)
        return self._lower.get(key) or self._lower.get(f"{key}:latest")

    async def acquire(self, info: ModelInfo) -> tuple[int, bool]:
        """Load the model if needed; return (nanoseconds waited, whether this call loaded it)."""
        start = time.perf_counter_ns()
        residency = self._residency[info.name]
        loaded_here = False
        if not residency.loaded(time.monotonic()):
            async with residency.lock:
                if not residency.loaded(time.monotonic()):
                    if self._load_delay > 0:
                        await asyncio.sleep(self._load_delay)
                    loaded_here = True
        residency.active += 1
        return time.perf_counter_ns() - start, loaded_here

    def release(self, info: ModelInfo, keep_alive: float) -> None:
        residency = self._residency[info.name]
        residency.active -= 1
        residency.expires = time.monotonic() + keep_alive

    def new_locks(self) -> None:
        for residency in self._residency.values():
            residency.lock = asyncio.Lock()

    def unload(self, info: ModelInfo) -> None:
        self._residency[info.name].expires = 0.0

    def loaded(self) -> list[tuple[ModelInfo, float]]:
        """Loaded models with their expiry as epoch seconds."""
        now, wall = time.monotonic(), time.time()
        return [(self.infos[name], wall + max(r.expires - now, 0.0))
                for name, r in self._residency.items() if r.loaded(now)]


def v1_model_entry(info: ModelInfo) -> dict[str, Any]:
    return {"id": info.name, "object": "model", "created": 1747354367, "owned_by": "library"}
