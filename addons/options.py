"""How an addon declares, reads and refuses its options, typed and defaulted from the settings.

Every proxy option is a key of ``llama_core.settings.PROXY_KEYS``: its parser, its default and
what is allowed are written once, there, and the YAML file and ``LLAMA_METRICS_PROXY_*``
read the same key. An addon declares the options it owns in ``load()`` with ``declare``
(mitmproxy then shows them, typed and defaulted, in ``mitmdump --options``), parses them in
``configure()`` with ``read``, and refuses a bad one with ``refuse``, which alone decides
between stopping the start (exit status 2, the key named) and mitmproxy's ``OptionsError``
for a change while the proxy runs.

``--set name=value`` on the command line wins over the file and the environment: ``declare``
takes its value before mitmproxy does (which would refuse a repeated or malformed value
after loading the script, and run the proxy without its addons), parses it as the settings
do, and hands mitmproxy the typed value. ``LlamaConfig`` (``llama_config.py``) sets every
option the command line did not give to its value from the file, the environment or code.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, NoReturn

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from llama_core import settings

logger = logging.getLogger(__name__)

KEYS = {key.name: key for key in settings.PROXY_KEYS}
# Settings that mitmdump's own arguments carry (--mode, --listen-host, -p): never our options.
ARGUMENT_KEYS = frozenset({"upstream", "listen_host", "listen_port"})
OPTION_KEYS = frozenset(KEYS) - ARGUMENT_KEYS
# mitmproxy has no float option type (``--set`` could not parse one): seconds and days are
# strings, parsed by the key like every other value.
_TYPES: dict[type, type] = {bool: bool, int: int, str: str, float: str}


def option_type(name: str) -> type:
    """The mitmproxy type of the option ``name``: that of its default, floats as str."""
    return _TYPES[type(KEYS[name].default)]


def option_value(name: str, value: Any) -> Any:
    """A parsed setting as mitmproxy holds it (a float as its text)."""
    return str(value) if option_type(name) is str and value is not None else value


def declare(loader: Loader, name: str, help: str) -> None:
    """Add the proxy setting ``name`` as an option, and take its ``--set`` value if given."""
    if name in ARGUMENT_KEYS:
        raise ValueError(f"{name} is mitmdump's own argument, not an option of ours")
    key = KEYS[name]  # KeyError: every option is a settings key first
    loader.add_option(name, option_type(name), option_value(name, key.default), help)
    given = command_line(loader, name)
    if given is None:
        return
    raw: Any = given if given is not True else ("true" if option_type(name) is bool else "")
    try:
        value = key.parse(raw)
    except (TypeError, ValueError) as e:
        error = settings.ConfigError(f"proxy.{name}", raw, "command line", key.allowed)
        refuse(str(error), starting=True, cause=e)
    loader.master.options.deferred[name] = option_value(name, value)


def command_line(loader: Loader, name: str) -> Any:
    """The ``--set`` value of ``name`` that waits for its option (None: not given; True: given
    without a value); a repeated one stops the start."""
    deferred = loader.master.options.deferred
    if name not in deferred:
        return None
    given = deferred[name]
    # ``--set`` leaves the strings it could not apply yet in ``.val``; a value set from code
    # before the option existed is kept as it is.
    values = list(given.val) if hasattr(given, "val") else [given]
    if len(values) > 1:
        refuse(f"option given more than once: {name}", starting=True)
    return values[0] if values else True


def read(name: str) -> Any:
    """The option's value, parsed by its key; ConfigError when it cannot be used."""
    key = KEYS[name]
    value = getattr(ctx.options, name)
    try:
        return key.parse(value)
    except (TypeError, ValueError) as e:
        raise settings.ConfigError(f"proxy.{name}", value, "option set", key.allowed) from e


def refuse(problem: str, *, starting: bool, cause: BaseException | None = None) -> NoReturn:
    """Stop the start (exit status 2) or refuse a change of the running proxy (OptionsError).

    A proxy that starts half-configured would measure wrongly or not at all; one that runs
    keeps its last good configuration, and mitmproxy rolls the change back.
    """
    if starting:
        logger.error("llama-metrics: %s", problem)
        raise SystemExit(2) from cause
    raise exceptions.OptionsError(problem) from cause


@contextlib.contextmanager
def refusing(*, starting: bool) -> Iterator[None]:
    """``refuse`` whatever ``ConfigError`` the block raises."""
    try:
        yield
    except settings.ConfigError as e:
        refuse(str(e), starting=starting, cause=e)
