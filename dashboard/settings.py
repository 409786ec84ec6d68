"""The dashboard's settings: its keys, its command line, and how both become one checked dict.

The hierarchy is the project's (``llama_core.settings``): defaults here, the ``dashboard:`` block
of the YAML file, ``LLAMA_METRICS_DASHBOARD_<KEY>`` (and ``OLLAMA_HOST`` for ``ollama_url``),
then the command line. A bad value raises ``ConfigError`` naming key, value, source and what
is allowed; ``python -m dashboard`` turns that into exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llama_core.settings import (
    PORT,
    ConfigError,
    Key,
    load,
    parse_float,
    parse_host,
    parse_int,
    parse_path,
    parse_upstream,
    parse_url,
)

logger = logging.getLogger(__name__)

SECTION = "dashboard"
MAX_MODEL_NAME = 200


def parse_metrics_url(value: Any) -> str:
    """The proxy's metrics address; ``http://host:8001`` and ``.../metrics`` both work.

    Several proxies shown as one: a comma-separated string or a YAML list of addresses; the
    value is then their comma-separated list (``dashboard.proxies.split_urls`` reads it).
    """
    given = value if isinstance(value, list | tuple) else [value]
    urls: list[str] = []
    for item in (part for one in given for part in str(one or "").split(",")):
        url = parse_url(item).removesuffix("/metrics")
        if not url or url in urls:  # a proxy counted twice would double every number
            raise ValueError(value)
        urls.append(url)
    if not urls:
        raise ValueError(value)
    return ",".join(urls)


def parse_history_path(value: Any) -> str:
    """A file path (it may not exist yet: the proxy creates it), or empty for none."""
    text = parse_path(value)
    if "\0" in text or (text and Path(text).is_dir()):
        raise ValueError(value)
    return text


def parse_model_name(value: Any) -> str:
    """An Ollama model name, or empty to switch the narrative off."""
    text = "" if value is None else str(value).strip()
    if len(text) > MAX_MODEL_NAME or any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(value)
    return text


DASHBOARD_KEYS: tuple[Key, ...] = (
    Key("host", parse_host, "127.0.0.1", "a host name or IP address"),
    Key("port", PORT, 3001, "a port number 0-65535 (0 = any free port)"),
    Key("proxy_metrics_url", parse_metrics_url, "http://127.0.0.1:8001",
        "the http(s) URL of the proxy's metrics port, or several different ones "
        "(comma-separated or a list) to show several proxies as one"),
    Key("history_path", parse_history_path, "data/history.db",
        "a file path (the proxy's history database, not a directory), or empty to disable"),
    Key("healthd_url", parse_url, "http://127.0.0.1:8080", "an http(s) URL, or empty"),
    Key("prometheus_url", parse_url, "", "an http(s) URL, or empty to read the history file"),
    Key("ollama_url", parse_upstream, "http://127.0.0.1:11434", "an http(s) URL or host:port"),
    Key("narrative_model", parse_model_name, "llama3.2",
        f"an Ollama model name (no spaces, at most {MAX_MODEL_NAME} characters), or empty "
        "to switch the narrative off"),
    Key("narrative_timeout_seconds", parse_float(1, 600), 60.0, "seconds, 1-600"),
    Key("narrative_max_active", parse_int(0, 100_000), 2,
        "an integer >= 0: skip the narrative when the proxy has more requests in flight"),
    Key("narrative_max_queue", parse_int(0, 100_000), 0,
        "an integer >= 0: skip the narrative when more requests wait in the proxy's queue"),
    Key("push_interval_seconds", parse_float(0.1, 1.0), 1.0, "seconds, 0.1-1"),
    Key("rate_window_seconds", parse_float(2, 300), 10.0, "seconds, 2-300"),
    Key("request_timeout_seconds", parse_float(0.1, 60), 2.0, "seconds, 0.1-60"),
    Key("threads", parse_int(2, 1000), 32,
        "an integer 2-1000 (server threads: open pages plus concurrent API calls)"),
)

# Command-line flag -> key; anything else comes from the YAML file or the environment.
FLAGS = {
    "--host": "host",
    "--port": "port",
    "--proxy-metrics": "proxy_metrics_url",
    "--history": "history_path",
    "--healthd": "healthd_url",
    "--prometheus": "prometheus_url",
}


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dashboard",
        description="llama-metrics dashboard: live and historical view of the Ollama proxy.",
    )
    for flag, key in FLAGS.items():
        # Values stay strings here so that ConfigError reports them as given.
        metavar = {"host": "HOST", "port": "PORT", "history_path": "PATH"}.get(key, "URL")
        if key == "proxy_metrics_url":  # once per proxy, to show several as one
            parser.add_argument(flag, dest=key, metavar=metavar, action="append")
        else:
            parser.add_argument(flag, dest=key, metavar=metavar)
    parser.add_argument(
        "--config", metavar="FILE", help="YAML file (default config/llama-metrics.yml)"
    )
    return parser


def load_settings(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Parse the command line and load the ``dashboard`` section; ConfigError when bad."""
    env = os.environ if env is None else env
    args = argument_parser().parse_args(list(argv or []))
    given = {key: getattr(args, key) for key in FLAGS.values()}
    given.update(overrides or {})
    settings = load(SECTION, keys=DASHBOARD_KEYS, config=args.config, env=env, overrides=given)
    # OLLAMA_HOST is honoured as Ollama's own tools do, after the file and before our own
    # variable and the command line (llama_core.settings applies it only to a key "upstream").
    own_var = f"LLAMA_METRICS_{SECTION.upper()}_OLLAMA_URL"
    if env.get("OLLAMA_HOST") and own_var not in env and given.get("ollama_url") is None:
        raw = env["OLLAMA_HOST"]
        try:
            settings["ollama_url"] = parse_upstream(raw)
        except ValueError as e:
            key = next(k for k in DASHBOARD_KEYS if k.name == "ollama_url")
            raise ConfigError(f"{SECTION}.ollama_url", raw, "OLLAMA_HOST", key.allowed) from e
    return settings


def defaults() -> dict[str, Any]:
    """Every key at its default, parsed: the base of a test configuration."""
    return {key.name: key.parse(key.default) for key in DASHBOARD_KEYS}
