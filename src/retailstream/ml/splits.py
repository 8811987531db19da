"""Time-based splits: a model learns from the past and is judged on what came after."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame
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
    t = F.col(column).cast("double")
    return Split(
        train=rows.where(t < F.lit(validation_start)),
        validation=rows.where((t >= F.lit(validation_start)) & (t < F.lit(holdout_start))),
        holdout=rows.where(t >= F.lit(holdout_start)),
        validation_start=validation_start,
        holdout_start=holdout_start,
    )
