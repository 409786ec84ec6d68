"""Owns ``llama_config``: resolves the configuration and sets every option the command line left.

Later wins: defaults in code, the YAML file (this option, else ``LLAMA_METRICS_CONFIG``,
else ``config/llama-metrics.yml``), ``LLAMA_METRICS_PROXY_*``, then ``--set`` on the command
line. This addon reads the ``proxy`` and ``security`` sections (``llama_core.settings``,
``llama_core.security``) into the shared context and sets each option of the other addons
that the command line did not give to its resolved value, so every addon reads its options
the mitmproxy way and ``ctx.options`` shows what is in effect.

Composed first: its ``load()`` sees which options the command line gives before the addons
that declare them take those values (``options.declare``). A new ``llama_config`` while the
proxy runs applies the new file and environment again to every option but those the command
line gave. (After mitmdump reloads the edited script, the options keep what was in effect;
the command line's values are then no longer told apart from the others.)
"""

from __future__ import annotations

import logging
from typing import Any

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from llama_core import settings
from llama_core.security import load_security

from . import options
from .context import ProxyContext

logger = logging.getLogger(__name__)


class LlamaConfig:
    """The configuration hierarchy, resolved into the context and the other addons' options."""

    def __init__(self, context: ProxyContext) -> None:
        self.context = context
        self.command_line: frozenset[str] = frozenset()  # options given with --set
        self.resolved = False
        self.reloaded = False
        self.started = False  # mitmproxy's running hook came: a bad setting is refused, not fatal

    def load(self, loader: Loader) -> None:
        # mitmdump loads the script again when the file changes: the options are there already
        # and hold what is in effect, the command line's values included.
        self.reloaded = "llama_config" in loader.master.options
        loader.add_option(
            "llama_config", str, "", "YAML configuration file (default config/llama-metrics.yml)."
        )
        options.command_line(loader, "llama_config")  # refuses a repeated one
        self.command_line = frozenset(loader.master.options.deferred) & options.OPTION_KEYS

    def configure(self, updated: set[str]) -> None:
        if self.resolved and "llama_config" not in updated:
            return
        starting = not self.started
        path = ctx.options.llama_config or None
        given = {name: getattr(ctx.options, name) for name in self.command_line
                 if name in ctx.options}
        with options.refusing(starting=starting):
            proxy = settings.load("proxy", config=path, overrides=given)
            security = load_security(config=path)
        old = self.context.settings, self.context.security
        self.context.settings, self.context.security = proxy, security
        first, self.resolved = not self.resolved, True
        if first and self.reloaded:
            return
        changes: dict[str, Any] = {}
        for name in sorted(options.OPTION_KEYS - self.command_line):
            value = options.option_value(name, proxy[name])
            if name in ctx.options and getattr(ctx.options, name) != value:
                changes[name] = value
        try:
            # Each owner parses and applies its own (configure); one that refuses rolls all back.
            ctx.options.update(**changes)
        except exceptions.OptionsError:
            self.context.settings, self.context.security = old
            raise

    def running(self) -> None:
        self.started = True
