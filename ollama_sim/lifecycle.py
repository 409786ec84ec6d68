"""Load and unload answers: no prompt or messages loads the model, keep_alive 0 unloads it.

As ``server/routes.go`` (GenerateHandler, ChatHandler, EmbedHandler, EmbeddingsHandler) has
done from 0.6 to 0.32.15: one non-streamed ``c.JSON`` object whatever ``stream`` says
(``application/json; charset=utf-8``, no trailing newline), ``done_reason`` ``load`` or
``unload``, no counts and no durations; ``model`` echoes the request's spelling. The chat
answer's key order follows ``versions.Behaviour.chat_done_first`` (0.12.0), and what counts
as "keep_alive 0" follows ``unload_exact_zero`` (0.11.8).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ollama_sim import clock
from ollama_sim.encoding import go_json, rfc3339
from ollama_sim.models import parse_keep_alive
from ollama_sim.responses import NATIVE_JSON, OPENAI_JSON
from ollama_sim.versions import Behaviour


def is_unload(keep_alive: Any, behaviour: Behaviour) -> bool:
    """Whether ``keep_alive`` asks to unload: exactly 0 since 0.11.8, under a second before."""
    if keep_alive is None:
        return False  # absent or null: the pointer stays nil, a load
    seconds = parse_keep_alive(keep_alive, 300.0)  # 400 for what Go cannot parse
    if seconds < 0 or seconds > 1e9:
        return False
    if behaviour.unload_exact_zero:
        return int(seconds * 1e9) == 0  # time.Duration(t * float64(time.Second)) == 0
    return int(seconds) == 0  # int(req.KeepAlive.Seconds()) == 0


def native_answer(model: str, chat: bool, action: str, behaviour: Behaviour) -> web.Response:
    """The whole answer of /api/generate or /api/chat to a load or an unload."""
    head = f'{{"model":{go_json(model)},"created_at":"{rfc3339(clock.time_ns())}"'
    if not chat:
        body = f'{head},"response":"","done":true,"done_reason":"{action}"}}'
    elif behaviour.chat_done_first:
        body = (f'{head},"message":{{"role":"assistant","content":""}},"done":true,'
                f'"done_reason":"{action}"}}')
    else:
        body = (f'{head},"message":{{"role":"assistant","content":""}},'
                f'"done_reason":"{action}","done":true}}')
    return web.Response(body=body.encode(), headers={"Content-Type": NATIVE_JSON})


def completion_answer(model: str, completion_id: str, stream: bool) -> web.Response:
    """/v1/completions with an empty prompt: the load answer through Ollama's CompleteWriter.

    Non-streamed, the usual completion object with ``"finish_reason":"load"`` and zero usage;
    streamed, that one chunk (the writer takes the single load object for a chunk), then
    ``data: [DONE]``.
    """
    now = clock.seconds()
    choice = '[{"text":"","index":0,"finish_reason":"load"}]'
    meta = f'"model":{go_json(model)},"system_fingerprint":"fp_ollama"'
    if not stream:
        body = (f'{{"id":"{completion_id}","object":"text_completion","created":{now},{meta},'
                f'"choices":{choice},"usage":{{"prompt_tokens":0,"completion_tokens":0,'
                f'"total_tokens":0}}}}\n')
        return web.Response(body=body.encode(), headers={"Content-Type": OPENAI_JSON})
    chunk = (f'data: {{"id":"{completion_id}","object":"text_completion","created":{now},'
             f'"choices":{choice},{meta}}}\n\ndata: [DONE]\n\n')
    return web.Response(body=chunk.encode(), headers={"Content-Type": "text/event-stream"})


def embed_answer(model: str, legacy: bool) -> web.Response:
    """/api/embed with no input (``{"model":…,"embeddings":[]}``), /api/embeddings with none."""
    body = '{"embedding":[]}' if legacy else f'{{"model":{go_json(model)},"embeddings":[]}}'
    return web.Response(body=body.encode(), headers={"Content-Type": NATIVE_JSON})
