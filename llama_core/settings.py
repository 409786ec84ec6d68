"""Configuration for every llama-metrics process: defaults, YAML file, environment, command line.

Later wins: defaults in code, then the YAML file (``config/llama-metrics.yml``, or the file
named by ``--config`` / ``LLAMA_METRICS_CONFIG``), then ``LLAMA_METRICS_<SECTION>_<KEY>``
(and ``OLLAMA_HOST`` for the upstream), then the command line. A bad value raises
``ConfigError`` naming the key, the value, where it came from and what is allowed.

``python -m llama_core.settings mitmdump-args`` prints the mitmdump arguments for the configured
proxy (used by ``scripts/up``) and exits 2 on a bad setting.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = ROOT / "config" / "llama-metrics.yml"
ENV_PREFIX = "LLAMA_METRICS_"


class ConfigError(ValueError):
    """A setting that cannot be used; the message says which, from where, and what is allowed."""

    def __init__(self, key: str, value: object, source: str, allowed: str) -> None:
        super().__init__(f"bad setting {key}={value!r} (from {source}): expected {allowed}")
        self.key = key


@dataclass(frozen=True, slots=True)
class Key:
    """One setting: how to parse it, its default, and a description of what is allowed."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    allowed: str


def parse_int(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(value)
        number = int(str(value).strip()) if not isinstance(value, int) else value
        if not lo <= number <= hi:
            raise ValueError(value)
        return number

    return parse


def parse_float(lo: float, hi: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(value)
        if not lo <= number <= hi:
            raise ValueError(value)
        return number

    return parse


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def parse_host(value: Any) -> str:
    text = str(value).strip()
    if not text or any(c.isspace() or c in "/?#" for c in text):
        raise ValueError(value)
    return text


def parse_path(value: Any) -> str:
    return "" if value is None else str(value).strip()


def parse_url(value: Any) -> str:
    """An http(s) URL, or empty for "not configured"."""
    text = "" if value is None else str(value).strip()
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(value)
    return text.rstrip("/")


def parse_url_list(value: Any) -> tuple[str, ...]:
    """A YAML list of URLs, or a comma-separated string of them (as an environment value)."""
    items = value if isinstance(value, list | tuple) else str(value or "").split(",")
    return tuple(url for url in (parse_url(item) for item in items) if url)


def parse_upstream(value: Any) -> str:
    """An Ollama address as ``OLLAMA_HOST`` allows it: ``host``, ``host:port`` or a URL."""
    text = str(value).strip()
    if not text:
        raise ValueError(value)
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(value)
    host = parts.hostname
    if host in ("0.0.0.0", "::"):  # a bind-all address: the server is reached locally
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 11434)
    except ValueError as e:
        raise ValueError(value) from e
    return f"{parts.scheme}://{host}:{port}"


PORT = parse_int(0, 65535)
PROXY_KEYS = (
    Key("upstream", parse_upstream, "http://127.0.0.1:11434", "an http(s) URL or host:port"),
    Key("listen_host", parse_host, "127.0.0.1", "a host name or IP address"),
    Key("listen_port", PORT, 11435, "a port number 0-65535 (0 = any free port)"),
    Key("metrics_host", parse_host, "127.0.0.1", "a host name or IP address"),
    Key("metrics_port", PORT, 8001, "a port number 0-65535 (0 = any free port)"),
    Key("history_path", parse_path, "data/history.db", "a file path, or empty to disable"),
    Key("history_retention_days", parse_float(0.01, 36500), 30.0, "days, 0.01-36500"),
    Key("max_concurrency", parse_int(0, 100_000), 0, "an integer >= 0 (0 = unlimited)"),
    Key("max_queue", parse_int(0, 1_000_000), 100, "an integer >= 0"),
    Key("max_model_labels", parse_int(0, 10_000), 20, "an integer 0-10000"),
    Key("store_prompts", parse_bool, False, "true or false"),
    Key("load_threshold_seconds", parse_float(0, 3600), 0.25, "seconds >= 0"),
    Key("record_path", parse_path, "", "a file path, or empty to disable"),
    Key("inventory_interval_seconds", parse_float(0.1, 3600), 5.0, "seconds, 0.1-3600"),
    Key("resources_interval_seconds", parse_float(0.1, 3600), 5.0, "seconds, 0.1-3600"),
    # The upstream connection (addons/upstream.py declares them as mitmproxy options).
    Key("upstream_connect_retry_seconds", parse_float(0, 300), 5.0,
        "seconds 0-300 (0 = a refused connection is a 502 at once)"),
    Key("upstream_timeout_seconds", parse_float(0, 31_536_000), 0.0,
        "seconds >= 0 (0 = wait for Ollama as long as it takes, as Ollama does)"),
)
SECTIONS: dict[str, tuple[Key, ...]] = {"proxy": PROXY_KEYS}


def config_file(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    """The YAML file to read: the one named, else ``LLAMA_METRICS_CONFIG``, else the default."""
    named = explicit or env.get(ENV_PREFIX + "CONFIG")
    if named:
        return Path(named)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError("config", str(path), "--config", f"a readable YAML file ({e})") from e
    except yaml.YAMLError as e:
        raise ConfigError("config", str(path), "--config", f"valid YAML ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("config", str(path), str(path), "a YAML mapping of sections")
    return data


def load(
    section: str,
    *,
    keys: tuple[Key, ...] | None = None,
    config: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The effective settings of one section, every value parsed and checked.

    ``keys`` describes the section; the proxy's is here, the dashboard and the health daemon
    pass their own. Only this section of the file is read and checked.
    """
    env = os.environ if env is None else env
    keys = SECTIONS[section] if keys is None else keys
    names = {k.name for k in keys}
    raw: dict[str, tuple[Any, str]] = {k.name: (k.default, "default") for k in keys}

    path = config_file(config, env)
    if path is not None:
        data = read_yaml(path)
        block = data.get(section) or {}
        if not isinstance(block, dict):
            raise ConfigError(section, block, str(path), f"a mapping of {section} settings")
        for name, value in block.items():
            if name not in names:
                raise ConfigError(
                    f"{section}.{name}", value, str(path), "one of " + ", ".join(sorted(names))
                )
            raw[name] = (value, str(path))

    if "upstream" in names and env.get("OLLAMA_HOST"):
        raw["upstream"] = (env["OLLAMA_HOST"], "OLLAMA_HOST")
    prefix = f"{ENV_PREFIX}{section.upper()}_"
    for var, value in env.items():
        if var.startswith(prefix):
            name = var[len(prefix) :].lower()
            if name not in names:
                raise ConfigError(var, value, "environment", "one of " + ", ".join(
                    prefix + n.upper() for n in sorted(names)))
            raw[name] = (value, f"environment {var}")

    for name, value in (overrides or {}).items():
        if value is not None:
            raw[name] = (value, "command line")

    settings: dict[str, Any] = {}
    for key in keys:
        value, source = raw[key.name]
        try:
            settings[key.name] = key.parse(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{section}.{key.name}", value, source, key.allowed) from e
    return settings


def mitmdump_args(proxy: Mapping[str, Any]) -> list[str]:
    """The command-line arguments that run ``mitmdump`` as the configured proxy."""
    addon = ROOT / "addons" / "llama_metrics.py"
    return [
        "--mode", f"reverse:{proxy['upstream']}",
        "--listen-host", proxy["listen_host"],
        "-p", str(proxy["listen_port"]),
        "-s", str(addon),
        "--set", "connection_strategy=lazy",
    ]


def main(argv: list[str]) -> int:
    if argv[:1] != ["mitmdump-args"]:
        print("usage: python -m llama_core.settings mitmdump-args [--config FILE]", file=sys.stderr)
        return 2
    config = argv[2] if len(argv) > 2 and argv[1] == "--config" else None
    try:
        proxy = load("proxy", config=config)
    except ConfigError as e:
        print(f"llama-metrics: {e}", file=sys.stderr)
        return 2
    print("\n".join(mitmdump_args(proxy)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
