"""The inference endpoints (generation and embeddings): from a request to a job to bytes."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
import zlib
from typing import Any

from aiohttp import web

from ollama_sim import clock, compressed
from ollama_sim.encoding import VOCAB, embedding, go_json, words
from ollama_sim.faults import Fault
from ollama_sim.jobs import GENERATION, Job
from ollama_sim.lifecycle import completion_answer, embed_answer, is_unload, native_answer
from ollama_sim.models import ModelInfo, Models, parse_keep_alive
from ollama_sim.native import NativeChat, NativeGenerate
from ollama_sim.observed import Holds, Observed
from ollama_sim.openai_compat import OpenAIChat, OpenAICompletion
from ollama_sim.responses import (
    NATIVE_JSON,
    OPENAI_JSON,
    RequestError,
    error_response,
    read_json,
    status_message,
)
from ollama_sim.streaming import Streamer
from ollama_sim.versions import Behaviour
from ollama_sim.wire import Wire


class Inference:
    """Serves /api/generate, /api/chat, /api/embed(dings) and their /v1 twins from the models."""

    def __init__(self, *, models: Models, observed: Observed, holds: Holds, tokens: int,
                 token_rate: float, ttft: float, keep_alive: float, seed: int,
                 behaviour: Behaviour) -> None:
        self._models, self._observed = models, observed
        self._behaviour = behaviour
        self._tokens, self._token_rate, self._ttft = tokens, token_rate, ttft
        self._keep_alive, self._seed = keep_alive, seed
        self._counter = itertools.count(1)
        self._jobs = itertools.count()
        self._streamer = Streamer(observed, holds)

    async def serve(self, request: web.BaseRequest, fault: Fault | None,
                    openai: bool) -> web.StreamResponse:
        """Answer one inference request (its path in GENERATION or EMBEDDING) and report it."""
        handler = self._generation if request.path in GENERATION else self._embeddings
        job = Job(request.path, "", fault, self._tokens, self._token_rate, self._ttft,
                  request.headers.get("X-Sim-Hold"), time.perf_counter_ns(), next(self._jobs))
        clock.set_for(request)
        try:
            self._apply_headers(request, job)
            coding = compressed.requested(request.headers)
            if coding and coding not in compressed.CODINGS:
                raise RequestError(400, f"{compressed.HEADER}: {coding!r} is not one of "
                                        f"{', '.join(compressed.CODINGS)}")
            body = await read_json(request)
            job.model = str(body.get("model") or "")
            if not job.model:
                raise RequestError(400, "model is required")
            stream = body.get("stream")  # null is absent: Go leaves the *bool nil
            job.stream = (not openai if stream is None else bool(stream)) and (
                request.path in GENERATION)
            if fault is not None and fault.status:
                raise RequestError(fault.status, status_message(fault.status))
            info = self._models.resolve(job.model)
            if info is None:
                raise RequestError(404, f"model {go_json(job.model)} not found, "
                                         "try pulling it first")
            response: web.StreamResponse = await handler(request, job, body, info, openai)
            return response
        except RequestError as exc:
            self._observed.record(job, exc.status, "error")
            return error_response(exc.status, exc.message, openai)
        except (asyncio.CancelledError, ConnectionError):
            self._observed.record(job, 200, "client_gone")
            raise
        except Exception:
            self._observed.record(job, 500, "error")
            raise
        finally:
            self._observed.record(job, 200, "done")  # a normal return not recorded on the way

    def _apply_headers(self, request: web.BaseRequest, job: Job) -> None:
        for header, attr, kind in (("X-Sim-Tokens", "tokens", int),
                                   ("X-Sim-Token-Rate", "token_rate", float),
                                   ("X-Sim-TTFT", "ttft", float)):
            raw = request.headers.get(header)
            if raw is None:
                continue
            try:
                value = kind(raw)
            except ValueError:
                value = -1
            if not 0 <= value < math.inf:
                raise RequestError(400, f"{header}: {raw!r} is not a number >= 0")
            setattr(job, attr, value)
        cached = request.headers.get("X-Sim-Cached", "").strip()
        if cached:
            if not cached.isdigit():
                raise RequestError(400, f"X-Sim-Cached: {cached!r} is not a number >= 0")
            job.cached = int(cached)

    async def _generation(self, request: web.BaseRequest, job: Job, body: dict[str, Any],
                          info: ModelInfo, openai: bool) -> web.StreamResponse:
        chat = GENERATION[request.path]
        kind = "chat" if chat else "generate"
        if info.embedding_only:
            raise RequestError(400, f"{go_json(job.model)} does not support {kind}")
        if openai:
            cap = body.get("max_tokens", body.get("max_completion_tokens"))
            keep_alive = self._keep_alive
        else:
            cap = (body.get("options") or {}).get("num_predict")
            keep_alive = parse_keep_alive(body.get("keep_alive"), self._keep_alive)
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool)):
            raise RequestError(400, f"max tokens must be an integer, got {go_json(cap)}")
        if chat:
            messages = body.get("messages") or []
            if not isinstance(messages, list):
                raise RequestError(400, "messages must be a list")
            text = "\n".join(str(m.get("content")) for m in messages if isinstance(m, dict))
            job.prompt_eval_count = sum(words(m.get("content")) + 4 for m in messages
                                        if isinstance(m, dict)) + 3
            empty = not messages
        else:
            text = str(body.get("prompt") or "")
            system = str(body.get("system") or "")
            job.prompt_eval_count = words(text) + words(system) + (0 if body.get("raw") else 8)
            empty = not text
        if empty and not (openai and chat):  # /v1/completions with no prompt loads too
            return await self._load_only(job, info, chat, body, openai, keep_alive)
        job.first = (zlib.crc32(text.encode()) + self._seed) % len(VOCAB)
        job.cap = cap if cap is not None and cap > 0 else None
        job.eval_count = 0
        model_json = go_json(job.model)
        wire: Wire
        if openai:
            number = next(self._counter) if clock.stopped() is None else clock.seconds()
            completion_id = f"{'chatcmpl' if chat else 'cmpl'}-{number % 1000}"
            options = body.get("stream_options") or {}
            include_usage = job.stream and isinstance(options, dict) and bool(
                options.get("include_usage"))
            wire = (OpenAIChat if chat else OpenAICompletion)(
                model_json, completion_id, include_usage)
        else:
            include_usage = False
            wire = NativeChat(model_json) if chat else NativeGenerate(model_json)
        load_ns, job.loaded = await self._models.acquire(info)
        try:
            return await self._streamer.produce(request, job, wire, load_ns,
                                               bool(include_usage), self._cutter(job))
        finally:
            self._models.release(info, keep_alive)

    async def _load_only(self, job: Job, info: ModelInfo, chat: bool, body: dict[str, Any],
                         openai: bool, keep_alive: float) -> web.StreamResponse:
        """An empty prompt loads (or with keep_alive 0 unloads) the model (``lifecycle``)."""
        stream, job.stream = job.stream, False  # Ollama never streams these
        if not openai and is_unload(body.get("keep_alive"), self._behaviour):
            self._models.unload(info)
            job.done_reason = "unload"
        else:
            _, job.loaded = await self._models.acquire(info)
            self._models.release(info, keep_alive)
            job.done_reason = "load"
        if openai:
            return completion_answer(job.model, f"cmpl-{next(self._counter) % 1000}", stream)
        return native_answer(job.model, chat, job.done_reason, self._behaviour)

    def _cutter(self, job: Job) -> random.Random | None:
        """The seeded source of split positions, for the split fault only."""
        return random.Random(self._seed * 1_000_003 + job.number) if job.mode == "split" else None

    async def _embeddings(self, request: web.BaseRequest, job: Job, body: dict[str, Any],
                          info: ModelInfo, openai: bool) -> web.StreamResponse:
        legacy = request.path == "/api/embeddings"
        raw = body.get("prompt" if legacy else "input")
        raw = "" if raw is None else raw
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
            raise RequestError(400, "invalid input type")
        job.prompt_eval_count = sum(words(text) for text in inputs)
        keep_alive = self._keep_alive if openai else parse_keep_alive(
            body.get("keep_alive"), self._keep_alive)
        if not openai and raw in ("", []):  # no input: a load ([""] is one empty input)
            _, job.loaded = await self._models.acquire(info)
            self._models.release(info, keep_alive)
            job.done_reason = "load"
            return embed_answer(job.model, legacy)
        load_ns, job.loaded = await self._models.acquire(info)
        try:
            if job.ttft > 0:
                await asyncio.sleep(job.ttft)
            vectors = [list(embedding(text, info.embedding_length, self._seed, not legacy))
                       for text in inputs if text or not legacy]
        finally:
            self._models.release(info, keep_alive)
        if job.mode == "error_in_stream":
            raise RequestError(500, "simulated error_in_stream")
        if job.fault is not None and job.fault.megabytes and vectors and not legacy:
            return await self._big_embeddings(request, job, vectors[0], len(inputs), openai)
        if legacy:
            value: dict[str, Any] = {"embedding": vectors[0] if vectors else []}
        elif openai:
            value = {"object": "list", "data": [
                {"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
                "model": job.model, "usage": {"prompt_tokens": job.prompt_eval_count,
                                              "total_tokens": job.prompt_eval_count}}
        else:
            value = {"model": job.model, "embeddings": vectors}
            if job.mode != "no_counts":
                durations = clock.stopped() is None
                value.update(total_duration=time.perf_counter_ns() - job.started_ns,
                             load_duration=load_ns, prompt_eval_count=job.prompt_eval_count)
                if not durations:  # X-Sim-Clock: omitted, as Go omits a 0
                    del value["total_duration"], value["load_duration"]
        text = go_json(value) + ("\n" if openai else "")
        return await self._streamer.send_body(
            request, job, text.encode(), OPENAI_JSON if openai else NATIVE_JSON,
            self._cutter(job))

    async def _big_embeddings(self, request: web.BaseRequest, job: Job, vector: list[float],
                              inputs: int, openai: bool) -> web.StreamResponse:
        """``big_body:MB``: the one vector repeated until the body is MB mebibytes, as a batch
        of thousands of inputs answers (LangChain's embed_documents sends them in one call),
        the count at the very end: ``/api/embed`` ``...]],"prompt_eval_count":N}`` (0.6.0 to
        0.32.15), ``/v1/embeddings`` ``...,"usage":{...}}\\n``."""
        assert job.fault is not None
        one = go_json(vector)
        copies = max(job.fault.megabytes * (1 << 20) // (len(one) + 40), inputs)
        job.prompt_eval_count = job.prompt_eval_count * copies // max(inputs, 1)
        model = go_json(job.model)
        n = job.prompt_eval_count
        if openai:
            items = ",".join(f'{{"object":"embedding","embedding":{one},"index":{i}}}'
                             for i in range(copies))
            text = (f'{{"object":"list","data":[{items}],"model":{model},'
                    f'"usage":{{"prompt_tokens":{n},"total_tokens":{n}}}}}\n')
        else:
            text = f'{{"model":{model},"embeddings":[{",".join([one] * copies)}]'
            text += f',"prompt_eval_count":{n}}}' if n else "}"  # Go: omitempty
        return await self._streamer.send_body(
            request, job, text.encode(), OPENAI_JSON if openai else NATIVE_JSON, None)
