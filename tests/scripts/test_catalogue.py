"""scripts/catalogue.py: the markdown tables of the metric catalogue, a row per series."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llama_core import catalogue

ROOT = Path(__file__).resolve().parents[2]


def test_prints_a_row_for_every_series() -> None:
    # PYTHONPATH stands in for the editable install of the project, which puts it there.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "catalogue.py")], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    lines = done.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [s.name for s in catalogue.ALL]
    assert all(row.count(" | ") == 5 for row in rows)  # six cells: nothing broke a row
    assert sum(line == "| series | type | labels | unit | buckets | help |" for line in lines) == 3
    ttft = next(row for row in rows if row.startswith(f"| `{catalogue.TTFT.name}`"))
    assert ttft == (f"| `{catalogue.TTFT.name}` | histogram | `endpoint`, `model` | seconds | "
                    f"22: 0.001 … 2560 | {catalogue.TTFT.help} |")
