"""Ollama's native wire format: NDJSON chunks and JSON bodies of /api/chat and /api/generate."""

from __future__ import annotations

from ollama_sim import clock
from ollama_sim.encoding import go_json, rfc3339
from ollama_sim.responses import NATIVE_JSON
from ollama_sim.wire import Stats


class NativeChat:
    stream_type, body_type = "application/x-ndjson", NATIVE_JSON

    def __init__(self, model_json: str) -> None:
        self._head = '{"model":' + model_json + ',"created_at":"'
        self._mid = '","message":{"role":"assistant","content":'

    def content(self, token_json: str) -> bytes:
        now = rfc3339(clock.time_ns())
        return f'{self._head}{now}{self._mid}{token_json}}},"done":false}}\n'.encode()

    def body(self, text_json: str, stats: Stats) -> bytes:
        return (f'{self._head}{rfc3339(clock.time_ns())}{self._mid}{text_json}}},'
                f'"done_reason":"{stats.done_reason}","done":true{stats.native_metrics()}}}').encode()

    def tail(self, stats: Stats) -> list[bytes]:
        return [self.body('""', stats) + b"\n"]

    def error(self, message: str) -> bytes:
        return (go_json({"error": message}) + "\n").encode()

    def swallowed(self, message: str) -> bytes:
        return self.error(message)  # the native stream shows the error line as it is

    def malformed(self) -> bytes:
        return b'{"model":"simulated malformed line\n'


class NativeGenerate(NativeChat):
    def __init__(self, model_json: str) -> None:
        self._head = '{"model":' + model_json + ',"created_at":"'
        self._mid = '","response":'

    def content(self, token_json: str) -> bytes:
        now = rfc3339(clock.time_ns())
        return f'{self._head}{now}{self._mid}{token_json},"done":false}}\n'.encode()

    def body(self, text_json: str, stats: Stats) -> bytes:
        context = ",".join(map(str, stats.context))
        return (f'{self._head}{rfc3339(clock.time_ns())}{self._mid}{text_json},"done":true,'
                f'"done_reason":"{stats.done_reason}","context":[{context}]'
                f'{stats.native_metrics()}}}').encode()
