"""Simulate an Ollama server on the wire, as the upstream for tests, the demo and benchmarks.

It speaks Ollama's native API (/api/generate, /api/chat, /api/embed, /api/embeddings,
/api/pull, /api/push, /api/create (progress only),
/api/tags, /api/ps, /api/version, /api/show, /api/blobs/:digest, GET and HEAD /) and the
OpenAI-compatible API
(/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models) with the bytes a real
Ollama sends: compact JSON in Go's key order, NDJSON or SSE streams with one HTTP chunk per
token, durations in nanoseconds. Text comes deterministically from a small vocabulary that
includes multi-byte UTF-8, so clients and proxies meet code points split across chunks.

Run it: ``python -m ollama_sim --port 11434 --token-rate 50 --ttft 0.2`` (or
``python scripts/ollama_sim.py ...``, the same command line). Once it
accepts connections it prints one line, ``ollama-sim listening on http://HOST:PORT`` (the URL
is the last word; ``--port 0`` picks a free port). Ctrl-C or SIGTERM stops it.
With ``--cassette FILE [--speed X]`` it serves recorded traffic instead (docs/cassettes.md).

From tests (``tests/support/sim.py`` holds the ``sim`` fixture)::

    from ollama_sim import SimServer

    with SimServer(tokens=5) as sim:
        ollama.Client(host=sim.url).chat(model="llama3.2", messages=[...])
        sim.reports  # one dict per finished inference request

Faults, for every request with ``--fault MODE`` or for one with the header ``X-Sim-Fault``:
  close_mid_stream  close the connection after a few chunks, without the terminating chunk
  malformed_line    one non-JSON line mid-stream; the stream then finishes normally
  error_in_stream   status 200, a few chunks, an error object, then a clean end
  status:CODE       that status with an Ollama-shaped error body
  split             every chunk written as several HTTP chunks cut at seeded random bytes,
                    one cut inside a UTF-8 sequence where the chunk has one
  no_counts         final chunk without counts and durations (OpenAI: no usage)
  no_usage          OpenAI stream without the usage chunk even when asked for
  stall             after the first chunk, send nothing more until the client leaves
  refuse            reset each connection once accepted (as a header: reset this one)
  reset             like close_mid_stream, but a TCP reset (SO_LINGER 0) instead of a close
  invalid_utf8      the second content chunk's text is bytes that are not UTF-8
  truncated_tail    the final line (the one with the counts) cut in half, then a clean end
  big_body:MB       MB mebibytes of text, streamed as 64 KiB content chunks or as one body;
                    on /api/embed and /v1/embeddings one vector repeated to MB MiB, the count
                    last (a batch of thousands of inputs; Ollama 0.6.0-0.32.15)
  swallowed_error   what Ollama's OpenAI writers make of a mid-stream error (every version):
                    an empty chunk, then the end, without [DONE]; native: as error_in_stream
  none              (header only) no fault, whatever --fault says
On /api/pull, /api/push and /api/create (ollama_sim/progress.py) error_in_stream sends an
{"error": ...} line after three progress lines, as Ollama 0.12.6 on does (status 200).
A non-streamed response meets the same faults on its one body: close_mid_stream and stall
send half of it, malformed_line sends a truncated body, error_in_stream becomes a 500.
reset sends half of it, then a reset; truncated_tail is malformed_line; invalid_utf8 ends
its text with bytes that are not UTF-8.

Other request headers: ``X-Sim-Tokens: N`` (length the model would stop at),
``X-Sim-Token-Rate: R``, ``X-Sim-TTFT: S`` and ``X-Sim-Hold: KEY`` (after the first content
chunk, wait for ``SimServer.release(KEY)`` or ``POST /_sim/release/KEY``),
``X-Sim-Clock: S`` (the clock stands at S for the request: repeatable bytes, ollama_sim/clock.py),
``X-Sim-Encoding: gzip|deflate|br|zstd`` (the answer compressed, as a hop in front of Ollama
may; ollama_sim/compressed.py) and ``X-Sim-Cached: N`` (OpenAI usage reports N cached prompt
tokens, as an OpenAI-compatible server may; local Ollama never does). /v1 request bodies in
``Content-Encoding: zstd`` are read, as Ollama 0.18.0 on reads them. Control endpoints:
``GET /_sim/reports``, ``GET /_sim/connections`` (open client connections other than the
asking one), ``POST /_sim/reset`` (clears reports and releases), ``POST /_sim/release/KEY``.

Requests are read as Ollama's Go decoder reads them (``godecode``); the router answers CORS
preflights, foreign origins and wrong methods as gin does (``gin``, ``--origins``); loads and
unloads answer as ``server/routes.go`` does (``lifecycle``); ``--version`` picks the Ollama
release whose behaviour to imitate where it changed (``versions``). ``SimServer.restart(S)``
or ``POST /_sim/restart?down=S`` stops listening for S seconds, as a restarting Ollama does.
docs/ollama-wire.md says which release does what.
"""

from __future__ import annotations

from ollama_sim.faults import FAULT_MODES, Fault
from ollama_sim.models import DEFAULT_MODELS, ModelInfo
from ollama_sim.server import (
    DEFAULT_KEEP_ALIVE,
    DEFAULT_PORT,
    DEFAULT_TOKENS,
    VERSION,
    SimServer,
)

__all__ = [
    "DEFAULT_KEEP_ALIVE", "DEFAULT_MODELS", "DEFAULT_PORT", "DEFAULT_TOKENS", "FAULT_MODES",
    "VERSION", "Fault", "ModelInfo", "SimServer",
]
