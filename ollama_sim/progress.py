"""/api/pull, /api/push and /api/create: NDJSON progress, and the error line after it.

As Ollama's ``streamResponse`` writes them (server/routes.go): ``application/x-ndjson``,
one ``json.Marshal`` line per step, flushed; the last line ``{"status":"success"}``. A
failure once a line went out is a last line ``{"error":"..."}`` with status 200 (0.12.6 on;
before it the same line, create's bad requests with a ``"status":400`` key too), which is
what the fault ``error_in_stream`` sends after the first progress lines. Pulling a model
the simulator does not list fails like Ollama: ``pulling manifest``, then
``{"error":"pull model manifest: file does not exist"}``. ``"stream": false`` (default true)
answers one ``{"status":"success"}`` (Content-Type ``application/json``) at the end, or 500
with ``{"error":...}`` (``waitForStream``). Nothing is pulled: the models stay as they are.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from ollama_sim import compressed
from ollama_sim.encoding import go_json
from ollama_sim.faults import Fault
from ollama_sim.models import Models
from ollama_sim.responses import RequestError, error_response, read_json

PATHS = ("/api/pull", "/api/push", "/api/create")
STEPS = 8  # progress lines per layer
LAYER = 2_019_377_376  # bytes of the simulated layer


class Progress:
    """Serves the three progress routes."""

    def __init__(self, models: Models) -> None:
        self._models = models

    async def serve(self, request: web.BaseRequest, fault: Fault | None) -> web.StreamResponse:
        body = await read_json(request)
        name = str(body.get("model") or body.get("name") or "")
        if not name:
            raise RequestError(400, "model is required")
        lines, error = self._lines(request.path, name)
        if fault is not None and fault.mode == "error_in_stream":
            lines, error = lines[:3], f"simulated error_in_stream during {request.path}"
        if body.get("stream", True) is False:
            if error is not None:
                return error_response(500, error, False)
            return web.Response(body=b'{"status":"success"}',
                                headers={"Content-Type": "application/json"})
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        coding = compressed.requested(request.headers)
        encode = compressed.encoder(coding) if coding else None
        if coding:
            resp.headers["Content-Encoding"] = coding
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        out = [*lines, {"error": error} if error is not None else {"status": "success"}]
        for i, line in enumerate(out):
            data = (go_json(line) + "\n").encode()
            await resp.write(encode(data, i == len(out) - 1) if encode else data)
        return resp

    def _lines(self, path: str, name: str) -> tuple[list[dict[str, Any]], str | None]:
        digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
        short = digest[7:19]
        if path == "/api/pull":
            if self._models.resolve(name) is None:
                return [{"status": "pulling manifest"}], "pull model manifest: file does not exist"
            steps = [{"status": f"pulling {short}", "digest": digest, "total": LAYER,
                      **({"completed": LAYER * i // STEPS} if i else {})}
                     for i in range(STEPS + 1)]
            return [{"status": "pulling manifest"}, *steps, {"status": "verifying sha256 digest"},
                    {"status": "writing manifest"}], None
        if path == "/api/push":
            steps = [{"status": f"pushing {short}", "digest": digest, "total": LAYER,
                      **({"completed": LAYER * i // STEPS} if i else {})}
                     for i in range(STEPS + 1)]
            return [{"status": "retrieving manifest"}, *steps,
                    {"status": "pushing manifest"}], None
        return [{"status": "gathering model components"},
                {"status": f"using existing layer {digest}"},
                {"status": "writing manifest"}], None
