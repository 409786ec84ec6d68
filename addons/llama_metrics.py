"""The script given to ``mitmdump -s``: composes the llama-metrics addons that live beside it.

    mitmdump --mode reverse:http://127.0.0.1:11434 -p 11435 -s addons/llama_metrics.py
"""

from __future__ import annotations

import sys
from pathlib import Path

# mitmproxy loads this file as a script, not as part of a package: make the package importable.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from addons.service import MetricsProxy, repeated_options  # noqa: E402

if _repeated := repeated_options(sys.argv[1:]):
    print(f"llama-metrics: option given more than once: {', '.join(_repeated)}", file=sys.stderr)
    raise SystemExit(2)

addons = [MetricsProxy()]
