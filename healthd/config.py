"""The health daemon's settings: its keys, parsers and defaults, loaded by llama_core.settings.

Most keys are scalars. Three are structured: ``check_intervals`` (check name -> seconds, 0
turns a check off), ``thresholds`` (name -> ``{warn, critical}``, merged over the defaults)
and ``webhooks`` (URLs, or ``{url, format}`` mappings). In the environment, where a value is
a string, they take YAML flow syntax (``{resources: 60}``) or ``name=value`` pairs separated
by commas (``resources=60,dashboard=0``; ``cpu_percent.warn=80`` for a threshold).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llama_core import settings
from llama_core.security import Security, load_security
from llama_core.settings import PORT, Key, parse_float, parse_host, parse_int, parse_url
from llama_core.settings import parse_upstream as _parse_upstream
from llama_core.thresholds import HEALTHD_DEFAULTS, Threshold

logger = logging.getLogger(__name__)

SECTION = "healthd"
CHECK_NAMES = (
    "ollama", "ollama_generate", "proxy", "proxy_e2e", "dashboard", "prometheus",
    "resources", "performance",
)
WEBHOOK_FORMATS = ("auto", "generic", "slack")


# The levels are llama_core.thresholds' (the one definition the dashboard and the alert rules
# quote); what a user may set each to is this daemon's own rule: name -> (lowest, highest).
_ALLOWED: dict[str, tuple[float, float]] = {
    "cpu_percent": (0.0, 100.0),
    "memory_percent": (0.0, 100.0),
    "disk_percent": (0.0, 100.0),
    "gpu_memory_percent": (0.0, 100.0),
    "ttft_ratio": (1.0, 1000.0),
    "duration_ratio": (1.0, 1000.0),
    "tokens_per_second_ratio": (0.0, 1.0),
    "error_rate_increase": (0.0, 1.0),
}
DEFAULT_THRESHOLDS: dict[str, Threshold] = dict(HEALTHD_DEFAULTS)


def parse_mapping(value: Any) -> dict[str, Any]:
    """A mapping from YAML, or from an environment string (YAML flow or ``a=1,b.c=2``)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        loaded = yaml.safe_load(value)
        if isinstance(loaded, dict):
            value = loaded
        else:
            value = {}
            for pair in loaded.split(",") if isinstance(loaded, str) else []:
                name, sep, item = pair.partition("=")
                if not sep or not name.strip():
                    raise ValueError(pair)
                *parents, leaf = name.strip().split(".")
                target = value
                for parent in parents:
                    target = target.setdefault(parent, {})
                target[leaf] = item.strip()
    if not isinstance(value, dict):
        raise ValueError(value)
    return {str(k): v for k, v in value.items()}


def parse_check_intervals(value: Any) -> dict[str, float]:
    seconds = parse_float(0, 86400)
    out = {}
    for name, item in parse_mapping(value).items():
        if name not in CHECK_NAMES:
            raise ValueError(name)
        out[name] = seconds(item)
        if 0 < out[name] < 1:
            raise ValueError(item)
    return out


def _level(value: Any, lo: float, hi: float) -> float | None:
    if value is None or str(value).strip().lower() in ("off", "none", "null"):
        return None
    return parse_float(lo, hi)(value)


def parse_thresholds(value: Any) -> dict[str, Threshold]:
    out = dict(DEFAULT_THRESHOLDS)
    for name, levels in parse_mapping(value).items():
        if name not in _ALLOWED or not isinstance(levels, dict):
            raise ValueError(name)
        if set(levels) - {"warn", "critical"}:
            raise ValueError(levels)
        lo, hi = _ALLOWED[name]
        base = out[name]
        worse = base.higher_is_worse
        warn = _level(levels["warn"], lo, hi) if "warn" in levels else base.warn
        crit = _level(levels["critical"], lo, hi) if "critical" in levels else base.critical
        if warn is not None and crit is not None and (warn > crit if worse else warn < crit):
            raise ValueError(levels)  # a warning that comes after the critical level
        out[name] = dataclasses.replace(base, warn=warn, critical=crit)
    return out


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    format: str = "auto"


def parse_webhooks(value: Any) -> tuple[Webhook, ...]:
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        value = yaml.safe_load(value)
    if isinstance(value, dict):
        value = [value]
    if value is None or isinstance(value, str):
        return tuple(Webhook(url) for url in settings.parse_url_list(value))
    if not isinstance(value, list | tuple):
        raise ValueError(value)
    hooks = []
    for item in value:
        if isinstance(item, dict):
            if set(item) - {"url", "format"} or not item.get("url"):
                raise ValueError(item)
            fmt = str(item.get("format", "auto")).strip().lower()
            if fmt not in WEBHOOK_FORMATS:
                raise ValueError(item)
            hooks.append(Webhook(parse_url(item["url"]), fmt))
        elif (url := parse_url(item)) != "":
            hooks.append(Webhook(url))
    return tuple(hooks)


def parse_choice(*choices: str) -> Any:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(value)
        return text

    return parse


def parse_path(value: Any) -> str:
    """A file path as text, or empty; YAML lists, mappings and numbers are refused."""
    if value is None:
        return ""
    if not isinstance(value, str) or "\0" in value:
        raise ValueError(value)
    return value.strip()


def parse_directory(value: Any) -> str:
    path = parse_path(value)
    if not path or not Path(path).is_dir():
        raise ValueError(value)
    return path


def parse_model(value: Any) -> str:
    text = "" if value is None else str(value).strip()
    if any(c.isspace() for c in text):
        raise ValueError(value)
    return text


SECONDS = "seconds, 1-86400"
URL_OR_EMPTY = "an http(s) URL, or empty to turn the check off"
HEALTHD_KEYS = (
    Key("host", parse_host, "127.0.0.1", "a host name or IP address"),
    Key("port", PORT, 8080, "a port number 0-65535 (0 = any free port)"),
    Key("interval_seconds", parse_float(1, 86400), 30.0, SECONDS),
    Key("check_intervals", parse_check_intervals, {},
        "a mapping of check name to seconds (0 = off, else 1-86400); checks: "
        + ", ".join(CHECK_NAMES)),
    Key("timeout_seconds", parse_float(0.1, 300), 5.0, "seconds, 0.1-300"),
    Key("upstream", _parse_upstream, "http://127.0.0.1:11434", "an http(s) URL or host:port"),
    Key("probe_model", parse_model, "", "a model name, or empty for no generation probe"),
    Key("probe_timeout_seconds", parse_float(1, 3600), 120.0, "seconds, 1-3600"),
    Key("proxy_metrics_url", parse_url, "http://127.0.0.1:8001", URL_OR_EMPTY),
    Key("proxy_url", parse_url, "http://127.0.0.1:11435", URL_OR_EMPTY),
    Key("dashboard_url", parse_url, "http://127.0.0.1:3001", URL_OR_EMPTY),
    Key("prometheus_url", parse_url, "", URL_OR_EMPTY),
    Key("history_path", parse_path, "data/history.db",
        "a file path, or empty to turn the performance check off"),
    Key("degradation_window_seconds", parse_float(60, 86400), 300.0, "seconds, 60-86400"),
    Key("baseline_seconds", parse_float(600, 90 * 86400), 86400.0, "seconds, 600-7776000"),
    Key("degradation_min_requests", parse_int(1, 1_000_000), 20, "an integer >= 1"),
    Key("thresholds", parse_thresholds, {},
        "a mapping of threshold name to {warn, critical} (a number, or off), warn no worse "
        "than critical; names: " + ", ".join(
            f"{n} ({lo:g}-{hi:g})" for n, (lo, hi) in _ALLOWED.items())),
    Key("disk_path", parse_directory, "/", "an existing directory on the disk to watch"),
    Key("webhooks", parse_webhooks, (),
        "a list of http(s) URLs or {url, format: auto|generic|slack} mappings"),
    Key("webhook_format", parse_choice(*WEBHOOK_FORMATS), "auto", "auto, generic or slack"),
    Key("webhook_timeout_seconds", parse_float(0.1, 120), 5.0, "seconds, 0.1-120"),
    Key("webhook_retries", parse_int(0, 10), 3, "an integer 0-10"),
    Key("webhook_backoff_seconds", parse_float(0, 60), 1.0, "seconds, 0-60"),
    Key("alert_after_checks", parse_int(1, 1000), 3, "an integer 1-1000"),
    Key("alert_min_severity", parse_choice("warn", "critical"), "warn", "warn or critical"),
    Key("repeat_interval_seconds", parse_float(0, 30 * 86400), 3600.0,
        "seconds, 0-2592000 (0 = never repeat)"),
    Key("state_path", parse_path, "data/healthd-state.json",
        "a file path, or empty to keep alerts in memory only"),
    Key("summary_model", parse_model, "", "a model name, or empty for no AI summary"),
    Key("summary_timeout_seconds", parse_float(1, 600), 30.0, "seconds, 1-600"),
    Key("summary_interval_seconds", parse_float(10, 86400), 300.0, "seconds, 10-86400"),
    Key("summary_max_active_requests", parse_int(0, 100_000), 0,
        "an integer >= 0 (skip the AI summary above this many active or queued requests)"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The effective settings; field names are the key names."""

    host: str
    port: int
    interval_seconds: float
    check_intervals: dict[str, float]
    timeout_seconds: float
    upstream: str
    probe_model: str
    probe_timeout_seconds: float
    proxy_metrics_url: str
    proxy_url: str
    dashboard_url: str
    prometheus_url: str
    history_path: str
    degradation_window_seconds: float
    baseline_seconds: float
    degradation_min_requests: int
    thresholds: dict[str, Threshold]
    disk_path: str
    webhooks: tuple[Webhook, ...]
    webhook_format: str
    webhook_timeout_seconds: float
    webhook_retries: int
    webhook_backoff_seconds: float
    alert_after_checks: int
    alert_min_severity: str
    repeat_interval_seconds: float
    state_path: str
    summary_model: str
    summary_timeout_seconds: float
    summary_interval_seconds: float
    summary_max_active_requests: int
    # The ``security`` section: the token this daemon asks for and sends to our services.
    security: Security = field(default_factory=Security)

    def interval(self, check: str) -> float:
        """Seconds between runs of ``check``; 0 when it is turned off."""
        return self.check_intervals.get(check, self.interval_seconds)



def load(
    *,
    config: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """The effective settings; raises ``llama_core.settings.ConfigError`` on a bad value."""
    values = settings.load(SECTION, keys=HEALTHD_KEYS, config=config, env=env, overrides=overrides)
    return Settings(**values, security=load_security(config=config, env=env))
