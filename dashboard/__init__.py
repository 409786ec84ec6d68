"""The llama-metrics dashboard: a Flask app, built by ``create_app``, one blueprint a feature.

``python -m dashboard`` serves it with gunicorn; tests build it with a test configuration
(``SETTINGS`` over the defaults, ``SECURITY`` (a ``llama_core.security.Security``), and seams:
``TRANSPORT`` (a ``dashboard.http_client.Transport``), ``CLOCK``, ``HISTORY_SOURCE``,
``AUTOSTART``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider

from llama_core.security import Security, load_security

from . import auth
from .http_client import Client, Transport, urllib_transport
from .settings import defaults, load_settings
from .sources import Sources, init_app

logger = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


class JSONProvider(DefaultJSONProvider):
    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return super().dumps(finite(obj), **kwargs)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """The dashboard app; without ``test_config`` its settings come from YAML and environment."""
    app = Flask(__name__)
    app.json = JSONProvider(app)
    if test_config is None:
        settings = load_settings([])
        security = load_security()
    else:
        app.config.from_mapping(test_config)
        settings = {**defaults(), **test_config.get("SETTINGS", {})}
        security = test_config.get("SECURITY") or Security()
    app.config["SETTINGS"] = settings
    auth.init_app(app, security)  # first: nothing below runs for a request without the token
    sources = Sources(
        settings,
        client=own_client(settings, security, app.config.get("TRANSPORT") or urllib_transport),
        clock=app.config.get("CLOCK") or time.time,
        history=app.config.get("HISTORY_SOURCE"),
        autostart=app.config.get("AUTOSTART", True),
    )
    init_app(app, sources)

    from .views import (
        analysis,
        clients,
        errors,
        health,
        history,
        live,
        models,
        pages,
        requests,
        selfmetrics,
    )

    for module in (pages, live, history, models, requests, analysis, selfmetrics, health,
                   clients):
        app.register_blueprint(module.bp)
    errors.init_app(app)
    selfmetrics.init_app(app)
    clients.init_app(app, security.clients_file, app.config.get("CLOCK") or time.time)

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    return app


def own_client(settings: Mapping[str, Any], security: Security, transport: Transport) -> Client:
    """The client that carries the access token (when one is set) to the proxies and the
    health daemon, and to nothing else."""
    if not security.access_token:
        return Client(transport)
    own = [*str(settings["proxy_metrics_url"]).split(","), str(settings["healthd_url"])]
    return Client(transport, token_headers=security.headers(), own_urls=own)
