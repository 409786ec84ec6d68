"""Free TCP ports on 127.0.0.1 for the servers a test starts."""

from __future__ import annotations

import socket


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
