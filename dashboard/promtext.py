"""Reading the proxy's Prometheus text exposition into samples, and summing them by label.

A scrape is parsed every push interval, so this reads only what the dashboard uses (series
whose name starts with a prefix) with one regular expression per label set instead of
prometheus_client's general parser; the label escapes of the text format are honoured.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable

from llama_core import catalogue

logger = logging.getLogger(__name__)

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]

_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return _UNESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), text)


def _value(text: str) -> float:
    text = text.strip()
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    return float(text)  # "NaN" too


def parse(text: str, prefix: str = catalogue.PROXY_PREFIX) -> Samples:
    """Samples of the series named ``prefix...``, keyed by name and sorted label pairs.

    A line that cannot be read is skipped (and logged at debug level): one odd series must
    not blank the whole dashboard.
    """
    samples: Samples = {}
    for line in text.split("\n"):  # not splitlines(): a label value may hold \r or \u2028
        if not line.startswith(prefix):
            continue
        try:
            brace = line.find("{")
            if brace == -1:
                name, _, rest = line.partition(" ")
                labels: Labels = ()
            else:
                name = line[:brace]
                end, pairs = brace + 1, []
                while True:
                    if line.startswith("}", end):
                        break
                    match = _LABEL.match(line, end)
                    if match is None:
                        raise ValueError("bad label set")
                    pairs.append((match.group(1), _unescape(match.group(2))))
                    end = match.end()
                rest = line[end + 1 :]
                labels = tuple(sorted(pairs))
            value = rest.split()[0]  # a timestamp may follow the value
            samples[(name, labels)] = _value(value)
        except (ValueError, IndexError):
            logger.debug("skipping unreadable exposition line %r", line[:200])
    return samples


def types(text: str, prefix: str = catalogue.PROXY_PREFIX) -> dict[str, str]:
    """Family name -> type (counter, gauge, histogram, ...) from the ``# TYPE`` lines."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
        if line.startswith("# TYPE " + prefix):
            parts = line.split()
            if len(parts) == 4:
                out[parts[2]] = parts[3]
    return out


def series(samples: Samples, name: str) -> Iterable[tuple[dict[str, str], float]]:
    """Every (labels, value) of one series name."""
    for (sample_name, labels), value in samples.items():
        if sample_name == name:
            yield dict(labels), value


def total(samples: Samples, name: str) -> float | None:
    """Sum over all label sets of ``name``; None when the series is absent."""
    values = [value for (n, _), value in samples.items() if n == name]
    return math.fsum(values) if values else None


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """Sum of ``name`` for each value of ``label``."""
    out: dict[str, float] = {}
    for labels, value in series(samples, name):
        key = labels.get(label, "")
        out[key] = out.get(key, 0.0) + value
    return out


def counter_delta(old: Samples | None, new: Samples, name: str) -> Samples:
    """Per label set, what ``name`` grew by from ``old`` to ``new``.

    A series that went down was reset (the proxy restarted): its new value is what it grew
    by, as Prometheus's ``increase`` reads it. A series ``old`` lacks started at zero.
    """
    out: Samples = {}
    for key, value in new.items():
        if key[0] != name:
            continue
        before = old.get(key, 0.0) if old is not None else 0.0
        out[key] = value - before if value >= before else value
    return out


def histogram_buckets(samples: Samples, name: str, **match: str) -> list[tuple[float, float]]:
    """Cumulative (le, count) of histogram ``name``, summed over label sets matching ``match``."""
    counts: dict[float, float] = {}
    wanted = set(match.items())
    for (sample_name, labels), value in samples.items():
        if sample_name != name + "_bucket" or not wanted <= set(labels):
            continue
        le = dict(labels).get("le")
        if le is None:
            continue
        bound = _value(le)
        counts[bound] = counts.get(bound, 0.0) + value
    return sorted(counts.items())
