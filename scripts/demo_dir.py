"""The demo's own data directory: its configuration, and how to point other tools at it.

``scripts/up --demo`` must leave the real history, health state and logs alone: its parts
read a copy of the configuration whose upstream is the simulator and whose files are in the
demo directory, and get the same values as environment variables, which outrank any
``LLAMA_METRICS_*`` setting in the user's shell.

The demo also shows who uses Ollama: it writes a clients file (``clients.yml``, three named
clients with their own keys, one with a daily token budget; docs/clients.md) that the
simulated traffic sends keys from, records Open WebUI's user header, and gives its parts an
access token of their own (with a clients file, our own processes need one: the dashboard
then asks the browser for it once, ``/?token=``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from llama_core import settings

CONFIG_NAME = "llama-metrics.yml"
CLIENTS_NAME = "clients.yml"
TOKEN_NAME = "access-token"
USER_HEADER = "X-OpenWebUI-User-Name"
# The demo's clients: a chat front end, a CI job with a budget it reaches within minutes of
# demo traffic (then 429 until midnight UTC), and a notebook.
CLIENTS = {"open-webui": 0, "ci-bot": 15_000, "notebook": 0}


def _private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only (it holds keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def secrets_of(directory: Path) -> tuple[str, Path]:
    """The demo's access token and clients file in ``directory``, made on first use."""
    directory.mkdir(parents=True, exist_ok=True)
    token_path, clients_path = directory / TOKEN_NAME, directory / CLIENTS_NAME
    if not token_path.is_file():
        _private(token_path, secrets.token_urlsafe(24) + "\n")
    if not clients_path.is_file():
        lines = ["# The demo's clients (scripts/up --demo); docs/clients.md has the format.",
                 "clients:"]
        for name, budget in CLIENTS.items():
            lines += [f"  {name}:", f'    token: "{name}-{secrets.token_urlsafe(18)}"']
            if budget:
                lines.append(f"    daily_token_budget: {budget}")
        _private(clients_path, "\n".join(lines) + "\n")
    return token_path.read_text(encoding="utf-8").strip(), clients_path


def overrides(directory: Path, upstream: str) -> dict[str, dict[str, str]]:
    """What the demo sets, per section: the simulator as Ollama, its files in ``directory``,
    its clients and its access token."""
    history = str(directory / "history.db")
    token, clients = secrets_of(directory)
    return {
        "security": {"access_token": token, "access_token_file": "",
                     "clients_file": str(clients), "allow_anonymous": "false",
                     "client_user_header": USER_HEADER},
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
    # The copy holds the demo's access token: readable by its owner only.
    _private(target, f"# Written by scripts/up --demo from {path or 'the defaults'}: the "
                     "demo's upstream, files, clients and token.\n"
                     + yaml.safe_dump(data, sort_keys=False))
    return target


def hints(config: Path, upstream: str, dashboard_port: int, python: str, pid: int,
          restart_after: float, dashboard_url: str = "") -> list[str]:
    """How to look at the demo from outside, and how to take its Ollama away."""
    back = (f"; it comes back by itself after {restart_after:g} s" if restart_after > 0
            else "")
    token, clients = secrets_of(config.parent)
    opened = [f"  open first:       {dashboard_url.rstrip('/')}/?token={token}  (the demo's "
              "access token; the browser keeps it)"] if dashboard_url else []
    return [
        f"demo data in {config.parent}/ (history, health state, logs, {CLIENTS_NAME}); the "
        "real data is not touched",
        *opened,
        f"  clients:          {', '.join(CLIENTS)} (keys in {clients})",
        f"  report once:      OLLAMA_HOST={upstream} {python} -m healthd check --config {config}",
        f"  second dashboard: OLLAMA_HOST={upstream} {python} -m dashboard --config {config} "
        f"--port {dashboard_port + 1}",
        f"  Ollama outage:    kill -USR1 {pid} stops the simulator, again starts it{back}",
    ]
