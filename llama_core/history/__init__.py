"""The request history database: its schema, the proxy's writer, the rollup and the readers.

``schema`` (columns, version, record <-> row), ``database`` (open for writing, migrate, insert
with the rollup), ``writer`` (the proxy's batched background writer), ``rollup`` (per-minute
sums and their SQL), ``readers`` (read-only connections and every query the dashboard and the
health daemon run). Nothing here imports mitmproxy or Flask.
"""
