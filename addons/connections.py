"""mitmproxy's handler of a flow's client connection, for what no hook offers.

Two things the proxy needs have no mitmproxy hook: holding off the idle limit of a connection
while its request is in flight (``upstream.py``), and closing a client connection at once.
Both reach the ``proxyserver`` addon's connection handlers (``connections``, each with its
``transports`` and ``timeout_watchdog``). mitmproxy is pinned (requirements.lock), and the
end-to-end tests fail if these internals change.
"""

from __future__ import annotations

import logging
from typing import Any

from mitmproxy import ctx, http

logger = logging.getLogger(__name__)


def handler_of(flow: http.HTTPFlow) -> Any:
    """The connection handler serving ``flow``'s client, or None (gone, or no proxy server)."""
    master = getattr(ctx, "master", None)  # None outside a running mitmproxy (unit tests)
    if master is None:
        return None
    proxyserver = master.addons.get("proxyserver")
    connections = getattr(proxyserver, "connections", {})
    return connections.get(flow.client_conn.id)


def abort_client(flow: http.HTTPFlow) -> None:
    """Reset ``flow``'s client connection now, whatever it still sends.

    ``flow.kill()`` alone is not enough with lazy upstream connections (mitmproxy 12.x,
    ``connection_strategy=lazy``, which ``Listen`` sets): the handler ends, but the client's
    socket stays open, unread, so a client that sends a large body waits forever and the
    proxy holds a file descriptor per such client. Aborting the transport closes the socket
    (the client sees a reset).
    """
    handler = handler_of(flow)
    io = getattr(handler, "transports", {}).get(flow.client_conn)
    writer = getattr(io, "writer", None)
    if writer is None:
        return
    try:
        writer.transport.abort()
    except Exception:  # already closed, or not a socket transport
        logger.debug("could not abort the client connection", exc_info=True)
