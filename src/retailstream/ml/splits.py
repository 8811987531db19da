"""Time-based splits: a model learns from the past and is judged on what came after.

When the times cannot say what came after (ratings files whose timestamps are
missing, or all alike), `ratings_split` falls back to a seeded random split and
says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


@dataclass(frozen=True)
class Split:
    """Rows cut by time: fit on `train`, choose on `validation`, judge on `holdout`."""

    train: DataFrame
    validation: DataFrame
    holdout: DataFrame
    # Where validation and holdout begin (epoch seconds): other signals of the same
    # period are cut at the same instants, so nothing from the future leaks in.
    validation_start: float = math.inf
    holdout_start: float = math.inf

    def map(self, step: Callable[[DataFrame], DataFrame]) -> Split:
        """The same split with `step` applied to each part (for example, keeping it cached)."""
        return Split(
            step(self.train), step(self.validation), step(self.holdout),
            self.validation_start, self.holdout_start,
        )  # fmt: skip

    def sizes(self) -> dict[str, int]:
        return {
            "train": self.train.count(),
            "validation": self.validation.count(),
            "holdout": self.holdout.count(),
        }


def time_cuts(
    rows: DataFrame, column: str, holdout_fraction: float, validation_fraction: float
) -> tuple[float, float]:
    """(validation start, holdout start) in epoch seconds: quantiles of `column`."""
    seconds = rows.select(F.col(column).cast("double").alias("t")).dropna()
    holdout_q = 1.0 - holdout_fraction
    validation_q = holdout_q * (1.0 - validation_fraction)
    cuts = seconds.approxQuantile("t", [validation_q, holdout_q], 0.0)
    return (cuts[0], cuts[1]) if len(cuts) == 2 else (math.inf, math.inf)


def time_split(
    rows: DataFrame,
    holdout_fraction: float,
    validation_fraction: float,
    column: str = "event_time",
) -> Split:
    """The newest `holdout_fraction` of rows, then the newest `validation_fraction` of
    the rest, by `column`. Rows at a cut's instant go to the later side."""
    validation_start, holdout_start = time_cuts(rows, column, holdout_fraction, validation_fraction)
    return split_at(rows, column, validation_start, holdout_start)


def split_at(rows: DataFrame, column: str, validation_start: float, holdout_start: float) -> Split:
    """`rows` cut at two instants of `column` (epoch seconds); a cut's instant goes later."""
    t = F.col(column).cast("double")
    return Split(
        train=rows.where(t < F.lit(validation_start)),
        validation=rows.where((t >= F.lit(validation_start)) & (t < F.lit(holdout_start))),
        holdout=rows.where(t >= F.lit(holdout_start)),
        validation_start=validation_start,
        holdout_start=holdout_start,
    )


def _part_sizes(
    rows: DataFrame, column: str, validation_start: float, holdout_start: float
) -> dict[str, int]:
    """Rows in all, rows with a time, and rows each part of a time split at these cuts would get."""
    t = F.col(column).cast("double")

    def rows_where(condition: Column) -> Column:
        return F.sum(F.when(condition, 1).otherwise(0)).cast("long")

    row = rows.agg(
        F.count(F.lit(1)).alias("all"),
        F.count(t).alias("timed"),
        rows_where(t < F.lit(validation_start)).alias("train"),
        rows_where((t >= F.lit(validation_start)) & (t < F.lit(holdout_start))).alias("validation"),
        rows_where(t >= F.lit(holdout_start)).alias("holdout"),
    ).first()
    assert row is not None  # an aggregate without grouping has one row
    return {
        name: int(row[name] or 0) for name in ("all", "timed", "train", "validation", "holdout")
    }


def untimed_reason(sizes: dict[str, int]) -> str | None:
    """Why a split by time cannot be used, from `_part_sizes`' counts; None when it can (pure)."""
    if sizes["all"] == 0:
        return None  # nothing to split: the caller's size check says so
    if sizes["timed"] < sizes["all"]:
        return f"{sizes['all'] - sizes['timed']:,} of {sizes['all']:,} have no timestamp"
    if not (sizes["train"] and sizes["validation"] and sizes["holdout"]):
        return (
            "their timestamps are too few to cut by time (a split by time would give "
            f"{sizes['train']:,} train / {sizes['validation']:,} validation / "
            f"{sizes['holdout']:,} holdout)"
        )
    return None


def ratings_split(
    rows: DataFrame,
    holdout_fraction: float,
    validation_fraction: float,
    seed: int,
    column: str = "event_time",
) -> tuple[Split, str | None]:
    """`time_split` when the times allow it; otherwise a random split seeded by `seed`
    with the same fractions. Returns the split and, for a random one, why (to print)."""
    validation_start, holdout_start = time_cuts(rows, column, holdout_fraction, validation_fraction)
    reason = untimed_reason(_part_sizes(rows, column, validation_start, holdout_start))
    if reason is None:
        return split_at(rows, column, validation_start, holdout_start), None
    rest = 1.0 - holdout_fraction
    train, validation, holdout = rows.randomSplit(
        [rest * (1.0 - validation_fraction), rest * validation_fraction, holdout_fraction], seed
    )
    # No instants to cut other signals at: nothing is held back from them.
    return Split(train, validation, holdout), reason
