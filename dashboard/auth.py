"""With an access token set, every route (page, static files, API, websocket) asks for it.

Scripts send ``Authorization: Bearer <token>``. A browser cannot put a header on a
WebSocket, so opening ``/?token=<token>`` once sets an HttpOnly, SameSite=Strict cookie and
redirects to the same address without the token; the page and its websocket then carry the
cookie. The cookie holds a value derived from the token, not the token itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from llama_core.security import Security

logger = logging.getLogger(__name__)

COOKIE = "llama_metrics_session"
QUERY = "token"
MESSAGE = ("this dashboard needs its access token: send Authorization: Bearer <token>, "
           "or open /?token=<token> once in the browser")


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"llama-metrics dashboard cookie", hashlib.sha256).hexdigest()


def unauthorized(message: str = MESSAGE) -> Response:
    response = jsonify({"error": message})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="llama-metrics"'
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask, security: Security) -> None:
    """Register the check; before any other ``before_request`` so nothing runs unauthorized."""
    if not security.access_token:
        return
    expected = cookie_value(security.access_token)

    @app.before_request
    def _require_token() -> BaseResponse | None:
        given = request.args.get(QUERY)
        if given is not None:
            return _login(given)
        if security.allows(request.headers.get("Authorization")):
            return None
        cookie = request.cookies.get(COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), expected.encode()):
            return None
        return unauthorized()

    def _login(given: str) -> BaseResponse:
        if request.method != "GET" or not security.allows(f"Bearer {given}"):
            return unauthorized("wrong access token in ?token=")
        rest = [(k, v) for k, v in request.args.items(multi=True) if k != QUERY]
        target = request.path + ("?" + urlencode(rest) if rest else "")
        response = redirect(target, code=303)
        response.set_cookie(COOKIE, expected, httponly=True, samesite="Strict",
                            secure=request.is_secure, path="/")
        response.headers["Cache-Control"] = "no-store"
        return response
