"""The configuration hierarchy resolved into the options (addons/llama_config.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from addons.admission import Admission
from addons.admission_limits import AdmissionLimits
from addons.context import ProxyContext
from addons.exporter import Exporter
from addons.llama_config import LlamaConfig
from tests.support.addons import running, start

TOKEN = "t" * 32


@pytest.fixture(autouse=True)
def no_outside_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test writes: no LLAMA_METRICS_* from the shell that runs the tests."""
    for name in list(os.environ):
        if name.startswith("LLAMA_METRICS_") or name == "OLLAMA_HOST":
            monkeypatch.delenv(name)


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "llama-metrics.yml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def addons(context: ProxyContext) -> tuple[LlamaConfig, AdmissionLimits, Exporter]:
    return LlamaConfig(context), AdmissionLimits(context, Admission()), Exporter(context)


def test_later_wins_file_then_environment_then_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_file(tmp_path, "proxy:\n  max_queue: 7\n  max_concurrency: 3\n"
                                 "  metrics_port: 9001\n")
    monkeypatch.setenv("LLAMA_METRICS_PROXY_MAX_CONCURRENCY", "4")
    monkeypatch.setenv("LLAMA_METRICS_PROXY_METRICS_PORT", "9002")
    context = ProxyContext()
    config, limits, exporter = addons(context)
    with taddons.context() as tctx:
        start(tctx, config, limits, exporter,
              command_line=(f"llama_config={path}", "metrics_port=9003"))
        assert (tctx.options.max_queue, tctx.options.max_concurrency,
                tctx.options.metrics_port) == (7, 4, 9003)
    assert (limits.admission.max_queue, limits.admission.max_concurrency) == (7, 4)
    assert exporter.port == 9003
    assert context.settings["max_queue"] == 7


def test_the_command_line_wins_even_with_the_default_value(tmp_path: Path) -> None:
    """``--set store_prompts=false`` over a file saying true: the command line, not the file."""
    path = config_file(tmp_path, "proxy:\n  store_prompts: true\n  max_queue: 5\n")
    context = ProxyContext()
    config, limits, _ = addons(context)
    with taddons.context() as tctx:
        start(tctx, config, limits, command_line=(f"llama_config={path}", "max_queue=100"))
        assert tctx.options.max_queue == 100
    assert limits.admission.max_queue == 100


@pytest.mark.parametrize(("text", "named"), [
    ("proxy:\n  max_queue: lots\n", "proxy.max_queue='lots'"),
    ("proxy:\n  metrics_port_typo: 1\n", "proxy.metrics_port_typo"),
    ("proxy:\n  metrics_host: 0.0.0.0\n", "proxy.metrics_host"),  # remote, and no token
    ("security:\n  access_token: short\n", "security.access_token"),
])
def test_a_bad_file_stops_the_start_naming_the_key(
    tmp_path: Path, text: str, named: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = config_file(tmp_path, text)
    with taddons.context() as tctx, pytest.raises(SystemExit) as stopped:
        start(tctx, *addons(ProxyContext()), command_line=(f"llama_config={path}",))
    assert stopped.value.code == 2
    assert named in caplog.text


def test_a_later_bad_file_is_refused_and_the_last_good_one_stays(tmp_path: Path) -> None:
    good = config_file(tmp_path, "proxy:\n  max_queue: 7\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("proxy:\n  max_queue: -3\n", encoding="utf-8")
    context = ProxyContext()
    config, limits, exporter = addons(context)
    with taddons.context() as tctx:
        script = start(tctx, config, limits, command_line=(f"llama_config={good}",))
        running(tctx, script)
        with pytest.raises(exceptions.OptionsError, match="proxy.max_queue=-3"):
            tctx.options.update(llama_config=str(bad))
        assert (tctx.options.llama_config, tctx.options.max_queue) == (good, 7)
        assert context.settings["max_queue"] == 7


def test_a_new_file_applies_again_except_the_command_line(tmp_path: Path) -> None:
    first = config_file(tmp_path, "proxy:\n  max_queue: 7\n  max_concurrency: 2\n")
    second = tmp_path / "second.yml"
    second.write_text("proxy:\n  max_queue: 9\n  max_concurrency: 5\n", encoding="utf-8")
    context = ProxyContext()
    config, limits, _ = addons(context)
    with taddons.context() as tctx:
        script = start(tctx, config, limits,
                       command_line=(f"llama_config={first}", "max_concurrency=1"))
        running(tctx, script)
        tctx.options.update(llama_config=str(second))
        assert (tctx.options.max_queue, tctx.options.max_concurrency) == (9, 1)
    assert (limits.admission.max_queue, limits.admission.max_concurrency) == (9, 1)


def test_the_security_section_reaches_the_context(tmp_path: Path) -> None:
    path = config_file(tmp_path, f"security:\n  access_token: {TOKEN}\n")
    context = ProxyContext()
    with taddons.context() as tctx:
        start(tctx, LlamaConfig(context), command_line=(f"llama_config={path}",))
    assert context.security.access_token == TOKEN


def test_a_reloaded_script_keeps_what_is_in_effect(tmp_path: Path) -> None:
    """mitmdump loads an edited script again: new addons, the options as they were."""
    path = config_file(tmp_path, "proxy:\n  max_queue: 7\n  max_concurrency: 3\n")
    with taddons.context() as tctx:
        script = start(tctx, *addons(ProxyContext())[:2],
                       command_line=(f"llama_config={path}", "max_queue=9"))
        running(tctx, script)
        tctx.master.addons.remove(script)
        context = ProxyContext()
        config, limits, _ = addons(context)
        start(tctx, config, limits)
        assert (tctx.options.max_queue, tctx.options.max_concurrency) == (9, 3)
    assert (limits.admission.max_queue, limits.admission.max_concurrency) == (9, 3)
    assert context.settings["max_concurrency"] == 3
