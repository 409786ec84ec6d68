"""How an addon declares, reads and refuses its options (addons/options.py)."""

from __future__ import annotations

import logging
from typing import Optional

import pytest
from mitmproxy import exceptions
from mitmproxy.addonmanager import Loader
from mitmproxy.test import taddons

from addons import options
from llama_core import settings
from tests.support.addons import start


class Owner:
    """An addon owning one option of each kind: int, bool, str, float (as str)."""

    NAMES = ("max_queue", "store_prompts", "record_path", "load_threshold_seconds")

    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    def load(self, loader: Loader) -> None:
        for name in self.NAMES:
            options.declare(loader, name, f"the {name}")

    def configure(self, updated: set[str]) -> None:
        self.values = {name: options.read(name) for name in self.NAMES}


def test_declared_typed_and_defaulted_from_the_settings() -> None:
    owner = Owner()
    with taddons.context() as tctx:
        start(tctx, owner)
        declared = {n: (tctx.options._options[n].typespec, tctx.options.default(n))
                    for n in Owner.NAMES}
    assert declared == {
        "max_queue": (int, 100),
        "store_prompts": (bool, False),
        "record_path": (str, ""),
        "load_threshold_seconds": (str, "0.25"),  # mitmproxy has no float options
    }
    assert owner.values == {"max_queue": 100, "store_prompts": False, "record_path": "",
                            "load_threshold_seconds": 0.25}


def test_a_command_line_value_is_parsed_as_the_settings_parse_it() -> None:
    """Also what mitmproxy alone would refuse: ``yes`` for a bool, spaces around a number."""
    owner = Owner()
    with taddons.context() as tctx:
        start(tctx, owner, command_line=("max_queue= 7 ", "store_prompts=yes",
                                         "load_threshold_seconds=1.5"))
        assert (tctx.options.max_queue, tctx.options.store_prompts) == (7, True)
        assert tctx.options.load_threshold_seconds == "1.5"
    assert owner.values["load_threshold_seconds"] == 1.5


def test_a_bare_set_of_a_bool_means_true() -> None:
    owner = Owner()
    with taddons.context() as tctx:
        start(tctx, owner, command_line=("store_prompts",))
    assert owner.values["store_prompts"] is True


@pytest.mark.parametrize(("command_line", "message"), [
    (("max_queue=many",),
     "bad setting proxy.max_queue='many' (from command line): expected an integer >= 0"),
    (("store_prompts=maybe",), "proxy.store_prompts='maybe' (from command line)"),
    (("max_queue=1", "max_queue=2"), "option given more than once: max_queue"),
])
def test_a_bad_command_line_stops_the_start_naming_the_key(
    command_line: tuple[str, ...], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    with taddons.context() as tctx, pytest.raises(SystemExit) as stopped:
        start(tctx, Owner(), command_line=command_line)
    assert stopped.value.code == 2
    assert message in caplog.text


def test_read_refuses_a_value_its_key_does_not_allow() -> None:
    owner = Owner()
    with taddons.context() as tctx:
        start(tctx, owner)
        tctx.options.max_queue = -1  # an int, as mitmproxy checks it; not one the key allows
        with pytest.raises(settings.ConfigError, match=r"proxy\.max_queue=-1 \(from option set\)"):
            options.read("max_queue")


def test_refuse_stops_the_start_or_refuses_the_change(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    with pytest.raises(SystemExit) as stopped:
        options.refuse("bad thing", starting=True)
    assert stopped.value.code == 2 and "llama-metrics: bad thing" in caplog.text
    with pytest.raises(exceptions.OptionsError, match="^bad thing$"):
        options.refuse("bad thing", starting=False)
    with pytest.raises(exceptions.OptionsError, match="proxy.max_queue"):
        with options.refusing(starting=False):
            raise settings.ConfigError("proxy.max_queue", -1, "here", "more")


def test_mitmdumps_own_arguments_are_never_our_options() -> None:
    class Wrong:
        def load(self, loader: Loader) -> None:
            options.declare(loader, "listen_port", "no")

    with taddons.context() as tctx, pytest.raises(ValueError, match="listen_port"):
        tctx.master.addons.add(Wrong())


def test_every_option_is_a_settings_key() -> None:
    assert options.OPTION_KEYS <= {k.name for k in settings.PROXY_KEYS}
    assert all(options.option_type(n) in (int, bool, str) for n in options.OPTION_KEYS)
    assert Optional[str] not in {options.option_type(n) for n in options.OPTION_KEYS}
