"""The recorded Ollama traffic in tests/fixtures/ollama-recorded, and what each one reports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The folder of recordings; its README says where each one came from.
RECORDINGS = Path(__file__).resolve().parent / "fixtures" / "ollama-recorded"


@dataclass(frozen=True)
class Recording:
    name: str
    method: str
    path: str
    request_headers: dict[str, str]
    request_body: Any
    status: int
    response_headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.response_headers.get("content-type", "")


def load(name: str) -> Recording:
    data = json.loads((RECORDINGS / name).read_text(encoding="utf-8"))
    req, resp = data["request"], data["response"]
    return Recording(
        name=name,
        method=req["method"],
        path=req["path"],
        request_headers=req["headers"],
        request_body=req["body"],
        status=resp["status"],
        response_headers={k.lower(): v for k, v in resp["headers"].items()},
        body=resp["body"].encode("utf-8"),
    )


@dataclass(frozen=True)
class Expected:
    """What the recording's server reported, as the fixtures README states it."""

    prompt_tokens: int | None
    generated_tokens: int | None
    content_chunks: int | None  # content-carrying chunks of a stream
    reported: bool = True


# From tests/fixtures/ollama-recorded/README.md and the recorded final statistics.
EXPECTED: dict[str, Expected] = {
    "01-api-chat-stream.json": Expected(16, 22, 21),
    "02-api-chat-stream-length.json": Expected(15, 50, 50),
    "03-api-chat-stream-toolcalls.json": Expected(166, 266, 211),
    "04-api-chat-nostream-toolcalls.json": Expected(205, 28, None),
    "05-api-generate-stream.json": Expected(16, 22, 21),
    "06-api-generate-nostream.json": Expected(17, 63, None),
    "07-api-embed-nostream.json": Expected(2, None, None),
    "08-api-embeddings-nostream.json": Expected(None, None, None, reported=False),
    "09-v1-chat-completions-stream.json": Expected(17, 289, 284),
    "10-v1-chat-completions-stream-nousage.json": Expected(None, 22, 22, reported=False),
    "11-v1-chat-completions-nostream-toolcalls.json": Expected(195, 144, None),
    "12-api-chat-nostream-error400.json": Expected(None, None, None, reported=False),
    "13-api-chat-stream-error400.json": Expected(None, None, None, reported=False),
    "14-v1-chat-nostream-error404.json": Expected(None, None, None, reported=False),
    "15-api-tags-nostream.json": Expected(None, None, None, reported=False),
    "16-api-show-nostream.json": Expected(None, None, None, reported=False),
}
ALL = sorted(EXPECTED)
