"""Ollama- and OpenAI-shaped JSON responses and errors, and reading a request's JSON body."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ollama_sim.compressed import decoded_request
from ollama_sim.encoding import go_json

NATIVE_JSON = "application/json; charset=utf-8"
OPENAI_JSON = "application/json"
_STATUS_MESSAGES = {
    500: "llama runner process has terminated: exit status 2",
    503: "server busy, please try again.  maximum pending requests exceeded",
}


class RequestError(Exception):
    """A request the simulator answers with an error status, as Ollama would."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def openai_error(message: str, kind: str) -> bytes:
    error = {"message": message, "type": kind, "param": None, "code": None}
    return (go_json({"error": error}) + "\n").encode()


def error_response(status: int, message: str, openai: bool) -> web.Response:
    if openai:
        kind = "invalid_request_error" if status == 400 else "api_error"
        return web.Response(status=status, body=openai_error(message, kind),
                            headers={"Content-Type": OPENAI_JSON})
    return web.Response(status=status, body=go_json({"error": message}).encode(),
                        headers={"Content-Type": NATIVE_JSON})


def json_response(value: object, openai: bool = False) -> web.Response:
    body = go_json(value) + ("\n" if openai else "")
    return web.Response(body=body.encode(),
                        headers={"Content-Type": OPENAI_JSON if openai else NATIVE_JSON})


def not_found() -> web.Response:
    return web.Response(status=404, body=b"404 page not found",
                        headers={"Content-Type": "text/plain"})


def status_message(status: int) -> str:
    return _STATUS_MESSAGES.get(status, f"simulated status {status}")


async def read_json(request: web.BaseRequest) -> dict[str, Any]:
    """The request body as Ollama's Go decoder reads it (``godecode``), or a Go-worded 400.

    A zstd body on /v1 is decoded first, as Ollama's handler does (0.18.0 on)."""
    from ollama_sim.godecode import decode  # it raises this module's RequestError

    raw = await request.read()
    try:
        raw = decoded_request(raw, request.headers.get("Content-Encoding", ""), request.path)
    except ValueError as exc:
        raise RequestError(400, str(exc)) from exc
    return decode(raw)
