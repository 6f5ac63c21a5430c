"""The benchmarks' arithmetic and their markdown table: pure, no clock, no I/O.

Rules:

- a summary of samples is their count, median, p95 and max; p95 (and p99) are
  linear interpolations between the closest ranks (`statistics.quantiles`,
  method "inclusive": with 5 samples p95 lies between the 4th and the 5th);
- the ratio of a row is ours / peer of the medians; a peer median of 0, or a
  missing side, gives no ratio (None), never a division by zero;
- a target is checked on the figure it names (a median, a p99, a ratio or a
  maximum) and reads "met", "missed" or "n/a" (no figure to check);
- the table prints seconds with 3 significant decimals, or milliseconds when the
  row's unit is "ms", and counts as integers.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    p95: float
    p99: float
    max: float


def quantile(samples: list[float], q: float) -> float:
    """The q-quantile (0 < q < 1) by inclusive linear interpolation; one sample is itself."""
    if not samples:
        raise ValueError("no samples")
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), not {q}")
    if len(samples) == 1:
        return float(samples[0])
    ordered = sorted(samples)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(samples: list[float]) -> Summary:
    if not samples:
        raise ValueError("no samples")
    return Summary(n=len(samples), median=float(statistics.median(samples)), p95=quantile(samples, 0.95),
                   p99=quantile(samples, 0.99), max=float(max(samples)))


def ratio(ours: float | None, peer: float | None) -> float | None:
    if ours is None or peer is None or peer == 0:
        return None
    return ours / peer


@dataclass(frozen=True)
class Target:
    """`figure` of `side` compared with `limit`: figure is median, p99, max or ratio
    (ours / `versus`, the row's peer unless another column is named)."""

    figure: str
    limit: float
    side: str = "ours"
    text: str = ""
    versus: str | None = None

    def check(self, row: "Row") -> str:
        if self.figure == "ratio":
            a, b = row.summary(row.ours), row.summary(self.versus or row.peer)
            value = ratio(a.median if a else None, b.median if b else None)
        else:
            summary = row.summary(row.ours if self.side == "ours" else row.peer)
            value = getattr(summary, self.figure) if summary else None
        if value is None:
            return "n/a"
        return "met" if value <= self.limit else "missed"


@dataclass
class Row:
    """One benchmark case: samples per contender (name -> values)."""

    bench: str
    case: str
    metric: str
    unit: str
    ours: str
    peer: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    targets: tuple[Target, ...] = ()

    def summary(self, who: str) -> Summary | None:
        values = self.samples.get(who)
        return summarize(values) if values else None

    def ratio(self) -> float | None:
        a, b = self.summary(self.ours), self.summary(self.peer)
        return ratio(a.median if a else None, b.median if b else None)

    def to_json(self) -> dict:
        return {
            "bench": self.bench, "case": self.case, "metric": self.metric, "unit": self.unit,
            "ours": self.ours, "peer": self.peer, "samples": self.samples,
            "summary": {who: vars(self.summary(who)) for who in self.samples if self.samples[who]},
            "ratio_of_medians": self.ratio(),
            "targets": {t.text: t.check(self) for t in self.targets},
            "target_specs": [vars(t) for t in self.targets],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Row":
        """A row written by `to_json` (its figures are recomputed from the samples)."""
        names = list(data["samples"])
        ours = data.get("ours", names[0])
        peer = data.get("peer", names[1] if len(names) > 1 else "")
        return cls(data["bench"], data["case"], data["metric"], data["unit"], ours, peer,
                   samples={k: list(v) for k, v in data["samples"].items()},
                   targets=tuple(Target(**t) for t in data.get("target_specs", ())))


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.3f} s"
    if unit in ("count", "keys", "requests"):
        return f"{value:.0f}"
    return f"{value:.3g} {unit}"


def table(rows: list[Row]) -> str:
    """A markdown table: one line per row, ours then the peer, and the ratio."""
    head = ("| # | case | metric | who | n | median | p95 | p99 | max | ratio ours/peer | target |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    lines = []
    for row in rows:
        for i, who in enumerate([w for w in (row.ours, row.peer) if row.samples.get(w)]
                                + [w for w in row.samples if w not in (row.ours, row.peer) and row.samples[w]]):
            s = row.summary(who)
            first = i == 0
            r = row.ratio()
            target = "; ".join(f"{t.text}: **{t.check(row)}**" for t in row.targets) if first else ""
            lines.append(
                f"| {row.bench if first else ''} | {row.case if first else ''} | {row.metric if first else ''} "
                f"| {who} | {s.n} | {fmt(s.median, row.unit)} | {fmt(s.p95, row.unit)} | {fmt(s.p99, row.unit)} "
                f"| {fmt(s.max, row.unit)} "
                f"| {(f'{r:.2f}' if r is not None else '–') if first else ''} | {target} |")
    return head + "\n".join(lines) + "\n"
