"""The metric and label names a PromQL expression uses, to check them against the catalogue.

Not a PromQL parser: a lexer and the few rules that tell a metric name from a function, a
keyword or a label. Whether an expression is valid PromQL is for promtool and Prometheus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""
      (?P<space>\s+|\#[^\n]*)
    | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<range>\[[^\]]*\])
    | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)[a-z]*)
    | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){},@])
    """,
    re.VERBOSE,
)

# Followed by a parenthesised list of label names.
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
# Aggregations may take their grouping before the parenthesis: sum by (x) (...).
_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}


@dataclass(frozen=True)
class Selector:
    """One vector selector: ``metric{label="value", ...}``."""

    metric: str
    labels: frozenset[str]


@dataclass
class Names:
    """What an expression names: its selectors and the labels it groups or matches on."""

    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors}


def tokens(expr: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read PromQL at {expr[pos:pos + 20]!r} in {expr!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "space":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def names(expr: str) -> Names:
    """The selectors and grouping labels of ``expr``."""
    toks = tokens(expr)
    found = Names()
    i = 0

    def at(j: int) -> str:
        return toks[j][1] if j < len(toks) else ""

    def label_list(j: int) -> tuple[set[str], int]:
        """Identifiers in the parenthesised list starting at ``j`` (a "(")."""
        labels: set[str] = set()
        j += 1
        while j < len(toks) and at(j) != ")":
            if toks[j][0] == "ident":
                labels.add(at(j))
            j += 1
        return labels, j + 1

    def matchers(j: int) -> tuple[set[str], int]:
        """Label names on the left of each matcher in the braces starting at ``j`` (a "{")."""
        labels: set[str] = set()
        j += 1
        while j < len(toks) and at(j) != "}":
            if toks[j][0] == "ident" and at(j + 1) in ("=", "!=", "=~", "!~"):
                labels.add(at(j))
            j += 1
        return labels, j + 1

    labels: set[str]
    while i < len(toks):
        kind, text = toks[i]
        if kind == "ident" and text in _LABEL_LISTS:
            if at(i + 1) == "(":
                labels, i = label_list(i + 1)
                found.grouping |= labels
            else:
                i += 1  # group_left without a list
        elif kind == "ident" and (text in _KEYWORDS | _AGGREGATIONS or at(i + 1) == "("):
            i += 1  # a keyword, a function or an aggregation
        elif kind == "ident":
            labels = set()
            i += 1
            if at(i) == "{":
                labels, i = matchers(i)
            found.selectors.append(Selector(text, frozenset(labels)))
        elif text == "{":  # a selector with no metric name before the braces
            labels, i = matchers(i)
            found.selectors.append(Selector("", frozenset(labels)))
        else:
            i += 1
    return found
