"""JSON errors for the API: ``{"error": "..."}`` with the status (unknown /api paths: 404)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flask import Flask, Response, abort, jsonify, request
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)


def check_params(allowed: Iterable[str]) -> None:
    """400 for a query parameter this endpoint does not take (a typo should not pass)."""
    names = set(allowed)
    for name in request.args:
        if name not in names:
            expected = ", ".join(sorted(names)) or "none"
            abort(400, description=f"unknown parameter {name!r}; this endpoint takes: {expected}")


def error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), status


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response | tuple[Response, int] | HTTPException:
        if not request.path.startswith("/api/"):
            return exc
        if exc.code == 404:
            return error(404, f"no such API endpoint: {request.path}; try /api/snapshot, "
                              "/api/history, /api/requests, /api/models, /api/analysis, "
                              "/api/energy")
        return error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int] | tuple[str, int]:
        logger.exception("%s %s failed", request.method, request.path)
        if request.path.startswith("/api/"):
            return error(500, f"internal error: {type(exc).__name__}")
        return "internal error", 500
