"""Sending generated tokens: paced content chunks or one body, with the faults that cut them."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ollama_sim import clock, compressed
from ollama_sim.encoding import VOCAB, VOCAB_JSON, go_json, split_cuts
from ollama_sim.faults import BIG_CHUNK, BIG_TOKEN, CUT_AFTER, INVALID_UTF8, reset_connection
from ollama_sim.jobs import Job
from ollama_sim.native import NativeGenerate
from ollama_sim.observed import Holds, Observed
from ollama_sim.responses import RequestError
from ollama_sim.wire import Stats, Wire


class Streamer:
    """Writes what a job generates, reporting each job's outcome to ``observed``."""

    def __init__(self, observed: Observed, holds: Holds) -> None:
        self._observed = observed
        self._holds = holds

    async def produce(self, request: web.BaseRequest, job: Job, wire: Wire, load_ns: int,
                      include_usage: bool, rng: random.Random | None) -> web.StreamResponse:
        """Emit the tokens at the configured pace, streamed or as one body, with the faults."""
        started = time.perf_counter_ns()
        if job.ttft > 0:
            await asyncio.sleep(job.ttft)
        eval_start = time.perf_counter_ns()
        n = job.tokens if job.cap is None else min(job.tokens, job.cap)
        job.done_reason = "length" if job.cap is not None and job.cap <= job.tokens else "stop"
        if job.fault is not None and job.fault.megabytes:
            n = job.fault.megabytes * (1 << 20) // BIG_CHUNK

        def stats() -> Stats:
            now = time.perf_counter_ns()
            result = Stats(job.done_reason, job.prompt_eval_count, job.eval_count,
                            total_ns=now - job.started_ns, load_ns=load_ns,
                            prompt_eval_ns=eval_start - started, eval_ns=now - eval_start,
                            counts=job.mode != "no_counts",
                            usage=include_usage and job.mode != "no_usage", cached=job.cached)
            if clock.stopped() is not None:  # X-Sim-Clock: no time passes, 0s are omitted
                result.total_ns = result.load_ns = result.prompt_eval_ns = result.eval_ns = 0
            if isinstance(wire, NativeGenerate):
                result.context = [(job.first * 7919 + i * 104729) % 128000
                                  for i in range(job.prompt_eval_count + job.eval_count)]
            return result

        if not job.stream:
            await self.emit(request, job, wire, n, None)
            if job.mode == "error_in_stream":
                raise RequestError(500, "an error was encountered while running the model: "
                                         "simulated error_in_stream")
            if job.mode == "big_body":
                text = BIG_TOKEN * job.eval_count
            else:
                text = "".join(VOCAB[(job.first + i) % len(VOCAB)] for i in range(job.eval_count))
            text_json = go_json(text)
            if job.mode == "invalid_utf8":  # an escape no text contains, swapped for the bytes
                text_json = text_json[:-1] + '\\ufffd"'
            body = wire.body(text_json, stats())
            if job.mode == "invalid_utf8":
                body = body.replace(b"\\ufffd", INVALID_UTF8, 1)
            return await self.send_body(request, job, body, wire.body_type, rng)
        resp = web.StreamResponse(headers={"Content-Type": wire.stream_type})
        coding = compressed.requested(request.headers)
        encode = compressed.encoder(coding) if coding else None
        if coding:
            resp.headers["Content-Encoding"] = coding
        resp.enable_chunked_encoding()
        await resp.prepare(request)  # the headers leave with the first chunk, as in Ollama

        async def write(data: bytes, last: bool = False) -> None:
            if encode is not None:
                data = encode(data, last)
            if rng is not None:
                for piece in split_cuts(data, rng):
                    await resp.write(piece)
            else:
                await resp.write(data)

        try:
            if await self.emit(request, job, wire, n, write):
                final = wire.tail(stats())
                if job.mode == "truncated_tail":
                    final = [final[0][: len(final[0]) // 2]]
                outcome = "aborted" if job.mode == "truncated_tail" else "done"
                self._observed.record(job, 200, outcome)
                for i, piece in enumerate(final):
                    await write(piece, i == len(final) - 1)
            elif encode is not None:
                await write(b"", True)  # end the compressed stream where the fault ended it
        except ConnectionError:
            self._observed.record(job, 200, "client_gone")
        return resp

    async def emit(self, request: web.BaseRequest, job: Job, wire: Wire, n: int,
                    write: Callable[[bytes], Awaitable[None]] | None) -> bool:
        """Pace n content chunks (written when write is given); False if a fault ended it."""
        mode = job.mode
        cutting = write is not None and mode in (
            "close_mid_stream", "error_in_stream", "reset", "swallowed_error")
        cut = min(CUT_AFTER, n) if cutting else -1
        interval = 1.0 / job.token_rate if job.token_rate > 0 else 0.0
        loop = asyncio.get_running_loop()
        first_at = loop.time()
        for i in range(n + 1):
            if i == cut and write is not None:
                if mode in ("close_mid_stream", "reset"):
                    self._observed.record(job, 200, "aborted")
                    if mode == "reset":
                        reset_connection(request.transport)
                    elif request.transport is not None:
                        request.transport.close()
                    return False
                self._observed.record(job, 200, "error")
                message = f"an error was encountered while running the model: simulated {mode}"
                await write(wire.swallowed(message) if mode == "swallowed_error"
                            else wire.error(message))
                return False
            if i == n:
                return True
            if interval and i:
                delay = first_at + i * interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if write is not None:
                if mode == "big_body":
                    await write(wire.content(go_json(BIG_TOKEN)))
                elif mode == "invalid_utf8" and i == min(1, n - 1):
                    await write(wire.content('"\\ufffd"').replace(b"\\ufffd", INVALID_UTF8))
                else:
                    await write(wire.content(VOCAB_JSON[(job.first + i) % len(VOCAB)]))
            job.eval_count = i + 1
            if i == 0 and job.hold:
                await self._holds.wait(job.hold)
            if i == 0 and mode == "stall" and write is not None:
                await loop.create_future()  # until the client goes (the task is cancelled)
            if mode == "malformed_line" and write is not None and i + 1 == max(n // 2, 1):
                await write(wire.malformed())
        return True

    async def send_body(self, request: web.BaseRequest, job: Job, body: bytes,
                         content_type: str, rng: random.Random | None) -> web.StreamResponse:
        """Send a non-streamed body, applying the fault modes that make sense for one."""
        mode = job.mode
        if mode in ("malformed_line", "truncated_tail"):
            body = body[: len(body) // 2]
        coding = compressed.requested(request.headers)
        if mode not in ("close_mid_stream", "stall", "split", "reset") or coding:
            self._observed.record(job, 200, "done")
            headers = {"Content-Type": content_type}
            if coding:  # a hop between a proxy and Ollama compressed it
                body = compressed.encoder(coding)(body, True)
                headers["Content-Encoding"] = coding
            return web.Response(body=body, headers=headers)
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        resp.content_length = len(body)
        await resp.prepare(request)
        try:
            if rng is not None:
                self._observed.record(job, 200, "done")
                for piece in split_cuts(body, rng):
                    await resp.write(piece)
                return resp
            await resp.write(body[: len(body) // 2])
            if mode in ("close_mid_stream", "reset"):
                self._observed.record(job, 200, "aborted")
                if mode == "reset":
                    reset_connection(request.transport)
                elif request.transport is not None:
                    request.transport.close()
                return resp
            await asyncio.get_running_loop().create_future()  # stall until cancelled
        except ConnectionError:
            self._observed.record(job, 200, "client_gone")
        return resp
