"""TCP ports on 127.0.0.1 for a test: free ones for its servers, refusing and TIME_WAIT ones."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


def free_ports(n: int) -> list[int]:
    """n different ports nothing listens on (the OS just handed them out, all held at once)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """A port nothing listens on (the OS just handed it out and it was closed again)."""
    return free_ports(1)[0]


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port bound but not listening while the block runs: a connection to it is refused at
    once, and no other server can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def time_wait_port() -> int:
    """A port whose only trace is a connection in TIME_WAIT, as a server leaves it when it
    closes its side first and stops (what Ctrl-C does to a proxy with clients)."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = int(server.getsockname()[1])
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server's side closes first: that side waits in TIME_WAIT
        client.recv(1)  # the FIN has arrived
        client.close()
    return port
