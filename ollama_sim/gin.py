"""What Ollama's router answers before a handler runs: CORS, allowed hosts and wrong methods.

``server/routes.go`` ``GenerateRoutes`` puts gin-contrib/cors v1.7.2 (the same from 0.6 to
0.32.15) and ``allowedHostsMiddleware`` in front of every route, also of gin's 404 and 405
answers. So, in this order:

- a request with an ``Origin`` that is neither its own host nor allowed: 403, empty body;
- an ``OPTIONS`` with an allowed foreign ``Origin`` (a CORS preflight): 204 with the
  preflight headers, on any path (plus ``Allow: POST`` on a POST-only route since 0.7.0);
- any other request from an allowed foreign ``Origin`` gets ``Vary: Origin`` and
  ``Access-Control-Allow-Origin`` added to whatever follows;
- while Ollama listens on loopback: a ``Host`` that is a name other than ``localhost``, the
  machine's name or ``*.localhost|local|internal`` is a 403; for those names an ``OPTIONS``
  is a 204 right there; an IP address passes;
- then routing: unknown path 404 ``404 page not found``; a known path with another method
  (``HEAD /api/chat``, ``GET /api/chat``, an ``OPTIONS`` without ``Origin`` from an IP host)
  405 ``405 method not allowed`` with ``Allow`` since 0.7.0 (``versions.Behaviour``), 404
  before. Both ``text/plain``; a HEAD answer has the length and no body.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from aiohttp import web
from multidict import CIMultiDict

from ollama_sim.versions import Behaviour

ALLOW_HEADERS = (
    "Authorization,Content-Type,User-Agent,Accept,X-Requested-With,Openai-Beta,X-Stainless-Arch,"
    "X-Stainless-Async,X-Stainless-Custom-Poll-Interval,X-Stainless-Helper-Method,"
    "X-Stainless-Lang,X-Stainless-Os,X-Stainless-Package-Version,X-Stainless-Poll-Helper,"
    "X-Stainless-Retry-Count,X-Stainless-Runtime,X-Stainless-Runtime-Version,X-Stainless-Timeout"
)
ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
DEFAULT_ORIGINS = (
    *(f"{scheme}://{host}{port}" for host in ("localhost", "127.0.0.1", "0.0.0.0")
      for scheme in ("http", "https") for port in ("", ":*")),
    "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*",
)
NOT_FOUND = b"404 page not found"
NOT_ALLOWED = b"405 method not allowed"
_LOCAL_TLDS = (".localhost", ".local", ".internal")
_TREE_ORDER = ("HEAD", "GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS")


def _matches(origin: str, pattern: str) -> bool:
    if pattern == origin:
        return True
    if "*" not in pattern:
        return False
    prefix, suffix = pattern.split("*", 1)
    return len(origin) >= len(prefix) + len(suffix) and origin.startswith(prefix) and (
        origin.endswith(suffix))


def _plain(status: int, body: bytes, headers: CIMultiDict[str]) -> web.Response:
    headers["Content-Type"] = "text/plain"
    return web.Response(status=status, body=body, headers=headers)


class Router:
    """The answers gin and its middleware give before (or instead of) a handler."""

    def __init__(self, behaviour: Behaviour, origins: Sequence[str] = (),
                 loopback: bool = True) -> None:
        self._behaviour = behaviour
        extra = [o.strip() for o in origins if o.strip()]
        self._allow_all = "*" in extra
        self._origins = (*extra, *DEFAULT_ORIGINS)
        self._loopback = loopback

    def allowed_origin(self, origin: str) -> bool:
        return self._allow_all or any(_matches(origin, p) for p in self._origins)

    def before(self, request: web.BaseRequest, methods: Sequence[str] | None,
               extra: CIMultiDict[str]) -> web.StreamResponse | None:
        """An answer that ends the request here, or None (then ``extra`` goes on the answer).

        ``methods`` are the route's (None: no such route).
        """
        method, origin, host = request.method, request.headers.get("Origin", ""), request.host
        if methods is not None and method not in methods and self._behaviour.method_not_allowed:
            # gin sets it before the middleware runs, in the order its method trees were
            # first registered in GenerateRoutes (HEAD "/", GET "/", POST /api/pull, ...).
            extra["Allow"] = ", ".join(sorted(methods, key=_TREE_ORDER.index))
        if origin and origin not in (f"http://{host}", f"https://{host}"):
            if not self.allowed_origin(origin):
                return web.Response(status=403, headers=extra)
            if method == "OPTIONS":
                headers = CIMultiDict(extra)
                headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
                headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
                headers["Access-Control-Max-Age"] = "43200"
                for vary in ("Origin", "Access-Control-Request-Method",
                             "Access-Control-Request-Headers"):
                    headers.add("Vary", vary)
                if not self._allow_all:
                    headers["Access-Control-Allow-Origin"] = origin
                else:
                    headers["Access-Control-Allow-Origin"] = "*"
                return web.Response(status=204, headers=headers)
            if self._allow_all:
                extra["Access-Control-Allow-Origin"] = "*"
            else:
                extra["Vary"] = "Origin"
                extra["Access-Control-Allow-Origin"] = origin
        if self._loopback:
            refused = self._host_answer(request, extra)
            if refused is not None:
                return refused
        if methods is None:
            return _plain(404, NOT_FOUND, extra)
        if method not in methods:
            if self._behaviour.method_not_allowed:
                return _plain(405, NOT_ALLOWED, extra)
            return _plain(404, NOT_FOUND, extra)
        return None

    @staticmethod
    def _host_answer(request: web.BaseRequest, extra: CIMultiDict[str]) -> web.Response | None:
        host = request.host
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        name = name.strip("[]")
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            ip = None
        if ip is not None and (ip.is_loopback or ip.is_private or ip.is_unspecified):
            return None
        lowered = name.lower()
        if lowered in ("", "localhost", socket.gethostname().lower()) or lowered.endswith(
                _LOCAL_TLDS):
            if request.method == "OPTIONS":
                return web.Response(status=204, headers=extra)
            return None
        return web.Response(status=403, headers=extra)
