"""``python -m dashboard``: read the settings, then serve the dashboard until stopped.

A bad setting stops the start with exit status 2 and the ``ConfigError`` message (which
key, which value, from where, what is allowed).
"""

from __future__ import annotations

import logging
import sys

from llama_core.security import load_security
from llama_core.settings import ConfigError

from . import create_app
from .server import check_bind, serve
from .settings import argument_parser, load_settings

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings(args)
        security = load_security(config=argument_parser().parse_args(args).config)
        security.check_listen("dashboard.host", settings["host"])
    except ConfigError as exc:
        print(f"llama-metrics: {exc}", file=sys.stderr)
        return 2
    try:
        check_bind(settings["host"], settings["port"])
    except OSError as exc:
        print(f"llama-metrics: dashboard cannot listen on {settings['host']}:{settings['port']}:"
              f" {exc.strerror or exc}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app({"SETTINGS": settings, "SECURITY": security})
    history = settings["prometheus_url"] or settings["history_path"] or "none"
    logger.info("proxy metrics %s, history %s, health daemon %s, narrative via %s",
                settings["proxy_metrics_url"], history, settings["healthd_url"] or "none",
                settings["ollama_url"])
    serve(app, settings["host"], settings["port"], settings["threads"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
