"""Recorded traffic served as the upstream, chunk by chunk at recorded offsets."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web

from ollama_sim.faults import reset_connection
from ollama_sim.responses import error_response


def _cassettes_module() -> Any:
    """``addons.cassettes``, imported on first use so the simulator otherwise stands alone."""
    from addons import cassettes

    return cassettes


class CassettePlayer:
    """Answers each request with a recorded interaction, chunk by chunk at recorded offsets.

    A request is matched by method, path and body (JSON compared parsed, so key order and
    spacing do not matter), then by method and path alone; each time the first interaction
    not served yet, in recorded order, else the last one again. ``speed`` 2 plays twice as
    fast, 0 sends without waiting.
    """

    def __init__(self, path: str | os.PathLike[str], speed: float) -> None:
        if not speed >= 0:
            raise ValueError(f"speed must be >= 0, got {speed!r}")
        self.cassettes = _cassettes_module()
        try:
            self.interactions = self.cassettes.read(path)
        except OSError as exc:
            raise ValueError(f"cassette {os.fspath(path)}: {exc}") from exc
        self.speed = speed
        self._keys = [(i.request.method, i.request.path,
                       self.cassettes.normalised_body(i.request.body))
                      for i in self.interactions]
        self._served: set[int] = set()

    def match(self, method: str, path: str, body: bytes) -> Any:
        parsed = self.cassettes.normalised_body(body)
        key = (method, path, parsed)
        # A cassette holds requests as their clients sent them; the proxy in front asks an
        # OpenAI stream for its usage (stream_options) on the way here.
        bare = key
        if isinstance(parsed, dict) and "stream_options" in parsed:
            bare = (method, path, {k: v for k, v in parsed.items() if k != "stream_options"})
        for same in (lambda k: k in (key, bare), lambda k: k[:2] == key[:2]):
            found = [n for n, k in enumerate(self._keys) if same(k)]
            if found:
                index = next((n for n in found if n not in self._served), found[-1])
                self._served.add(index)
                return self.interactions[index]
        return None

    async def serve(self, request: web.BaseRequest) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        interaction = self.match(request.method, request.raw_path, await request.read())
        if interaction is None:
            return error_response(
                404, f"no recorded interaction for {request.method} {request.raw_path}", False)
        recorded = interaction.response
        if recorded is None:  # the recorded flow got no answer: neither does this one
            reset_connection(request.transport)
            return web.Response()
        response = web.StreamResponse(status=recorded.status, reason=recorded.reason or None)
        length = False
        for name, value in recorded.headers:
            if name.lower() == "content-length":
                length = True
            elif name.lower() not in self.cassettes.HOP_HEADERS:
                response.headers.add(name, value)
        bodiless = request.method == "HEAD" or recorded.status in (204, 304)
        if length or bodiless:
            response.content_length = 0 if bodiless else len(recorded.body)
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        for chunk in [] if bodiless else recorded.chunks:
            if self.speed:
                delay = sent_at + chunk.offset / self.speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await response.write(chunk.data)  # chunked: one HTTP chunk per recorded chunk
        await response.write_eof()
        return response
