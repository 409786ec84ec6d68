"""dashboard/selfmetrics.py: the dashboard's /metrics shows its catalogue entries, cleanly."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from llama_core import catalogue
from tests.stack.catalogue import scrape_problems


def test_own_metrics_are_the_catalogue_s(client: FlaskClient, app: Flask) -> None:
    client.get("/api/snapshot")
    app.extensions["llama_metrics"].live.tick()
    text = client.get("/metrics").get_data(as_text=True)
    assert "_created" not in text
    assert scrape_problems(text, catalogue.DASHBOARD) == []
    shown = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    assert shown == {entry.name for entry in catalogue.DASHBOARD}
