"""OpenAI's wire format: SSE chunks and JSON bodies of /v1/chat/completions and /v1/completions.

The chat stream is Ollama's writer of 0.6.0 to 0.32.5 (role and content in every delta, the
finish reason on the last content chunk, then with ``include_usage`` one ``"choices":[]``
event); the completions stream is Ollama's writer of every version from 0.6.0 to 0.32.15,
which with ``include_usage`` also ends every chunk with an all-zero usage
(middleware/openai.go ``CompleteWriter``: ``c.Usage = &openai.Usage{}``).
"""

from __future__ import annotations

from ollama_sim import clock
from ollama_sim.responses import OPENAI_JSON, openai_error
from ollama_sim.wire import Stats


class OpenAIChat:
    """SSE chunks and bodies of /v1/chat/completions, in the field order of Ollama's structs."""

    stream_type, body_type = "text/event-stream", OPENAI_JSON
    chunk_object, body_object = "chat.completion.chunk", "chat.completion"

    def __init__(self, model_json: str, completion_id: str, include_usage: bool = False) -> None:
        self._include_usage = include_usage
        self._id = f'"id":"{completion_id}","object":"{self.chunk_object}","created":'
        self._body_id = f'{{"id":"{completion_id}","object":"{self.body_object}","created":'
        self._meta = f'"model":{model_json},"system_fingerprint":"fp_ollama"'

    def _chunk(self, choice: str, usage: str = "") -> str:
        now = clock.seconds()
        return f'data: {{{self._id}{now},{self._meta},"choices":[{choice}]{usage}}}\n\n'

    @staticmethod
    def _choice(text_json: str, finish: str) -> str:
        return (f'{{"index":0,"delta":{{"role":"assistant","content":{text_json}}},'
                f'"finish_reason":{finish}}}')

    def content(self, token_json: str) -> bytes:
        return self._chunk(self._choice(token_json, "null")).encode()

    def tail(self, stats: Stats) -> list[bytes]:
        pieces = [self._chunk(self._choice('""', f'"{stats.done_reason}"'))]
        if stats.usage and stats.counts:
            pieces.append(self._chunk("", "," + stats.openai_usage()))
        pieces.append("data: [DONE]\n\n")
        return [piece.encode() for piece in pieces]

    def body(self, text_json: str, stats: Stats) -> bytes:
        choice = (f'{{"index":0,"message":{{"role":"assistant","content":{text_json}}},'
                  f'"finish_reason":"{stats.done_reason}"}}')
        usage = "," + stats.openai_usage() if stats.counts else ""
        return (f'{self._body_id}{clock.seconds()},{self._meta},"choices":[{choice}]{usage}}}\n'
                ).encode()

    def error(self, message: str) -> bytes:
        return b"data: " + openai_error(message, "api_error").rstrip(b"\n") + b"\n\n"

    def swallowed(self, message: str) -> bytes:
        """What Ollama's writer makes of an ``{"error":...}`` line (every version): an empty
        chunk; the stream then ends without a finish chunk, usage or ``[DONE]``."""
        return self.content('""')

    def malformed(self) -> bytes:
        return b'data: {"id":"simulated malformed line\n\n'


class OpenAICompletion(OpenAIChat):
    """SSE chunks and bodies of /v1/completions (its chunks put choices before model)."""

    chunk_object = body_object = "text_completion"

    def _chunk(self, choice: str, usage: str = "") -> str:
        now = clock.seconds()
        if not usage and self._include_usage:  # Ollama's placeholder on every other chunk
            usage = ',"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}'
        return f'data: {{{self._id}{now},"choices":[{choice}],{self._meta}{usage}}}\n\n'

    @staticmethod
    def _choice(text_json: str, finish: str) -> str:
        return f'{{"text":{text_json},"index":0,"finish_reason":{finish}}}'

    def body(self, text_json: str, stats: Stats) -> bytes:
        choice = self._choice(text_json, f'"{stats.done_reason}"')
        usage = "," + stats.openai_usage() if stats.counts else ""
        return (f'{self._body_id}{clock.seconds()},{self._meta},"choices":[{choice}]{usage}}}\n'
                ).encode()
