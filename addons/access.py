"""The proxy's client port asks for the access token, when one is set, before anything is forwarded.

A request without ``Authorization: Bearer <token>`` gets 401 with an Ollama-shaped body and
is never forwarded; it is still counted (status 401, error type ``unauthorized``). One whose
body is over 1 MiB or of unknown length has its connection closed instead: mitmproxy would
read all of it before answering. This is
decided on the headers: a large body the tap streams upstream as it comes would be on its
way before a ``request`` hook could refuse it. An accepted request loses that header before
it goes upstream (a refused one too, so that mitmdump's flow log never shows it): the token
is ours, not Ollama's. The token is the configuration's ``security`` section, which
``LlamaConfig`` resolves into the shared context; a new ``llama_config`` brings a new one.
"""

from __future__ import annotations

import json
import logging

from mitmproxy import http

from .context import ProxyContext
from .tap import JSON_TYPE, KEY, STREAM_REQUEST_BODY_OVER, content_length

logger = logging.getLogger(__name__)

UNAUTHORIZED = (
    "llama-metrics proxy: this proxy needs an access token: send Authorization: Bearer <token> "
    "(the openai client's api_key; ollama.Client(headers={'Authorization': 'Bearer <token>'}))"
)


class AccessControl:
    def __init__(self, context: ProxyContext) -> None:
        self.context = context
        self.security = context.security

    def configure(self, updated: set[str]) -> None:
        if "llama_config" in updated:
            self.security = self.context.security

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not self.security.access_token:
            return
        allowed = self.security.allows(flow.request.headers.get("authorization"))
        # Ours either way: not for the upstream, nor for mitmdump's flow log (flow_detail 2+).
        flow.request.headers.pop("authorization", None)
        if allowed:
            return
        st = flow.metadata.get(KEY)
        if st is not None:
            st.error_type = "unauthorized"
        flow.request.stream = False  # not a byte of it goes anywhere
        length = content_length(flow.request.headers)
        if length is None and "chunked" in flow.request.headers.get("transfer-encoding", ""):
            length = STREAM_REQUEST_BODY_OVER + 1  # unknown: as large as it likes
        if length is not None and length > STREAM_REQUEST_BODY_OVER:
            # mitmproxy reads a body whole before it sends an answer: a client without the
            # token could make it hold gigabytes. Close the connection instead (counted all
            # the same: 401, unauthorized).
            logger.info("refused without its body (no access token): %s %s",
                        flow.request.method, flow.request.path)
            flow.kill()
            return
        flow.response = http.Response.make(
            401,
            json.dumps({"error": UNAUTHORIZED}),
            {"Content-Type": JSON_TYPE, "WWW-Authenticate": 'Bearer realm="llama-metrics"'},
        )
