"""PNG charts of benchmark results, saved next to their JSON and shown in BENCHMARKS.md.

Three shapes, matching the harness's kinds of results:
- `rates_chart`: one horizontal bar per case, its median events/s, the whiskers
  the min and max over the rounds, the baseline in grey;
- `table_chart`: for each `Table` that says how to plot itself (`Plot`), one
  panel of grouped horizontal bars, one group per row and one bar per figure
  (p50/p95/p99 of a latency, the steps of a training...), on one axis unit;
- `series_chart`: lines over time (`extra.series`: panel -> line -> [t, y]
  points), one panel each, for figures that are a course, not a number.

Matplotlib runs headless (Agg); nothing here opens a window.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on a server or in CI

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

BAR_COLOUR = "#2f6f9f"
BASELINE_COLOUR = "#9a9a9a"


@dataclass(frozen=True)
class Plot:
    """How a table is drawn: `label` keys name a row's group, `values` are its bars (one unit)."""

    label: Sequence[str]
    values: Sequence[str]
    unit: str
    log: bool = False
    legend: Sequence[str] = ()  # a name per value (the table's headers); default: the keys


def draw(payload: Mapping[str, Any], out: Path) -> Path | None:
    """The chart of a result (the JSON's payload) into `out`; None when it has nothing to draw."""
    if "cases" in payload:
        return rates_chart(payload["title"], payload["cases"], payload["baseline"], out)
    extra = payload.get("extra") or {}
    if extra.get("series"):
        return series_chart(payload["title"], extra["series"], extra.get("series_unit", ""), out)
    charted = [
        (t["caption"], Plot(**t["plot"]), t["rows"])
        for t in payload.get("tables", [])
        if t.get("plot")
    ]
    return table_chart(payload["title"], charted, out)


def _label(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    return " · ".join(
        f"{row.get(k):,}" if isinstance(row.get(k), int) else str(row.get(k)) for k in keys
    )


def rates_chart(
    title: str, cases: Mapping[str, Mapping[str, Any]], baseline: str, out: Path
) -> Path:
    """Bars of median events/s per case with min-max whiskers; `cases` as in the result JSON."""
    labels = list(cases)
    medians = [cases[c]["events_per_second"]["median"] for c in labels]
    low = [
        m - cases[c]["events_per_second"]["minimum"] for c, m in zip(labels, medians, strict=True)
    ]
    high = [
        cases[c]["events_per_second"]["maximum"] - m for c, m in zip(labels, medians, strict=True)
    ]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(labels) + 1.4))
    colours = [BASELINE_COLOUR if c == baseline else BAR_COLOUR for c in labels]
    ax.barh(labels, medians, xerr=[low, high], color=colours, capsize=4)
    for y, (value, above) in enumerate(zip(medians, high, strict=True)):
        ax.annotate(f"  {value:,.0f}", (value + above, y), va="center", fontsize=8)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.invert_yaxis()  # first case on top, as in the table
    ax.set_xlabel("events per second (median; whiskers: min – max over the rounds)")
    ax.set_title(title, fontsize=10)
    ax.margins(x=0.15)
    return _save(fig, out)


def table_chart(
    title: str, tables: Sequence[tuple[str, Plot, Sequence[Mapping[str, Any]]]], out: Path
) -> Path | None:
    """One panel per (caption, plot, rows); None when no table has rows to draw."""
    panels = [(caption, plot, rows) for caption, plot, rows in tables if rows]
    if not panels:
        return None
    heights = [0.35 * len(rows) * len(plot.values) + 1.2 for _, plot, rows in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(8, sum(heights) + 0.6), height_ratios=heights, squeeze=False
    )
    for ax, (caption, plot, rows) in zip(axes[:, 0], panels, strict=True):
        width = 0.8 / len(plot.values)
        names = list(plot.legend) or list(plot.values)
        for i, (key, name) in enumerate(zip(plot.values, names, strict=True)):
            ys = [row_no + i * width for row_no in range(len(rows))]
            values = [_number(row.get(key)) for row in rows]
            ax.barh(ys, values, height=width, label=name)
        ax.set_yticks([r + 0.4 - width / 2 for r in range(len(rows))])
        ax.set_yticklabels([_label(row, plot.label) for row in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(plot.unit)
        if plot.log:
            ax.set_xscale("log")
        ax.set_title(textwrap.fill(caption, 95), fontsize=8)
        if len(plot.values) > 1:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    return _save(fig, out)


def series_chart(
    title: str, panels: Mapping[str, Mapping[str, Sequence[Sequence[float]]]], unit: str, out: Path
) -> Path | None:
    """One panel per entry of `panels`, a line per series of (seconds, value) points."""
    drawn = {name: lines for name, lines in panels.items() if any(lines.values())}
    if not drawn:
        return None
    fig, axes = plt.subplots(len(drawn), 1, figsize=(8, 2.4 * len(drawn) + 0.6), squeeze=False)
    for ax, (name, lines) in zip(axes[:, 0], drawn.items(), strict=True):
        for label, points in lines.items():
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], label=label, lw=1.2)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("seconds since the producer started", fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    return _save(fig, out)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _save(fig: plt.Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
