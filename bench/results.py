"""What the benchmarks report: series and their statistics, rows with ratios and targets,
the table printed and saved to .cache/bench/results.json."""

from __future__ import annotations

import contextlib
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import CACHE

RESULTS_FILE = CACHE / "results.json"


@dataclass
class Series:
    """Repeated measurements of one thing."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def percentile(self, q: float) -> float:
        """Return the q-th percentile (nearest rank), e.g. 95."""
        ordered = sorted(self.values)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def paired_ratio(a: Series, b: Series) -> tuple[float, float]:
    """Return (min(a)/min(b), median of a_i/b_i) for runs taken in pairs."""
    ratios = [x / y for x, y in zip(a.values, b.values, strict=True)]
    return a.min / b.min, statistics.median(ratios)


@dataclass
class Result:
    """One row of the results table."""

    bench: str
    measure: str
    unit: str
    min: float | None = None
    median: float | None = None
    ratio_min: float | None = None
    ratio_median: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""


def series_row(
    bench: str,
    measure: str,
    series: Series,
    baseline: Series | None = None,
    *,
    unit: str = "s",
    target: str = "",
    limit: float | None = None,
    note: str = "",
) -> Result:
    """Build a row for a series, with its ratio to a paired baseline and a ratio target."""
    ratio_min = ratio_median = None
    if baseline is not None:
        ratio_min, ratio_median = paired_ratio(series, baseline)
    met = None
    if limit is not None and ratio_median is not None:
        met = ratio_median <= limit
    return Result(
        bench, measure, unit, series.min, series.median, ratio_min, ratio_median, target, met, note
    )


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value < 1 else f"{value:.2f}"


def format_table(results: Sequence[Result]) -> str:
    """Return the results as a Markdown table (readable in a terminal too)."""
    header = (
        "bench",
        "measure",
        "min",
        "median",
        "unit",
        "ratio min",
        "ratio med",
        "target",
        "met",
    )
    rows = [header]
    for r in results:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        rows.append(
            (
                r.bench,
                r.measure + (f" ({r.note})" if r.note else ""),
                _number(r.min),
                _number(r.median),
                r.unit,
                _number(r.ratio_min),
                _number(r.ratio_median),
                r.target,
                met,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def report(results: Sequence[Result], name: str) -> None:
    """Print the table and merge the rows into .cache/bench/results.json under ``name``."""
    print(format_table(results), flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Any] = {}
    if RESULTS_FILE.exists():
        with contextlib.suppress(ValueError):
            saved = json.loads(RESULTS_FILE.read_text())
    saved[name] = [asdict(r) for r in results]
    RESULTS_FILE.write_text(json.dumps(saved, indent=1))


def heading(text: str) -> None:
    """Print a section heading."""
    print(f"\n== {text} ==", flush=True)
