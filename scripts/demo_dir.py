"""The demo's own data directory: its configuration, and how to point other tools at it.

``scripts/up --demo`` must leave the real history, health state and logs alone: its parts
read a copy of the configuration whose upstream is the simulator and whose files are in the
demo directory, and get the same values as environment variables, which outrank any
``LLAMA_METRICS_*`` setting in the user's shell.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from llama_core import settings

CONFIG_NAME = "llama-metrics.yml"


def overrides(directory: Path, upstream: str) -> dict[str, dict[str, str]]:
    """What the demo sets, per section: the simulator as Ollama, its files in ``directory``."""
    history = str(directory / "history.db")
    return {
        "proxy": {"upstream": upstream, "history_path": history, "record_path": ""},
        "dashboard": {"history_path": history, "ollama_url": upstream},
        "healthd": {"upstream": upstream, "history_path": history,
                    "state_path": str(directory / "healthd-state.json")},
    }


def environment(directory: Path, upstream: str) -> dict[str, str]:
    env = {"OLLAMA_HOST": upstream}
    for section, values in overrides(directory, upstream).items():
        for key, value in values.items():
            env[f"{settings.ENV_PREFIX}{section.upper()}_{key.upper()}"] = value
    return env


def write_config(directory: Path, config: str | None, upstream: str,
                 env: Mapping[str, str] | None = None) -> Path:
    """The configuration in use (``config``, or the default file) with the demo's values,
    written to ``directory``; its path. ConfigError when the configuration is unreadable."""
    path = settings.config_file(config, os.environ if env is None else env)
    data: dict[str, Any] = settings.read_yaml(path) if path is not None else {}
    for section, values in overrides(directory, upstream).items():
        data[section] = {**(data.get(section) or {}), **values}
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CONFIG_NAME
    # The copy may hold the access token, as the original may: readable by its owner only.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"# Written by scripts/up --demo from {path or 'the defaults'}: the demo's "
                "upstream and files.\n")
        yaml.safe_dump(data, f, sort_keys=False)
    return target


def hints(config: Path, upstream: str, dashboard_port: int, python: str, pid: int,
          restart_after: float) -> list[str]:
    """How to look at the demo from outside, and how to take its Ollama away."""
    back = (f"; it comes back by itself after {restart_after:g} s" if restart_after > 0
            else "")
    return [
        f"demo data in {config.parent}/ (history, health state, logs); the real data is not "
        "touched",
        f"  report once:      OLLAMA_HOST={upstream} {python} -m healthd check --config {config}",
        f"  second dashboard: OLLAMA_HOST={upstream} {python} -m dashboard --config {config} "
        f"--port {dashboard_port + 1}",
        f"  Ollama outage:    kill -USR1 {pid} stops the simulator, again starts it{back}",
    ]
