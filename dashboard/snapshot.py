"""Live numbers from two scrapes of the proxy's /metrics: rates, quantiles, gauges, models.

Pure functions: samples in, JSON-ready dicts out. Rates and latency quantiles come from
counter and histogram-bucket deltas between an older and a newer scrape (a short window);
gauges and per-model totals from the newer scrape alone.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from llama_core import catalogue
from llama_core.endpoints import NO_MODEL

from . import promtext
from .promtext import Samples
from .stats import cache_hit_share, histogram_quantile, ratio

logger = logging.getLogger(__name__)

C = catalogue

# The series every chart draws, live and from history; values are numbers or None.
SERIES = (
    "requests_per_second",
    "prompt_tokens_per_second",
    "generated_tokens_per_second",
    "error_rate",
    "ttft_p50",
    "ttft_p95",
    "duration_p50",
    "duration_p95",
    "active_requests",
    "queue_depth",
    "cpu_percent",
    "memory_percent",
    "gpu_utilization_percent",
    "gpu_memory_percent",
)


def _increase(old: Samples | None, new: Samples, name: str) -> float:
    # A labelled counter has no series before its first increment: absent means zero.
    return math.fsum(promtext.counter_delta(old, new, name).values())


def _bucket_increase(old: Samples | None, new: Samples, name: str) -> list[tuple[float, float]]:
    grown = promtext.counter_delta(old, new, name + "_bucket")
    return promtext.histogram_buckets(grown, name)


def rates(old: Samples | None, new: Samples, seconds: float) -> dict[str, float | None]:
    """Per-second rates, error rate and p50/p95 latencies over ``seconds`` between scrapes."""
    out: dict[str, float | None] = {}
    for key, counter in (
        ("requests_per_second", C.REQUESTS),
        ("prompt_tokens_per_second", C.PROMPT_TOKENS),
        ("generated_tokens_per_second", C.GENERATED_TOKENS),
    ):
        grown = _increase(old, new, counter.name) if old is not None else None
        out[key] = None if grown is None or seconds <= 0 else grown / seconds
    requests = _increase(old, new, C.REQUESTS.name) if old is not None else None
    errors = _errors(old, new) if old is not None else None
    out["error_rate"] = ratio(errors, requests)
    for key, histogram in (("ttft", C.TTFT), ("duration", C.REQUEST_DURATION)):
        buckets = _bucket_increase(old, new, histogram.name) if old is not None else []
        out[f"{key}_p50"] = histogram_quantile(0.5, buckets)
        out[f"{key}_p95"] = histogram_quantile(0.95, buckets)
    return out


# As the alert rule OllamaProxyErrorRatioHigh: a client's cancel is its choice, and a full
# queue is shown (and alerted on) apart.
NOT_FAILURES = frozenset({"client_cancelled", "queue_full"})


def _errors(old: Samples | None, new: Samples) -> float:
    grown = promtext.counter_delta(old, new, C.ERRORS.name)
    return math.fsum(value for (_, labels), value in grown.items()
                     if dict(labels).get("error_type") not in NOT_FAILURES)


def tokens_by_model(old: Samples | None, new: Samples, seconds: float,
                    top: int = 3) -> dict[str, float]:
    """Generated tokens per second of the ``top`` busiest models, the rest as ``other``."""
    if old is None or seconds <= 0:
        return {}
    grown: dict[str, float] = {}
    for (_, labels), value in promtext.counter_delta(
            old, new, C.GENERATED_TOKENS.name).items():
        model = dict(labels).get("model", "")
        grown[model] = grown.get(model, 0.0) + value
    busiest = sorted((m for m in grown if grown[m] > 0), key=lambda m: (-grown[m], m))
    out = {m: grown[m] / seconds for m in busiest[:top]}
    rest = math.fsum(grown[m] for m in busiest[top:])
    if rest:
        out["other"] = rest / seconds
    return out


def gauges(samples: Samples) -> dict[str, Any]:
    """Active requests, queue depth, host and GPU numbers of one scrape (None where absent)."""
    used = promtext.total(samples, C.SYSTEM_MEMORY_USED.name)
    total = promtext.total(samples, C.SYSTEM_MEMORY_TOTAL.name)
    gpus: dict[tuple[str, str], dict[str, Any]] = {}
    for field, gpu_series in (
        ("utilization_percent", C.GPU_UTILIZATION), ("memory_used_bytes", C.GPU_MEMORY_USED),
        ("memory_total_bytes", C.GPU_MEMORY_TOTAL), ("temperature_celsius", C.GPU_TEMPERATURE),
        ("power_watts", C.GPU_POWER),
    ):
        for labels, value in promtext.series(samples, gpu_series.name):
            key = (labels.get("gpu", ""), labels.get("name", ""))
            gpus.setdefault(key, {"gpu": key[0], "name": key[1]})[field] = value
    gpu_list = [gpus[key] for key in sorted(gpus)]
    for gpu in gpu_list:
        memory_ratio = ratio(gpu.get("memory_used_bytes"), gpu.get("memory_total_bytes"))
        gpu["memory_percent"] = None if memory_ratio is None else 100 * memory_ratio
    utilization = [g["utilization_percent"] for g in gpu_list if "utilization_percent" in g]
    gpu_used = [g["memory_used_bytes"] for g in gpu_list if "memory_used_bytes" in g]
    gpu_total = [g["memory_total_bytes"] for g in gpu_list if "memory_total_bytes" in g]
    memory_ratio = ratio(used, total)
    gpu_memory_ratio = ratio(sum(gpu_used), sum(gpu_total)) if gpu_total else None
    return {
        # Labelled gauges without series yet (no request so far) read as zero.
        "active_requests": promtext.total(samples, C.ACTIVE_REQUESTS.name) or 0.0,
        "queue_depth": promtext.total(samples, C.QUEUE_DEPTH.name) or 0.0,
        "cpu_percent": promtext.total(samples, C.SYSTEM_CPU.name),
        "memory_used_bytes": used,
        "memory_total_bytes": total,
        "memory_percent": None if memory_ratio is None else 100 * memory_ratio,
        "ollama_rss_bytes": promtext.total(samples, C.OLLAMA_RSS.name),
        "ollama_cpu_percent": promtext.total(samples, C.OLLAMA_CPU.name),
        "gpu_utilization_percent": sum(utilization) / len(utilization) if utilization else None,
        "gpu_memory_percent": None if gpu_memory_ratio is None else 100 * gpu_memory_ratio,
        "gpus": gpu_list,
    }


def point(ts: float, rate_values: dict[str, Any], gauge_values: dict[str, Any]) -> dict[str, Any]:
    """One chart point: the time and every series value."""
    merged = {**gauge_values, **rate_values}
    return {"ts": ts, **{key: merged.get(key) for key in SERIES}}


def models(old: Samples | None, new: Samples) -> list[dict[str, Any]]:
    """Per-model numbers: what grew from ``old`` to ``new`` (``old`` None: since proxy start)."""

    def grown(name: str, label: str = "model") -> dict[str, float]:
        out: dict[str, float] = {}
        for (_, labels), value in promtext.counter_delta(old, new, name).items():
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + value
        return out

    requests = grown(C.REQUESTS.name)
    errors = grown(C.ERRORS.name)
    prompt = grown(C.PROMPT_TOKENS.name)
    generated = grown(C.GENERATED_TOKENS.name)
    tps_sum, tps_count = grown(C.TOKENS_PER_SECOND.sum), grown(C.TOKENS_PER_SECOND.count)
    ttft_sum = grown(C.TTFT.sum)
    ttft_count = grown(C.TTFT.count)
    loads, load_s = grown(C.MODEL_LOADS.name), grown(C.MODEL_LOAD_DURATION.sum)
    cached = grown(C.CACHED_PROMPT_TOKENS.name)
    ttft_buckets = promtext.counter_delta(old, new, C.TTFT.bucket)
    rows = []
    # Metadata calls (/api/tags, /api/version) name no model: they are no model's traffic.
    for model in sorted(m for m in requests if m and m != NO_MODEL):
        buckets = promtext.histogram_buckets(ttft_buckets, C.TTFT.name, model=model)
        rows.append({
            "model": model,
            "requests": int(requests[model]),
            "errors": int(errors.get(model, 0)),
            "prompt_tokens": int(prompt.get(model, 0)),
            "generated_tokens": int(generated.get(model, 0)),
            "tokens_per_second": ratio(tps_sum.get(model), tps_count.get(model)),
            "ttft_p95": histogram_quantile(0.95, buckets),
            "ttft_mean": ratio(ttft_sum.get(model), ttft_count.get(model)),
            "ttft_seconds": ttft_sum.get(model, 0.0),
            "loads": int(loads.get(model, 0)),
            "load_seconds": load_s.get(model, 0.0),
            "cache_hit_share": cache_hit_share(cached, prompt, model),
        })
    return rows



def loaded(samples: Samples) -> list[dict[str, Any]]:
    """Models Ollama holds in memory, with how much of each sits in GPU memory."""
    sizes = promtext.by_label(samples, C.MODEL_SIZE.name, "model")
    vram = promtext.by_label(samples, C.MODEL_VRAM.name, "model")
    expires = promtext.by_label(samples, C.MODEL_EXPIRES_AT.name, "model")
    out = []
    for labels, value in sorted(promtext.series(samples, C.MODEL_LOADED.name),
                                key=lambda item: item[0].get("model", "")):
        if value <= 0:
            continue
        name = labels.get("model", "")
        size, in_vram = sizes.get(name), vram.get(name)
        fraction = ratio(in_vram, size)
        if fraction is None:
            placement = "unknown"
        elif fraction >= 0.999:
            placement = "gpu"
        elif fraction > 0:
            placement = "partial"
        else:
            placement = "cpu"
        out.append({
            "model": name,
            "size_bytes": size,
            "vram_bytes": in_vram,
            "vram_fraction": None if fraction is None else min(fraction, 1.0),
            "placement": placement,
            "expires_at": expires.get(name),
        })
    return out


def status(samples: Samples | None) -> dict[str, Any]:
    """Ollama's state as the proxy last polled it (None: the proxy was not reached)."""
    if samples is None:
        return {"up": None, "version": None}
    up = promtext.total(samples, C.UPSTREAM_UP.name)
    versions = [labels.get("version") for labels, value in
                promtext.series(samples, C.UPSTREAM_INFO.name) if value]
    proxy_versions = [labels.get("version") for labels, _ in
                      promtext.series(samples, C.BUILD.name)]
    return {
        "up": None if up is None else up >= 1,
        "version": versions[0] if versions else None,
        "proxy_version": proxy_versions[0] if proxy_versions else None,
    }
