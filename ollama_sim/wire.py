"""What every response shape shares: the final statistics and the Wire protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class Stats:
    done_reason: str
    prompt_eval_count: int
    eval_count: int
    total_ns: int = 0
    load_ns: int = 0
    prompt_eval_ns: int = 0
    eval_ns: int = 0
    counts: bool = True
    usage: bool = False
    context: list[int] = field(default_factory=list)
    cached: int | None = None  # X-Sim-Cached: OpenAI prompt_tokens_details.cached_tokens

    def native_metrics(self) -> str:
        if not self.counts:
            return ""
        pairs = (("total_duration", self.total_ns), ("load_duration", self.load_ns),
                 ("prompt_eval_count", self.prompt_eval_count),
                 ("prompt_eval_duration", self.prompt_eval_ns),
                 ("eval_count", self.eval_count), ("eval_duration", self.eval_ns))
        return "".join(f',"{key}":{value}' for key, value in pairs if value)  # Go omitempty

    def openai_usage(self) -> str:
        total = self.prompt_eval_count + self.eval_count
        details = ("" if self.cached is None
                   else f',"prompt_tokens_details":{{"cached_tokens":{self.cached}}}')
        return (f'"usage":{{"prompt_tokens":{self.prompt_eval_count},'
                f'"completion_tokens":{self.eval_count},"total_tokens":{total}{details}}}')


class Wire(Protocol):
    stream_type: str
    body_type: str

    def content(self, token_json: str) -> bytes: ...
    def tail(self, stats: Stats) -> list[bytes]: ...
    def body(self, text_json: str, stats: Stats) -> bytes: ...
    def error(self, message: str) -> bytes: ...
    def swallowed(self, message: str) -> bytes: ...
    def malformed(self) -> bytes: ...
