"""Tests for dashboard/history_charts.py: the busiest models by name, the rest as ``other``."""

from __future__ import annotations

import math

import pytest

from dashboard.history_charts import OTHER, busiest, quantile_series, rate_series


def test_busiest_takes_the_largest_and_never_the_label_guards_other() -> None:
    totals = {"a": 1.0, "b": 5.0, "c": 5.0, "other": 99.0, "idle": 0.0}
    assert busiest(totals, 2) == ["b", "c"]  # ties by name; other is already "the rest"
    assert busiest({"idle": 0.0}) == []


def test_rates_keep_zero_buckets_and_fold_the_guards_other_into_other() -> None:
    per_bucket = [{"a": 30.0, "b": 3.0, "other": 6.0}, {}, {"c": 9.0}]
    out = rate_series(per_bucket, [3.0, 3.0, 1.5], top=2)
    assert out == {"a": [10.0, 0.0, 0.0], "c": [0.0, 0.0, 6.0], OTHER: [3.0, 0.0, 0.0]}
    assert rate_series([{}, {}], [1.0, 1.0]) == {}


def hist(*values: float) -> list[tuple[float, float]]:
    bounds = (0.1, 0.5, 1.0, math.inf)
    return [(b, float(sum(v <= b for v in values))) for b in bounds]


def test_quantiles_merge_the_rest_instead_of_averaging() -> None:
    per_bucket = [{"a": hist(0.05, 0.05, 0.05), "b": hist(0.9), "c": hist(0.3)}, {"a": hist(0.05)}]
    out = quantile_series(per_bucket, 0.5, top=1)
    assert list(out) == ["a", OTHER]
    assert out["a"][0] == pytest.approx(0.05) and out["a"][1] == pytest.approx(0.05)
    # b and c together: two answers, the median in the (0.1, 0.5] bucket.
    assert 0.1 < out[OTHER][0] <= 0.5 and out[OTHER][1] is None
