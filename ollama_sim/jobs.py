"""One inference request as the simulator serves it: its settings, counts and report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ollama_sim.faults import Fault


@dataclass(slots=True)
class Job:
    endpoint: str
    model: str
    fault: Fault | None
    tokens: int
    token_rate: float
    ttft: float
    hold: str | None
    started_ns: int
    number: int
    stream: bool = False
    prompt_eval_count: int = 0
    eval_count: int = 0
    cap: int | None = None
    done_reason: str = ""
    first: int = 0
    loaded: bool = False
    recorded: bool = False
    cached: int | None = None  # X-Sim-Cached: prompt tokens reported as cached (OpenAI usage)

    @property
    def mode(self) -> str:
        return self.fault.mode if self.fault else ""

    def report(self, status: int, outcome: str) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "model": self.model, "status": status,
                "stream": self.stream, "fault": str(self.fault) if self.fault else None,
                "prompt_eval_count": self.prompt_eval_count, "eval_count": self.eval_count,
                "done_reason": self.done_reason or None, "load": self.loaded, "outcome": outcome}


GENERATION = {  # endpoint: whether it is a chat
    "/api/generate": False, "/api/chat": True, "/v1/completions": False,
    "/v1/chat/completions": True,
}
EMBEDDING = ("/api/embed", "/api/embeddings", "/v1/embeddings")
