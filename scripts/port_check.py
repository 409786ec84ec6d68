"""Whether a port is free the way our servers bind it, and what holds it when it is not."""

from __future__ import annotations

import errno
import socket

import psutil


def bind_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on ``host:port`` now, or None when it could.

    The check binds as the servers do (asyncio, aiohttp, gunicorn and http.server all set
    SO_REUSEADDR), so connections left in TIME_WAIT by a stop a moment ago do not count as
    "in use"; a socket that listens there still does, and is named with its holder.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                return f"cannot be listened on ({e.strerror})"
            held = holder(port)
            return "is already in use" + (f" by {held}" if held else "")
    return None


def holder(port: int) -> str | None:
    """Who listens on ``port``: ``pid 1234 (nginx)``, or why that cannot be said; None if
    no listening socket is seen there."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return "a process this user may not look at"
    pids = sorted({c.pid for c in connections
                   if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port},
                  key=lambda pid: pid or 0)
    # A socket of another user's process is listed without its pid.
    if not pids:
        return None
    if pids == [None]:
        return "a process of another user"
    return ", ".join(describe(pid) for pid in pids if pid is not None)


def describe(pid: int) -> str:
    try:
        return f"pid {pid} ({psutil.Process(pid).name()})"
    except psutil.Error:
        return f"pid {pid}"
