"""healthd/check_metrics.py: the daemon's series are the catalogue's names, types and labels."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import generate_latest

from healthd.alerts import AlertManager
from healthd.check_metrics import make_registry
from healthd.checks import Check
from healthd.monitor import Monitor
from healthd.results import ok
from llama_core import catalogue
from tests.stack.catalogue import scrape_problems


def test_series_are_in_the_catalogue() -> None:
    sender = SimpleNamespace(delivered=2, failed=1)
    monitor = Monitor([Check("ollama", 30, lambda: ok("fine"))], alerts=AlertManager(after=1),
                      sender=sender)  # type: ignore[arg-type]
    monitor.run_all()
    registry = make_registry(monitor)
    text = generate_latest(registry).decode()
    assert "_created" not in text
    # The catalogue's names, types and one-sentence help texts, and nothing else.
    assert scrape_problems(text, catalogue.HEALTHD) == []
    shown = set()
    for family in registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        entry = catalogue.BY_NAME[name]
        shown.add(name)
        assert family.type == entry.type, name
        for sample in family.samples:
            assert set(sample.labels) == set(entry.labels), sample
    assert shown == {entry.name for entry in catalogue.HEALTHD}
