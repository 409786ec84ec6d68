"""The proxy's client port decides who a request is from, before anything is forwarded.

Without a clients file, the access token (when one is set) is the one key: a request without
``Authorization: Bearer <token>`` gets 401. With ``security.clients_file`` the key names the
client (``llama_core.clients``); a missing or unknown one gets 401 unless ``allow_anonymous``
lets it in as ``anonymous``. The access token then counts only on requests marked as our own
(``X-Llama-Metrics-Source``): it is our processes' credential, not a client's, and a mark
without it is not believed (a client could otherwise leave its budget and its counts).
``docs/clients.md`` has the table.

A refused request gets 401 with an Ollama-shaped body and is never forwarded; it is still
counted (status 401, error type ``unauthorized``, client ""). One whose body is over 1 MiB or
of unknown length has its connection closed instead: mitmproxy would read all of it before
answering. This is decided on the headers: a large body the tap streams upstream as it comes
would be on its way before a ``request`` hook could refuse it. The ``Authorization`` header
never goes upstream (nor into mitmdump's flow log): the key is ours, not Ollama's.

With ``client_user_header`` set, that header's value is the request's user (history only).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from mitmproxy import http

from llama_core.clients import ANONYMOUS, Clients

from .accounting import FlowState
from .context import ProxyContext
from .tap import JSON_TYPE, KEY, STREAM_REQUEST_BODY_OVER, content_length

logger = logging.getLogger(__name__)

UNAUTHORIZED = (
    "llama-metrics proxy: this proxy needs an access token: send Authorization: Bearer <token> "
    "(the openai client's api_key; ollama.Client(headers={'Authorization': 'Bearer <token>'}))"
)
NO_CLIENT = (
    "llama-metrics proxy: this proxy needs a client token: send Authorization: Bearer "
    "<your client's token> (the openai client's api_key; "
    "ollama.Client(headers={'Authorization': 'Bearer <token>'}))"
)
MAX_USER = 200  # characters of a user name kept


def user_of(value: str | None) -> str | None:
    """The user a front end named, printable and bounded; None when there is none."""
    if value is None:
        return None
    text = "".join(c for c in value.strip() if c.isprintable())[:MAX_USER]
    return text or None


class AccessControl:
    def __init__(
        self, context: ProxyContext, clients: Callable[[], Clients | None] | None = None
    ) -> None:
        self.context = context
        self.security = context.security
        # The clients in force now (None: no clients file); addons/clients.py reloads them.
        self.clients = clients or (lambda: None)

    def configure(self, updated: set[str]) -> None:
        if "llama_config" in updated:
            self.security = self.context.security

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        st = flow.metadata.get(KEY)
        clients = self.clients()
        if clients is None:
            allowed = self.without_clients(flow)
        else:
            allowed = self.with_clients(flow, st, clients)
        if not allowed:
            self.refuse(flow, st, NO_CLIENT if clients is not None else UNAUTHORIZED)
            return
        header = self.security.client_user_header
        if header and st is not None and st.internal is None:
            st.user = user_of(flow.request.headers.get(header))

    def without_clients(self, flow: http.HTTPFlow) -> bool:
        if not self.security.access_token:
            return True
        allowed = self.security.allows(flow.request.headers.get("authorization"))
        # Ours either way: not for the upstream, nor for mitmdump's flow log (flow_detail 2+).
        flow.request.headers.pop("authorization", None)
        return allowed

    def with_clients(self, flow: http.HTTPFlow, st: FlowState | None, clients: Clients) -> bool:
        authorization = flow.request.headers.get("authorization")
        flow.request.headers.pop("authorization", None)
        name = clients.identify(authorization)
        own = bool(self.security.access_token) and self.security.allows(authorization)
        if st is None:  # the flow began before the tap was loaded: let it be
            return name is not None or own or self.security.allow_anonymous
        if own and name is None and st.internal is not None:
            return True  # one of our processes: counted apart, never a client
        st.internal = None  # a mark without the access token is not believed
        if name is not None:
            st.client = name
            return True
        if self.security.allow_anonymous:
            st.client = ANONYMOUS
            return True
        return False

    @staticmethod
    def refuse(flow: http.HTTPFlow, st: FlowState | None, message: str) -> None:
        if st is not None:
            st.error_type = "unauthorized"
            st.client = None
        flow.request.stream = False  # not a byte of it goes anywhere
        length = content_length(flow.request.headers)
        if length is None and "chunked" in flow.request.headers.get("transfer-encoding", ""):
            length = STREAM_REQUEST_BODY_OVER + 1  # unknown: as large as it likes
        if length is not None and length > STREAM_REQUEST_BODY_OVER:
            # mitmproxy reads a body whole before it sends an answer: a client without the
            # token could make it hold gigabytes. Close the connection instead (counted all
            # the same: 401, unauthorized).
            logger.info("refused without its body (no valid token): %s %s",
                        flow.request.method, flow.request.path)
            flow.kill()
            return
        flow.response = http.Response.make(
            401,
            json.dumps({"error": message}),
            {"Content-Type": JSON_TYPE, "WWW-Authenticate": 'Bearer realm="llama-metrics"'},
        )
