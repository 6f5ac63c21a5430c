"""The benchmarks' arithmetic (tests/benchmarks/stats.py): quantiles, ratios, targets, the table."""

from __future__ import annotations

import random
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from stats import Row, Target, fmt, quantile, ratio, summarize, table  # noqa: E402


@pytest.mark.parametrize("samples,q,expected", [
    pytest.param([3.0], 0.95, 3.0, id="one-sample-is-itself"),
    pytest.param([1, 2, 3, 4, 5], 0.5, 3, id="odd-median"),
    pytest.param([1, 2, 3, 4, 5], 0.95, 4.8, id="p95-of-5-between-4th-and-5th"),
    pytest.param([5, 1, 4, 2, 3], 0.95, 4.8, id="order-does-not-matter"),
    pytest.param(list(range(1, 101)), 0.99, 99.01, id="p99-of-100"),
    pytest.param([2, 2, 2], 0.99, 2, id="constant"),
])
def test_quantile(samples, q, expected) -> None:
    assert quantile(samples, q) == pytest.approx(expected)


@pytest.mark.parametrize("samples,q", [
    pytest.param([], 0.5, id="no-samples"),
    pytest.param([1.0], 0, id="q-zero"),
    pytest.param([1.0], 1, id="q-one"),
])
def test_quantile_refuses(samples, q) -> None:
    with pytest.raises(ValueError):
        quantile(samples, q)


@pytest.mark.parametrize("ours,peer,expected", [
    pytest.param(1.0, 2.0, 0.5, id="faster"),
    pytest.param(3.0, 1.5, 2.0, id="slower"),
    pytest.param(1.0, 0.0, None, id="peer-zero-no-division"),
    pytest.param(None, 1.0, None, id="ours-missing"),
    pytest.param(1.0, None, None, id="peer-missing"),
])
def test_ratio(ours, peer, expected) -> None:
    assert ratio(ours, peer) == expected


def _row(ours, peer, **kw) -> Row:
    return Row("B9", "case", "metric", "s", "us", "them", samples={"us": ours, "them": peer}, **kw)


@pytest.mark.parametrize("target,ours,peer,expected", [
    pytest.param(Target("median", 1.0), [0.5, 1.0, 2.0], [9], "met", id="median-at-limit"),
    pytest.param(Target("median", 1.0), [0.5, 1.5, 2.0], [9], "missed", id="median-over"),
    pytest.param(Target("max", 0), [0, 0, 0], [3], "met", id="max-zero-lost"),
    pytest.param(Target("max", 0), [0, 1, 0], [0], "missed", id="one-run-lost"),
    pytest.param(Target("p99", 100), [10] * 98 + [1000] * 2, [1], "missed", id="p99-tail"),
    pytest.param(Target("p99", 100), [10] * 99 + [1000], [1], "met", id="one-outlier-in-100-interpolated"),
    pytest.param(Target("ratio", 1.0), [1, 2, 3], [2, 3, 4], "met", id="ratio-below-one"),
    pytest.param(Target("ratio", 1.0), [3, 3, 3], [2, 2, 2], "missed", id="ratio-above-one"),
    pytest.param(Target("ratio", 1.0), [1], [], "n/a", id="ratio-without-peer"),
    pytest.param(Target("median", 1.0, side="peer"), [9], [0.1], "met", id="peer-side"),
])
def test_target(target, ours, peer, expected) -> None:
    assert target.check(_row(ours, peer)) == expected


def test_ratio_target_against_a_named_third_column() -> None:
    row = _row([1.1], [50.0])
    row.samples["ReplicaSet"] = [1.0]
    assert Target("ratio", 1.1, versus="ReplicaSet").check(row) == "met"
    assert Target("ratio", 1.05, versus="ReplicaSet").check(row) == "missed"


@pytest.mark.parametrize("value,unit,text", [
    pytest.param(1.23456, "s", "1.235 s", id="seconds"),
    pytest.param(12.345, "ms", "12.3 ms", id="milliseconds"),
    pytest.param(3.0, "keys", "3", id="count"),
    pytest.param(None, "s", "–", id="missing"),
    pytest.param(0.004567, "req/s", "0.00457 req/s", id="other-unit"),
])
def test_fmt(value, unit, text) -> None:
    assert fmt(value, unit) == text


def test_table_has_one_line_per_contender_and_the_ratio_on_the_first() -> None:
    row = _row([1.0, 2.0, 3.0], [4.0, 4.0], targets=(Target("median", 2.5, text="≤ 2.5 s"),))
    row.samples["extra"] = [9.0]
    lines = table([row]).strip().splitlines()
    assert len(lines) == 2 + 3
    assert lines[2].startswith("| B9 | case | metric | us | 3 | 2.000 s |")
    assert "| 0.50 |" in lines[2] and "≤ 2.5 s: **met**" in lines[2]
    assert lines[3].startswith("|  |  |  | them | 2 | 4.000 s |")
    assert "| extra | 1 | 9.000 s |" in lines[4]


def test_to_json_keeps_raw_samples_and_summaries() -> None:
    data = _row([1.0, 3.0], [2.0], targets=(Target("median", 1.0, text="t"),)).to_json()
    assert data["samples"] == {"us": [1.0, 3.0], "them": [2.0]}
    assert data["summary"]["us"]["median"] == 2.0 and data["ratio_of_medians"] == 1.0
    assert data["targets"] == {"t": "missed"}


def test_a_row_survives_its_json() -> None:
    row = _row([1.0, 3.0], [2.0], targets=(Target("ratio", 1.1, text="t", versus="them"),))
    again = Row.from_json(row.to_json())
    assert again == row and again.to_json() == row.to_json()


def test_seeded_invariants_of_summaries() -> None:
    rng = random.Random(11)
    for _ in range(500):
        samples = [rng.expovariate(1.0) for _ in range(rng.randint(1, 60))]
        s = summarize(samples)
        assert s.n == len(samples)
        assert s.median == pytest.approx(statistics.median(samples))
        assert min(samples) <= s.median <= s.p95 <= s.p99 <= s.max == max(samples)
        if len(samples) >= 2:  # inclusive quantiles agree with the standard library's
            assert s.p95 == pytest.approx(statistics.quantiles(samples, n=100, method="inclusive")[94])
