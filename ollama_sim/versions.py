"""Which Ollama release the simulator imitates, and what that changes on the wire.

The default is ``server.VERSION`` (what ``/api/version`` answers). Behaviours that changed
between releases follow the version given (``SimServer(version=...)``, ``--version``), each
named with the first release that has it (from Ollama's source, ``git tag --contains``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


def parse_version(text: str) -> tuple[int, int, int]:
    """``0.12.6`` (or ``v0.12.6``, ``0.33.0-rc2``) as a comparable tuple; ValueError if not one."""
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.]+)?", text.strip())
    if m is None:
        raise ValueError(f"version {text!r} is not MAJOR.MINOR.PATCH")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


@dataclass(frozen=True, slots=True)
class Behaviour:
    """The version-dependent parts of the simulator's answers."""

    version: str
    # 0.7.0 (4090aca97): gin's HandleMethodNotAllowed, a 405 with Allow instead of a 404.
    method_not_allowed: bool
    # 0.11.8 (108153243): unload only when keep_alive is exactly 0 (before: whole seconds 0).
    unload_exact_zero: bool
    # 0.12.0 (8b894933a): ChatResponse writes "done" before "done_reason".
    chat_done_first: bool

    @classmethod
    def of(cls, version: str) -> Behaviour:
        v = parse_version(version)
        return cls(version=version, method_not_allowed=v >= (0, 7, 0),
                   unload_exact_zero=v >= (0, 11, 8), chat_done_first=v >= (0, 12, 0))
