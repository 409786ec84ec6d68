"""What the reliability tests add to tests/support: a proxy on chosen ports, without root's
power to ignore file modes.

An outage test restarts the proxy on the ports it had, and the read-only test runs it as a
root that obeys file modes; both start it with ``start_proxy``.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.support.processes import Proxy, run_proxy

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def drop_file_override() -> None:
    """preexec_fn: a root child that obeys file modes like any user (CI runs tests as root).

    Removing CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set before exec
    leaves uid 0 (so it can still read the root-only virtualenv) without the override.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # if refused, obeys_file_modes says so


def obeys_file_modes(preexec: Callable[[], None] | None) -> bool:
    """Whether a child started with ``preexec`` is refused writing a file made read-only."""
    probe = ("import os, sys, tempfile\n"
             "fd, name = tempfile.mkstemp(); os.close(fd); os.chmod(name, 0o444)\n"
             "writable = os.access(name, os.W_OK); os.unlink(name)\n"
             "sys.exit(1 if writable else 0)\n")
    try:
        done = subprocess.run([sys.executable, "-c", probe], preexec_fn=preexec, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@contextmanager
def start_proxy(upstream: str, *sets: str, port: int = 0, metrics_port: int = 0,
                preexec: Callable[[], None] | None = None) -> Iterator[Proxy]:
    """``run_proxy`` on ``port`` and ``metrics_port``; ``sets`` are ``name=value`` options."""
    options = [arg for item in (*sets, f"metrics_port={metrics_port}") for arg in ("--set", item)]
    with run_proxy(upstream, *options, port=port, preexec=preexec) as proxy:
        yield proxy
