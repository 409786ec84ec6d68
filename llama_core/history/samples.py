"""The history file's machine samples (schema 5): their tables, rows and SQL.

The proxy's resource poller hands each ``ResourceSample`` to the history writer, which keeps
one every ``SAMPLE_INTERVAL_S`` as one ``samples`` row (host CPU and memory, Ollama's
processes, the models' VRAM) and one ``gpu_samples`` row per NVIDIA GPU, with the same ``ts``.
A machine without a GPU has no ``gpu_samples`` rows: its GPU series are absent, not zero.
The writer inserts and prunes them (``database``, ``writer``), the readers average them per
chart bucket (``readers.sample_buckets``); both take their SQL from here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_core.sampler import ResourceSample

logger = logging.getLogger(__name__)

# One row per 15 s: a month is 172,800 rows (about 10 MB), and a chart step shorter than this
# (the 15 min window's 5 s) shows the latest sample rather than gaps (readers.sample_buckets).
SAMPLE_INTERVAL_S = 15.0

# (column, SQL type); the names are ResourceSample's fields, and vram_models_bytes.
SAMPLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts", "REAL NOT NULL"),
    ("cpu_percent", "REAL"),
    ("memory_used_bytes", "INTEGER"),
    ("memory_total_bytes", "INTEGER"),
    ("ollama_rss_bytes", "INTEGER"),
    ("ollama_cpu_percent", "REAL"),
    ("vram_models_bytes", "INTEGER"),
)
# (column, SQL type); the names are GpuSample's fields, ``gpu`` its index.
GPU_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts", "REAL NOT NULL"),
    ("gpu", "INTEGER NOT NULL"),
    ("name", "TEXT NOT NULL"),
    ("utilization_percent", "REAL"),
    ("memory_used_bytes", "INTEGER"),
    ("memory_total_bytes", "INTEGER"),
    ("temperature_celsius", "REAL"),
    ("power_watts", "REAL"),
)


def _create(table: str, columns: tuple[tuple[str, str], ...]) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {table} ("
            + ", ".join(f"{name} {sqltype}" for name, sqltype in columns) + ")")


SAMPLES_SCHEMA = (
    _create("samples", SAMPLE_COLUMNS),
    "CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts)",
    _create("gpu_samples", GPU_COLUMNS),
    "CREATE INDEX IF NOT EXISTS gpu_samples_ts ON gpu_samples (ts)",
)


def _insert(table: str, columns: tuple[tuple[str, str], ...]) -> str:
    names = [name for name, _ in columns]
    return (f"INSERT INTO {table} ({', '.join(names)})"
            f" VALUES ({', '.join(':' + n for n in names)})")


INSERT_SAMPLE = _insert("samples", SAMPLE_COLUMNS)
INSERT_GPU_SAMPLE = _insert("gpu_samples", GPU_COLUMNS)
# Chunks, as for requests: pruning never holds the write lock for long.
PRUNE = tuple(
    f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE ts < ? LIMIT ?)"
    for table in ("samples", "gpu_samples")
)

# Averages over one chart bucket (params: lo, hi). Memory percent is used over total of the
# same rows, as the live page computes it over the GPUs of one scrape.
HOST_BUCKET = (
    "SELECT COUNT(*) AS samples, AVG(cpu_percent) AS cpu_percent,"
    " AVG(100.0 * memory_used_bytes / NULLIF(memory_total_bytes, 0)) AS memory_percent,"
    " AVG(memory_used_bytes) AS memory_used_bytes,"
    " AVG(ollama_rss_bytes) AS ollama_rss_bytes, AVG(ollama_cpu_percent) AS ollama_cpu_percent,"
    " AVG(vram_models_bytes) AS vram_models_bytes"
    " FROM samples WHERE ts >= ? AND ts < ?"
)
GPU_BUCKET = (
    "SELECT COUNT(*) AS samples, COUNT(DISTINCT gpu) AS gpus,"
    " AVG(utilization_percent) AS gpu_utilization_percent,"
    " 100.0 * SUM(CASE WHEN memory_total_bytes > 0 THEN memory_used_bytes END)"
    " / SUM(CASE WHEN memory_used_bytes IS NOT NULL THEN NULLIF(memory_total_bytes, 0) END)"
    " AS gpu_memory_percent,"
    " AVG(power_watts) AS gpu_power_watts, MAX(temperature_celsius) AS gpu_temperature_celsius"
    " FROM gpu_samples WHERE ts >= ? AND ts < ?"
)


@dataclass(frozen=True, slots=True)
class SampleRows:
    """One sample as rows: the ``samples`` row and a ``gpu_samples`` row per GPU."""

    ts: float
    host: dict[str, Any]
    gpus: tuple[dict[str, Any], ...]


def sample_rows(sample: ResourceSample, ts: float,
                vram_models_bytes: int | None = None) -> SampleRows:
    """The rows of ``sample`` taken at ``ts`` (epoch seconds)."""
    host = {
        "ts": ts,
        "cpu_percent": sample.cpu_percent,
        "memory_used_bytes": sample.memory_used_bytes,
        "memory_total_bytes": sample.memory_total_bytes,
        "ollama_rss_bytes": sample.ollama_rss_bytes,
        "ollama_cpu_percent": sample.ollama_cpu_percent,
        "vram_models_bytes": vram_models_bytes,
    }
    gpus = tuple({
        "ts": ts, "gpu": gpu.index, "name": gpu.name,
        "utilization_percent": gpu.utilization_percent,
        "memory_used_bytes": gpu.memory_used_bytes,
        "memory_total_bytes": gpu.memory_total_bytes,
        "temperature_celsius": gpu.temperature_celsius,
        "power_watts": gpu.power_watts,
    } for gpu in sample.gpus)
    return SampleRows(ts, host, gpus)
