"""The fault modes (``--fault`` / ``X-Sim-Fault``) and dropping a connection with a reset."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any

FAULT_MODES = (
    "close_mid_stream", "malformed_line", "error_in_stream", "split",
    "no_counts", "no_usage", "stall", "refuse", "reset", "invalid_utf8", "truncated_tail",
    "swallowed_error",
)
CUT_AFTER = 3  # content chunks sent before close_mid_stream / error_in_stream strike
INVALID_UTF8 = b"\xff\xfe\xc3("  # stray bytes and a broken 2-byte sequence
BIG_CHUNK = 64 * 1024  # characters of text per content chunk of big_body:MB
BIG_TOKEN = ("llama " * (BIG_CHUNK // 6 + 1))[:BIG_CHUNK]


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault mode; ``status`` is set for ``status:CODE``, ``megabytes`` for big_body:MB."""

    mode: str
    status: int = 0
    megabytes: int = 0

    @classmethod
    def parse(cls, text: str | None) -> Fault | None:
        """Parse a --fault / X-Sim-Fault value; None for no fault; ValueError when unknown."""
        value = (text or "").strip()
        if value in ("", "none"):
            return None
        if value.startswith("status:"):
            code = value.removeprefix("status:")
            if not code.isdigit() or not 400 <= int(code) <= 599:
                raise ValueError(f"fault {value!r}: status must be a code from 400 to 599")
            return cls("status", int(code))
        if value.startswith("big_body:"):
            size = value.removeprefix("big_body:")
            if not size.isdigit() or not 1 <= int(size) <= 1024:
                raise ValueError(f"fault {value!r}: size must be 1 to 1024 (MiB)")
            return cls("big_body", megabytes=int(size))
        if value not in FAULT_MODES:
            allowed = ", ".join((*FAULT_MODES, "status:CODE", "big_body:MB", "none"))
            raise ValueError(f"fault {value!r} is unknown; allowed: {allowed}")
        return cls(value)

    def __str__(self) -> str:
        if self.megabytes:
            return f"big_body:{self.megabytes}"
        return f"status:{self.status}" if self.status else self.mode


def reset_connection(transport: Any) -> None:
    """Drop a connection with a TCP reset instead of an orderly close."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
