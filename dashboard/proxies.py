"""Several proxies shown as one: one scrape of each proxy's metrics port, and their merge.

One proxy process is one event loop on one core; a deployment that needs more runs several
behind a load balancer (``deploy/nginx/``) and gives the dashboard every metrics address
(``proxy_metrics_url: URL1,URL2``, a YAML list, or ``--proxy-metrics`` once per proxy). The
live view reads them as one proxy would read: counters and histograms are summed series by
series, as are the gauges of requests in flight and waiting in the queue. The other gauges
describe the machine and the Ollama behind a proxy, which proxies on one machine share: each
such series is taken from the first proxy, in the order given, that reports it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from llama_core import catalogue

from . import promtext
from .http_client import Client, FetchError
from .promtext import Samples

logger = logging.getLogger(__name__)

SUMMED_GAUGES = frozenset({catalogue.ACTIVE_REQUESTS.name, catalogue.QUEUE_DEPTH.name})
SUMMED_TYPES = frozenset({"counter", "histogram", "summary"})
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
MAX_PARALLEL = 16


def split_urls(value: str) -> list[str]:
    """The metrics addresses of a ``proxy_metrics_url`` setting (comma-separated)."""
    return [url for url in (part.strip() for part in value.split(",")) if url]


@dataclass
class Scrape:
    """What one proxy answered: its samples (None when it did not), the TYPE of each family."""

    url: str
    samples: Samples | None = None
    types: dict[str, str] = field(default_factory=dict)
    recent: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def scrape_one(client: Client, url: str, timeout: float, recent: int = 0) -> Scrape:
    """GET ``url``/metrics (and ``/requests?limit=recent`` when ``recent``); never raises."""
    result = Scrape(url)
    try:
        answer = client.get(url + "/metrics", timeout=timeout)
    except FetchError as exc:
        result.error = f"{url}: {exc.reason}"
        return result
    if answer.status != 200:
        result.error = f"{url}: /metrics answered HTTP {answer.status}"
        return result
    text = answer.body.decode("utf-8", "replace")
    result.samples, result.types = promtext.parse(text), promtext.types(text)
    if recent:
        rows = recent_requests(client, url, recent, timeout)
        if isinstance(rows, str):
            logger.debug("%s", rows)
        else:
            result.recent = rows
    return result


def scrape(client: Client, urls: Sequence[str], timeout: float, recent: int = 0
           ) -> list[Scrape]:
    """Every proxy at once (one slow proxy costs one timeout, not one per proxy), in order."""
    if len(urls) == 1:
        return [scrape_one(client, urls[0], timeout, recent)]
    with ThreadPoolExecutor(min(len(urls), MAX_PARALLEL), "proxy-scrape") as pool:
        return list(pool.map(lambda url: scrape_one(client, url, timeout, recent), urls))


def _summed(name: str, types: dict[str, str]) -> bool:
    if name in SUMMED_GAUGES:
        return True
    family = name
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in types:
            family = name[: -len(suffix)]
            break
    kind = types.get(family)
    if kind is None:  # no TYPE line: go by the naming conventions
        return name.endswith(("_total", "_bucket", "_sum", "_count"))
    return kind in SUMMED_TYPES


def merge(scrapes: Sequence[Scrape]) -> Samples | None:
    """The samples of every proxy that answered, as one proxy's; None when none answered."""
    answered = [s for s in scrapes if s.samples is not None]
    if not answered:
        return None
    merged: Samples = {}
    for one in answered:
        assert one.samples is not None
        for key, value in one.samples.items():
            if key not in merged:
                merged[key] = value
            elif key[0].endswith("_created"):
                merged[key] = min(merged[key], value)  # when the oldest series began
            elif _summed(key[0], one.types):
                merged[key] += value
    return merged


def recent_requests_of_all(
    client: Client, urls: Sequence[str], limit: int, timeout: float
) -> list[list[dict[str, Any]] | str]:
    """``recent_requests`` of every proxy at once (a dead one costs one timeout), in order."""
    if len(urls) == 1:
        return [recent_requests(client, urls[0], limit, timeout)]
    with ThreadPoolExecutor(min(len(urls), MAX_PARALLEL), "proxy-recent") as pool:
        return list(pool.map(lambda url: recent_requests(client, url, limit, timeout), urls))


def recent_requests(
    client: Client, url: str, limit: int, timeout: float
) -> list[dict[str, Any]] | str:
    """One proxy's last finished requests (no prompt or response text), or why there are none."""
    address = f"{url}/requests?limit={limit}"
    try:
        answer = client.get(address, timeout=timeout)
        rows = answer.json()
    except FetchError as exc:
        return f"{address}: {exc.reason}"
    except ValueError as exc:
        return f"{address}: answered HTTP {answer.status} without JSON ({exc})"
    if answer.status != 200 or not isinstance(rows, list):
        return f"{address} answered HTTP {answer.status}"
    return [{k: v for k, v in r.items() if k not in ("prompt", "response")}
            for r in rows if isinstance(r, dict)]


def _finished(row: dict[str, Any]) -> float:
    started, duration = row.get("started_at"), row.get("duration_s")
    if not isinstance(started, int | float):
        return 0.0
    return float(started) + (float(duration) if isinstance(duration, int | float) else 0.0)


def merge_recent(lists: Sequence[list[dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` requests of several proxies, newest finished first."""
    if len(lists) == 1:
        return lists[0][:limit]
    rows = [row for rows in lists for row in rows]
    return sorted(rows, key=_finished, reverse=True)[:limit]
