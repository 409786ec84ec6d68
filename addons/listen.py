"""Listens where the configuration says: ``proxy.listen_host`` unless mitmdump was given an address.

mitmproxy listens on every interface unless told otherwise; this proxy listens on
``listen_host`` (127.0.0.1 by default), and refuses an address other machines reach while no
access token (and no opt-out) is configured. It also opens the connection to Ollama only when
a request goes there (``connection_strategy=lazy``), so an unreachable Ollama is a 502 with
an Ollama-shaped body rather than a dropped client connection.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx

from . import options
from .context import ProxyContext

logger = logging.getLogger(__name__)


class Listen:
    """Binds the proxy's client port to the configured address, never every interface."""

    def __init__(self, context: ProxyContext) -> None:
        self.context = context
        self.rebind = False
        self.set_up = False
        self.started = False

    def configure(self, updated: set[str]) -> None:
        if self.set_up and not updated & {"listen_host", "llama_config"}:
            return
        security = self.context.security
        with options.refusing(starting=not self.started):
            if ctx.options.listen_host:
                security.check_listen("proxy.listen_host (--listen-host)", ctx.options.listen_host)
            else:  # bound to the configured address just below
                security.check_listen("proxy.listen_host", self.context.settings["listen_host"])
        if self.set_up:
            return
        self.set_up = True
        changes: dict[str, object] = {"connection_strategy": "lazy"}
        if not ctx.options.listen_host:
            changes["listen_host"] = self.context.settings["listen_host"]
            self.rebind = True
        ctx.options.update(**changes)

    async def running(self) -> None:
        """Listen on ``listen_host`` when the command line named no address.

        mitmproxy binds its servers before this script can change the default, so they are
        brought up again on the configured address right at start.
        """
        self.started = True
        if not self.rebind:
            return
        self.rebind = False
        proxyserver = ctx.master.addons.get("proxyserver")
        host = ctx.options.listen_host
        if proxyserver is None or all(a[0] == host for a in proxyserver.listen_addrs()):
            return
        await proxyserver.servers.update([])
        await proxyserver.setup_servers()
