"""Findings an Ollama operator can act on, computed from the numbers: pure functions.

Each rule takes plain numbers (per-model rows as the API serves them, loaded models, queue
gauges, recent error counts) and returns findings that carry the numbers behind them and
the setting or step that addresses them. ``analyse`` runs every rule over one ``Evidence``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

Row = Mapping[str, Any]

# Thresholds: a finding should be worth an operator's attention, not a blip.
MIN_RELOADS = 3
LOAD_SHARE_OF_TTFT = 0.5
QUEUE_WAIT_WARN_S = 0.5
QUEUE_WAIT_CRITICAL_S = 5.0
ERROR_BURST_MIN = 5
ERROR_BURST_SHARE = 0.2
SLOW_FACTOR = 0.75
SLOW_MIN_REQUESTS = 3

_ERROR_ADVICE = {
    "upstream_unreachable": "Ollama does not answer: check that its service runs "
    "(systemctl status ollama) and that the proxy's upstream / OLLAMA_HOST points at it.",
    "upstream_status": "Ollama answered with errors (a model not pulled, out of memory, a "
    "bad request): its server log says which (journalctl -u ollama).",
    "queue_full": "The proxy's queue overflowed: raise max_queue, or serve more at once "
    "(OLLAMA_NUM_PARALLEL with the proxy's max_concurrency).",
    "client_cancelled": "Clients gave up before the answer came: their timeouts are shorter "
    "than the responses take (queueing, model loads, long outputs).",
    "timeout": "Requests timed out: look at queueing and model loads first.",
}
_STREAM_ADVICE = ("Ollama broke off responses (a crash or out-of-memory kill of its runner "
                  "is the usual cause): see its server log.")


@dataclass(frozen=True, kw_only=True)
class Finding:
    kind: str
    severity: str  # "info", "warning" or "critical"
    title: str
    detail: str
    action: str
    subject: str = ""  # the model it is about, if any
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """What the rules look at; every field may be empty when its source is not there."""

    window_s: float = 0.0  # what ``models`` covers
    models: Sequence[Row] = ()
    current: Sequence[Row] = ()  # per-model rows of a short recent window
    current_window_s: float = 0.0
    baseline_tps: Mapping[str, float] = field(default_factory=dict)
    loaded: Sequence[Row] = ()
    gpu_present: bool = False
    queue_depth: float | None = None
    active_requests: float | None = None
    queue_wait_mean_s: float | None = None
    recent_window_s: float = 0.0
    recent_requests: int = 0
    recent_errors: Mapping[str, int] = field(default_factory=dict)


def _minutes(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.0f} h"
    return f"{max(seconds, 60) / 60:.0f} min"


def _gb(value: float | None) -> str:
    return "?" if value is None else f"{value / 1e9:.1f} GB"


def model_reloads(models: Sequence[Row], window_s: float) -> list[Finding]:
    """A model loaded again and again: Ollama unloads it between requests (keep_alive)."""
    out = []
    for row in models:
        loads = int(row.get("loads") or 0)
        if loads < MIN_RELOADS:
            continue
        load_s = float(row.get("load_seconds") or 0.0)
        out.append(Finding(
            kind="model_reloads", severity="warning", subject=row["model"],
            title=f"{row['model']} was loaded {loads} times in {_minutes(window_s)}",
            detail=(f"{loads} of {row.get('requests', 0)} requests waited for a model load, "
                    f"{load_s:.1f} s in all ({load_s / loads:.1f} s each)."),
            action=("Keep it in memory longer: set OLLAMA_KEEP_ALIVE on the Ollama server "
                    "(e.g. 30m, or -1 for until restart) or send keep_alive with requests. If "
                    "models take turns, OLLAMA_MAX_LOADED_MODELS or memory may be too small "
                    "to hold them together."),
            numbers={"loads": loads, "requests": row.get("requests"), "load_seconds": load_s,
                     "window_seconds": window_s},
        ))
    return out


def ttft_loading(models: Sequence[Row]) -> list[Finding]:
    """Time to first token spent mostly on loading the model rather than on the prompt."""
    out = []
    for row in models:
        ttft_s = float(row.get("ttft_seconds") or 0.0)
        load_s = float(row.get("load_seconds") or 0.0)
        if not row.get("loads") or ttft_s <= 0 or load_s / ttft_s < LOAD_SHARE_OF_TTFT:
            continue
        share = min(load_s / ttft_s, 1.0)
        out.append(Finding(
            kind="ttft_loading", severity="warning", subject=row["model"],
            title=f"{row['model']}: {share:.0%} of the time to first token is model loading",
            detail=(f"{load_s:.1f} s of {ttft_s:.1f} s waited for the first token went to "
                    f"{row['loads']} load(s)."),
            action=("Load it before users ask and keep it loaded: a warm-up request at start "
                    "(ollama run MODEL \"\") and a longer OLLAMA_KEEP_ALIVE; a faster disk "
                    "shortens each load."),
            numbers={"load_seconds": load_s, "ttft_seconds": ttft_s, "share": share,
                     "loads": row.get("loads")},
        ))
    return out


def queueing(queue_depth: float | None, queue_wait_mean_s: float | None,
             active_requests: float | None) -> list[Finding]:
    """Requests wait in the proxy's queue for a slot: more parallel capacity is needed."""
    depth = queue_depth or 0.0
    wait = queue_wait_mean_s or 0.0
    if depth <= 0 and wait < QUEUE_WAIT_WARN_S:
        return []
    severity = "critical" if wait >= QUEUE_WAIT_CRITICAL_S else "warning"
    return [Finding(
        kind="queueing", severity=severity,
        title=f"Requests are queueing: {depth:.0f} waiting, {wait:.1f} s average wait",
        detail=(f"{depth:.0f} request(s) wait for a slot now, {active_requests or 0:.0f} are "
                f"in flight; recent requests waited {wait:.2f} s on average before being "
                "forwarded."),
        action=("Serve more at once: raise OLLAMA_NUM_PARALLEL (each slot needs memory for "
                "its context) together with the proxy's max_concurrency, or add an Ollama "
                "instance. If memory is short, OLLAMA_MAX_QUEUE bounds the waiting instead."),
        numbers={"queue_depth": depth, "queue_wait_mean_seconds": queue_wait_mean_s,
                 "active_requests": active_requests},
    )]


def partial_vram(loaded: Sequence[Row], gpu_present: bool) -> list[Finding]:
    """A loaded model that does not fit in GPU memory: part of it runs on the CPU."""
    out = []
    for row in loaded:
        placement = row.get("placement")
        if placement not in ("partial", "cpu") or (placement == "cpu" and not gpu_present):
            continue
        fraction = float(row.get("vram_fraction") or 0.0)
        out.append(Finding(
            kind="partial_vram", severity="warning", subject=row["model"],
            title=f"{row['model']} is only {fraction:.0%} in GPU memory",
            detail=(f"{_gb(row.get('vram_bytes'))} of {_gb(row.get('size_bytes'))} sit in GPU "
                    "memory; the rest runs on the CPU, which makes generation several times "
                    "slower."),
            action=("Free GPU memory (OLLAMA_MAX_LOADED_MODELS=1, or other programs), use a "
                    "smaller quantization or a smaller num_ctx, or shrink the context cache "
                    "with OLLAMA_FLASH_ATTENTION=1 and OLLAMA_KV_CACHE_TYPE=q8_0."),
            numbers={"vram_bytes": row.get("vram_bytes"), "size_bytes": row.get("size_bytes"),
                     "vram_fraction": fraction},
        ))
    return out


def error_burst(requests: int, errors: Mapping[str, int], window_s: float) -> list[Finding]:
    """Many recent requests failed; the commonest error type says where to look."""
    failed = sum(errors.values())
    if failed < ERROR_BURST_MIN or requests <= 0 or failed / requests < ERROR_BURST_SHARE:
        return []
    share = min(failed / requests, 1.0)
    kinds = sorted(errors.items(), key=lambda item: (-item[1], item[0]))
    top = kinds[0][0]
    return [Finding(
        kind="error_burst", severity="critical" if share >= 0.5 else "warning",
        title=f"{failed} of {requests} requests failed in the last {_minutes(window_s)}",
        detail=f"{share:.0%} failed: " + ", ".join(f"{k} {n}" for k, n in kinds if n) + ".",
        action=_ERROR_ADVICE.get(top, _STREAM_ADVICE),
        numbers={"requests": requests, "errors": failed, "share": share,
                 "by_type": dict(kinds), "window_seconds": window_s},
    )]


def slow_generation(current: Sequence[Row], baseline_tps: Mapping[str, float],
                    window_s: float) -> list[Finding]:
    """A model generating clearly slower than its own usual speed."""
    out = []
    for row in current:
        now_tps, usual = row.get("tokens_per_second"), baseline_tps.get(row["model"])
        if (now_tps is None or not usual or int(row.get("requests") or 0) < SLOW_MIN_REQUESTS
                or now_tps >= SLOW_FACTOR * usual):
            continue
        out.append(Finding(
            kind="slow_generation", severity="warning", subject=row["model"],
            title=(f"{row['model']} generates {now_tps:.1f} tokens/s, "
                   f"{1 - now_tps / usual:.0%} below its usual {usual:.1f}"),
            detail=(f"Over the last {_minutes(window_s)} ({row.get('requests')} requests) "
                    f"against its own baseline of {usual:.1f} tokens/s."),
            action=("Check whether it spilled to the CPU (loaded models), what else uses the "
                    "GPU (other models, other programs), GPU temperature (throttling), and "
                    "whether prompts got longer; several requests at once (OLLAMA_NUM_PARALLEL) "
                    "also share the speed."),
            numbers={"tokens_per_second": now_tps, "baseline_tokens_per_second": usual,
                     "requests": row.get("requests"), "window_seconds": window_s},
        ))
    return out


_ORDER = {"critical": 0, "warning": 1, "info": 2}


def analyse(evidence: Evidence) -> list[Finding]:
    """Every rule over ``evidence``; the most severe first."""
    findings = [
        *error_burst(evidence.recent_requests, evidence.recent_errors, evidence.recent_window_s),
        *queueing(evidence.queue_depth, evidence.queue_wait_mean_s, evidence.active_requests),
        *partial_vram(evidence.loaded, evidence.gpu_present),
        *model_reloads(evidence.models, evidence.window_s),
        *ttft_loading(evidence.models),
        *slow_generation(evidence.current, evidence.baseline_tps, evidence.current_window_s),
    ]
    return sorted(findings, key=lambda f: _ORDER.get(f.severity, 3))
