"""What the proxy, the dashboard and the health daemon share: settings, security, the metric
catalogue, the request record and the history database.

Nothing here imports mitmproxy or Flask: each of the three processes imports this package,
never another process's package.
"""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    """The installed llama-metrics version (the one in pyproject.toml)."""
    try:
        return metadata.version("llama-metrics")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"
