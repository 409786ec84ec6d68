"""Prints the metric catalogue (llama_core/catalogue.py) as markdown tables, one per process.

    .venv/bin/python scripts/catalogue.py > catalogue.md

The docs' metric reference is this output, so it is regenerated rather than edited by hand.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from llama_core import catalogue
from llama_core.catalogue import Series

SECTIONS = (
    ("The proxy (`addons/`, its metrics port, default 8001)", catalogue.PROXY),
    ("The dashboard (`dashboard/`, its `/metrics`)", catalogue.DASHBOARD),
    ("The health daemon (`healthd/`, its `/metrics`)", catalogue.HEALTHD),
)


def _buckets(series: Series) -> str:
    if not series.buckets:
        return ""
    return f"{len(series.buckets)}: {series.buckets[0]:g} … {series.buckets[-1]:g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(entries: Sequence[Series]) -> list[str]:
    """Markdown lines of one table: a row per series."""
    lines = ["| series | type | labels | unit | buckets | help |",
             "| --- | --- | --- | --- | --- | --- |"]
    for s in entries:
        labels = ", ".join(f"`{label}`" for label in s.labels)
        lines.append(f"| `{s.name}` | {s.type} | {labels} | {s.unit} | {_buckets(s)} | "
                     f"{_cell(s.help)} |")
    return lines


def main() -> int:
    out: list[str] = []
    for title, entries in SECTIONS:
        out += [f"**{title}**", "", *table(entries), ""]
    sys.stdout.write("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
