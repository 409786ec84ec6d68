"""SimServer: the simulator's lifecycle (thread or running loop), routing and control endpoints."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict

from ollama_sim.cassette import CassettePlayer
from ollama_sim.faults import Fault, reset_connection
from ollama_sim.gin import Router
from ollama_sim.inference import Inference
from ollama_sim.jobs import EMBEDDING, GENERATION
from ollama_sim.metadata import Metadata
from ollama_sim.models import DEFAULT_MODELS, Models
from ollama_sim.observed import Holds, Observed
from ollama_sim.progress import PATHS as PROGRESS_PATHS
from ollama_sim.progress import Progress
from ollama_sim.responses import (
    RequestError,
    error_response,
    json_response,
    not_found,
    status_message,
)
from ollama_sim.versions import Behaviour

logger = logging.getLogger(__name__)

VERSION = "0.12.6"  # the Ollama version /api/version reports
DEFAULT_PORT = 11434
DEFAULT_TOKENS = 20
DEFAULT_KEEP_ALIVE = 300.0


class _TrackingServer(web.Server):
    """aiohttp's low-level server, counting open connections and refusing them on demand."""

    def __init__(self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
                 sim: SimServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sim = sim

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if self._sim.fault is not None and self._sim.fault.mode == "refuse":
            reset_connection(transport)
            return
        self._sim._connection_changed(handler, opened=True)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self._sim._connection_changed(handler, opened=False)


class SimServer:
    """An Ollama look-alike on a TCP port, run in a background thread or in a running loop."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, token_rate: float = 0.0,
                 ttft: float = 0.0, load_delay: float = 0.0, tokens: int = DEFAULT_TOKENS,
                 models: Sequence[str] = DEFAULT_MODELS, fault: str | None = None,
                 seed: int = 0, keep_alive: float = DEFAULT_KEEP_ALIVE,
                 cassette: str | os.PathLike[str] | None = None, speed: float = 1.0,
                 version: str = VERSION, origins: Sequence[str] = ()) -> None:
        for name, value in (("token_rate", token_rate), ("ttft", ttft),
                            ("load_delay", load_delay), ("tokens", tokens),
                            ("keep_alive", keep_alive), ("port", port)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        names = [m.strip() if ":" in m else f"{m.strip()}:latest" for m in models if m.strip()]
        if not names:
            raise ValueError("models must name at least one model")
        self.host, self.port = host, port
        self.fault = Fault.parse(fault)
        # The Ollama release whose wire behaviour is imitated (ollama_sim/versions.py), and
        # OLLAMA_ORIGINS: further origins allowed by CORS ("*" for all).
        self.behaviour = Behaviour.of(version)
        self._router = Router(self.behaviour, origins, loopback=True)
        self._models = Models(names, load_delay)
        self._observed = Observed()
        self._holds = Holds()
        self._inference = Inference(
            models=self._models, observed=self._observed, holds=self._holds, tokens=tokens,
            token_rate=token_rate, ttft=ttft, keep_alive=keep_alive, seed=seed,
            behaviour=self.behaviour)
        metadata = Metadata(self._models, version)
        self.blobs = metadata.blobs  # digest -> size of each blob pushed to /api/blobs
        self._routes: dict[str, tuple[tuple[str, ...], Callable[..., Awaitable[Any]]]] = {
            "/": (("GET", "HEAD"), metadata.root),
            "/api/version": (("GET", "HEAD"), metadata.version),
            "/api/tags": (("GET", "HEAD"), metadata.tags),
            "/api/ps": (("GET",), metadata.ps),
            "/api/show": (("POST",), metadata.show),
            "/v1/models": (("GET",), metadata.v1_models),
            **{path: (("POST",), self._progress_route) for path in PROGRESS_PATHS},
            **{path: (("POST",), self._inference.serve) for path in (*GENERATION, *EMBEDDING)},
        }
        self._v1_model, self._blob = metadata.v1_model, metadata.blob
        self._progress = Progress(self._models)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.ServerRunner | None = None
        self._player = None if cassette is None else CassettePlayer(cassette, speed)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- what tests look at ----------------------------------------------------------------

    @property
    def reports(self) -> list[dict[str, Any]]:
        """One dict per finished inference request, oldest first (a copy).

        Keys: endpoint, model (as requested), status, stream, fault, prompt_eval_count,
        eval_count (content chunks emitted), done_reason, load (this request loaded the
        model) and outcome: done, error, aborted (by a fault) or client_gone.
        """
        return self._observed.reports

    @property
    def connections(self) -> int:
        """Client connections open now."""
        return self._observed.connections

    def wait_for_reports(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least count reports exist; TimeoutError if they do not come."""
        return self._observed.wait_for_reports(count, timeout)

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> None:
        """Wait until exactly count client connections are open; TimeoutError otherwise."""
        self._observed.wait_for_connections(count, timeout)

    def release(self, key: str) -> None:
        """Let requests held with X-Sim-Hold: KEY (now or later) go on."""
        loop = self._loop
        if loop is not None and loop.is_running() and self._thread is not None:
            loop.call_soon_threadsafe(self._holds.release, key)
        else:
            self._holds.release(key)

    def reset(self) -> None:
        """Forget reports and releases."""
        self._observed.clear()
        self._holds.forget()

    def _connection_changed(self, handler: RequestHandler, opened: bool) -> None:
        self._observed.connection_changed(handler, opened)

    # -- lifecycle -------------------------------------------------------------------------

    async def astart(self) -> None:
        """Listen, in the running event loop."""
        sock = socket.create_server((self.host, self.port), backlog=1024,
                                    family=socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        self.port = sock.getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._holds.new_loop()  # events and locks belong to one loop; a restart gets new ones
        self._models.new_locks()
        # Bodies are read as Ollama reads them (ollama_sim/compressed.py), not as aiohttp would.
        server = _TrackingServer(self._dispatch, self, handler_cancellation=True,
                                 access_log=None, auto_decompress=False)
        self._runner = web.ServerRunner(server, shutdown_timeout=2.0)
        try:
            await self._runner.setup()
            await web.SockSite(self._runner, sock, backlog=1024).start()
        except BaseException:
            sock.close()
            raise
        logger.info("ollama simulator listening on %s", self.url)

    async def astop(self) -> None:
        """Drop open connections and stop listening."""
        for handler in self._observed.handlers():
            reset_connection(handler.transport)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def arestart(self, down_for: float) -> None:
        """Stop listening (dropping open connections, as ``ollama serve`` stopping does) and
        listen again on the same port after ``down_for`` seconds: a restart window in which
        connections are refused."""
        await self.astop()
        await asyncio.sleep(down_for)
        await self.astart()

    def restart(self, down_for: float) -> None:
        """``arestart`` in the background thread's loop; returns once it stopped listening."""
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError("restart() is for a simulator started with start()")
        down = threading.Event()

        async def run() -> None:
            await self.astop()
            down.set()
            await asyncio.sleep(down_for)
            await self.astart()

        asyncio.run_coroutine_threadsafe(run(), loop)
        down.wait(timeout=10)

    def start(self) -> SimServer:
        """Run in a background thread with its own loop; return once it is listening."""
        if self._thread is not None:
            raise RuntimeError(f"simulator on {self.url} is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run_thread, args=(ready, failure),
                                        name="ollama-sim", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop the background thread started by start(); a no-op when not running."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.astop(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _run_thread(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self.astart())
            except BaseException as exc:  # handed to the thread that called start()
                failure.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending))
            loop.run_until_complete(loop.shutdown_asyncgens())
            asyncio.set_event_loop(None)
            loop.close()
            self._loop = None

    # -- routing ---------------------------------------------------------------------------

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_sim/"):
            return await self._control(request)
        if self._player is not None:
            return await self._player.serve(request)
        methods, handler = self._routes.get(path, ((), None))
        if handler is None and path.startswith("/v1/models/"):
            methods, handler = ("GET", "HEAD"), self._v1_model
        if handler is None and path.startswith("/api/blobs/"):
            methods, handler = ("POST", "HEAD"), self._blob
        extra: CIMultiDict[str] = CIMultiDict()
        early = self._router.before(request, methods if handler is not None else None, extra)
        if early is not None:
            return early
        if extra:  # CORS headers for an allowed foreign Origin
            return await self._with_headers(request, extra)
        return await self._route(request)

    async def _with_headers(self, request: web.BaseRequest,
                            extra: CIMultiDict[str]) -> web.StreamResponse:
        response = await self._route(request)
        if not response.prepared:
            response.headers.extend(extra)
        return response

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        _, handler = self._routes.get(path, ((), None))
        if handler is None and path.startswith("/v1/models/"):
            handler = self._v1_model
        if handler is None and path.startswith("/api/blobs/"):
            handler = self._blob
        if handler is None:
            return not_found()
        openai = path.startswith("/v1/")
        try:
            header = request.headers.get("X-Sim-Fault")
            fault = self.fault if header is None else Fault.parse(header)
        except ValueError as exc:
            return error_response(400, f"X-Sim-Fault: {exc}", openai)
        if fault is not None and fault.mode == "refuse":
            reset_connection(request.transport)
            return web.Response()
        if path in GENERATION or path in EMBEDDING:
            return await self._inference.serve(request, fault, openai)
        if fault is not None and fault.status and path != "/":
            return error_response(fault.status, status_message(fault.status), openai)
        try:
            if path in PROGRESS_PATHS:
                return await self._progress.serve(request, fault)
            response: web.StreamResponse = await handler(request)
        except RequestError as exc:
            return error_response(exc.status, exc.message, openai)
        return response

    async def _progress_route(self, request: web.BaseRequest) -> web.StreamResponse:
        return await self._progress.serve(request, None)  # _dispatch passes the fault

    async def _control(self, request: web.BaseRequest) -> web.StreamResponse:
        path, method = request.path, request.method
        if path == "/_sim/reports" and method == "GET":
            return json_response(self.reports)
        if path == "/_sim/connections" and method == "GET":
            return json_response({"connections": max(self.connections - 1, 0)})
        if path == "/_sim/reset" and method == "POST":
            self.reset()
            return json_response({"reset": True})
        if path == "/_sim/restart" and method == "POST":
            try:
                down_for = float(request.query.get("down", "1"))
            except ValueError:
                return error_response(400, "down: expected seconds", False)
            asyncio.get_running_loop().call_soon(
                lambda: asyncio.ensure_future(self.arestart(down_for)))
            return json_response({"restarting": down_for})
        if path.startswith("/_sim/release/") and method == "POST":
            key = path.removeprefix("/_sim/release/")
            self._holds.release(key)
            return json_response({"released": key})
        return not_found()
