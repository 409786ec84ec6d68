"""The configuration hierarchy and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_core import settings
from llama_core.settings import ConfigError


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "llama-metrics.yml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    s = settings.load("proxy", config=write(tmp_path, ""), env={})
    assert s["metrics_port"] == 8001
    assert s["metrics_host"] == "127.0.0.1"
    assert s["upstream"] == "http://127.0.0.1:11434"
    assert s["max_concurrency"] == 0


def test_later_wins_file_then_environment_then_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, "proxy:\n  metrics_port: 9001\n  max_queue: 7\n  max_concurrency: 3\n")
    env = {"LLAMA_METRICS_PROXY_MAX_QUEUE": "8", "LLAMA_METRICS_PROXY_MAX_CONCURRENCY": "4"}
    s = settings.load("proxy", config=path, env=env, overrides={"max_concurrency": "5"})
    assert (s["metrics_port"], s["max_queue"], s["max_concurrency"]) == (9001, 8, 5)


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "proxy:\n  metrics_port: 9123\n")
    assert settings.load("proxy", env={"LLAMA_METRICS_CONFIG": path})["metrics_port"] == 9123


@pytest.mark.parametrize(
    ("ollama_host", "upstream"),
    [
        ("127.0.0.1", "http://127.0.0.1:11434"),
        ("0.0.0.0:11500", "http://127.0.0.1:11500"),
        ("https://gpu.example", "https://gpu.example:443"),
        ("http://[::1]:9", "http://[::1]:9"),
    ],
)
def test_ollama_host_like_ollama_reads_it(tmp_path: Path, ollama_host: str, upstream: str) -> None:
    s = settings.load("proxy", config=write(tmp_path, ""), env={"OLLAMA_HOST": ollama_host})
    assert s["upstream"] == upstream


@pytest.mark.parametrize(
    ("where", "value", "key"),
    [
        ("file", "proxy:\n  metrics_port: 70000\n", "proxy.metrics_port"),
        ("file", "proxy:\n  max_queue: -1\n", "proxy.max_queue"),
        ("file", "proxy:\n  store_prompts: maybe\n", "proxy.store_prompts"),
        ("file", "proxy:\n  metric_port: 1\n", "proxy.metric_port"),
        ("file", "proxy: [1, 2]\n", "proxy"),
        ("file", "proxy:\n  upstream: ftp://x\n", "proxy.upstream"),
        ("env", "LLAMA_METRICS_PROXY_METRICS_PORT=abc", "proxy.metrics_port"),
        ("env", "LLAMA_METRICS_PROXY_NOPE=1", "LLAMA_METRICS_PROXY_NOPE"),
        ("cli", "max_concurrency=lots", "proxy.max_concurrency"),
    ],
)
def test_bad_values_name_the_key_value_and_source(
    tmp_path: Path, where: str, value: str, key: str
) -> None:
    config, env, overrides = write(tmp_path, ""), {}, {}
    if where == "file":
        config = write(tmp_path, value)
    elif where == "env":
        name, _, val = value.partition("=")
        env = {name: val}
    else:
        name, _, val = value.partition("=")
        overrides = {name: val}
    with pytest.raises(ConfigError) as info:
        settings.load("proxy", config=config, env=env, overrides=overrides)
    message = str(info.value)
    assert info.value.key == key
    assert "expected" in message
    source = {"file": "llama-metrics.yml", "env": "environment", "cli": "command line"}[where]
    assert source in message


def test_unreadable_or_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="readable"):
        settings.load("proxy", config=str(tmp_path / "missing.yml"), env={})
    with pytest.raises(ConfigError, match="valid YAML"):
        settings.load("proxy", config=write(tmp_path, "proxy: [unclosed\n"), env={})


def test_shipped_config_file_is_valid() -> None:
    s = settings.load("proxy", config=str(settings.DEFAULT_CONFIG_FILE), env={})
    assert s["listen_port"] == 11435


def test_mitmdump_args(tmp_path: Path) -> None:
    s = settings.load("proxy", config=write(tmp_path, ""), env={"OLLAMA_HOST": "10.0.0.5"})
    args = settings.mitmdump_args(s)
    assert args[:2] == ["--mode", "reverse:http://10.0.0.5:11434"]
    assert args[args.index("--listen-host") + 1] == "127.0.0.1"


def test_other_sections_bring_their_own_keys(tmp_path: Path) -> None:
    keys = (
        settings.Key("port", settings.PORT, 3001, "a port number"),
        settings.Key("hooks", settings.parse_url_list, (), "http(s) URLs"),
        settings.Key("upstream", settings.parse_upstream, "http://127.0.0.1:11434", "a URL"),
    )
    path = write(tmp_path, "proxy:\n  metrics_port: 1\nextra:\n  port: 4000\n")
    env = {"LLAMA_METRICS_EXTRA_HOOKS": "http://a.example/x, https://b.example",
           "OLLAMA_HOST": "gpu:11500"}
    s = settings.load("extra", keys=keys, config=path, env=env)
    assert s == {"port": 4000, "hooks": ("http://a.example/x", "https://b.example"),
                 "upstream": "http://gpu:11500"}
    with pytest.raises(ConfigError, match="extra.hooks"):
        settings.load("extra", keys=keys, config=path,
                      env={"LLAMA_METRICS_EXTRA_HOOKS": "ftp://nope"})


# One bad value for every proxy key; the test below fails if a key is added without one.
BAD_PROXY_VALUES = {
    "upstream": "ftp://ollama",
    "listen_host": "two words",
    "listen_port": "65536",
    "metrics_host": "host/path",
    "metrics_port": "-1",
    "history_path": None,  # every path is allowed; empty disables history
    "history_retention_days": "0",
    "max_concurrency": "-2",
    "max_queue": "lots",
    "max_model_labels": "10001",
    "store_prompts": "sometimes",
    "load_threshold_seconds": "-0.5",
    "record_path": None,  # every path is allowed; empty (the default) records nothing
    "inventory_interval_seconds": "0",
    "resources_interval_seconds": "7200",
    "upstream_connect_retry_seconds": "301",
    "upstream_timeout_seconds": "-1",
}


def test_every_proxy_key_has_a_refusal_case() -> None:
    assert set(BAD_PROXY_VALUES) == {k.name for k in settings.PROXY_KEYS}


@pytest.mark.parametrize(
    "key", [k for k, v in BAD_PROXY_VALUES.items() if v is not None]
)
@pytest.mark.parametrize("source", ["file", "environment", "command line"])
def test_every_proxy_key_refuses_a_bad_value(tmp_path: Path, key: str, source: str) -> None:
    bad = BAD_PROXY_VALUES[key]
    config, env, overrides = write(tmp_path, ""), {}, {}
    if source == "file":
        config = write(tmp_path, f"proxy:\n  {key}: {bad!r}\n")
    elif source == "environment":
        env = {f"LLAMA_METRICS_PROXY_{key.upper()}": str(bad)}
    else:
        overrides = {key: bad}
    with pytest.raises(ConfigError) as info:
        settings.load("proxy", config=config, env=env, overrides=overrides)
    message = str(info.value)
    assert info.value.key == f"proxy.{key}"
    assert repr(bad) in message and "expected" in message
    assert source in message if source != "file" else "llama-metrics.yml" in message
