"""A tiny HTTP/1.1 upstream that answers with a recorded Ollama response, split at random bytes.

The request header ``X-Replay`` names the recording and ``X-Replay-Seed`` seeds the split, so
one server serves every recording. Each piece is written (and flushed) on its own.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading

from tests import fixtures
from tests.addons.test_streams import random_splits

DROP = {"transfer-encoding", "content-length", "connection"}


class ReplayUpstream:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.requests: list[bytes] = []
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReplayUpstream:
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(head + body)
            rec = fixtures.load(headers["x-replay"])
            pieces = random_splits(rec.body, random.Random(int(headers.get("x-replay-seed", 0))))
            chunked = "content-length" not in rec.response_headers
            lines = [f"HTTP/1.1 {rec.status} Status"]
            lines += [f"{k}: {v}" for k, v in rec.response_headers.items() if k not in DROP]
            lines.append("transfer-encoding: chunked" if chunked
                         else f"content-length: {len(rec.body)}")
            lines.append("connection: close")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            for piece in pieces:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                await writer.drain()
                await asyncio.sleep(0)
            if chunked:
                writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
