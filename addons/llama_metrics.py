"""The script given to ``mitmdump -s``: composes the llama-metrics addons that live beside it.

    mitmdump --mode reverse:http://127.0.0.1:11434 -p 11435 -s addons/llama_metrics.py
"""

from __future__ import annotations

import sys

# mitmproxy loads this file as a script, not as part of a package; the package itself is
# installed (editable) in the venv by scripts/setup, so it imports like any other.
from addons.service import MetricsProxy, repeated_options
from addons.upstream import DEFAULTS as UPSTREAM_OPTIONS
from addons.upstream import UpstreamGuard


def _repeated_upstream_options(argv: list[str]) -> list[str]:
    """Our upstream addon's options given more than once (``repeated_options`` knows the rest)."""
    names = [arg.removeprefix("--set=").split("=", 1)[0] for i, arg in enumerate(argv)
             if arg.startswith("--set=") or (i > 0 and argv[i - 1] == "--set")]
    return sorted({n for n in names if n in UPSTREAM_OPTIONS and names.count(n) > 1})


if _repeated := repeated_options(sys.argv[1:]) + _repeated_upstream_options(sys.argv[1:]):
    print(f"llama-metrics: option given more than once: {', '.join(_repeated)}", file=sys.stderr)
    raise SystemExit(2)

_proxy = MetricsProxy()
# After the proxy's addons: its request hook sees a flow once admitted, ready to go upstream.
addons = [_proxy, UpstreamGuard(_proxy.registry)]
