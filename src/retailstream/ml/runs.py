"""What every training job does around its model: pinned inputs, size checks, MLflow logging."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from retailstream.errors import UserError
from retailstream.io.delta import has_commits, latest_version, read_table


class Kept:
    """The DataFrames one training run keeps in memory. In local mode the cache shares
    the driver's heap with broadcasts and everything else, so a run that returns without
    letting go starves the next one (seen as "not enough memory to build and broadcast")."""

    def __init__(self) -> None:
        self._frames: list[DataFrame] = []

    def __call__(self, frame: DataFrame) -> DataFrame:
        """`frame` cached until the run ends (one cached elsewhere is only tracked)."""
        kept = frame if frame.is_cached else frame.persist()
        self._frames.append(kept)
        return kept

    def release(self) -> None:
        for frame in self._frames:
            frame.unpersist()
        self._frames.clear()


@contextmanager
def kept_in_memory() -> Iterator[Kept]:
    """A `Kept` whose frames are all released when the block ends, however it ends."""
    kept = Kept()
    try:
        yield kept
    finally:
        kept.release()


def pinned_table(spark: SparkSession, path: Path, hint: str) -> tuple[DataFrame, dict[str, Any]]:
    """A Delta table read at its current version, and that version (the run's lineage):
    the run reads one snapshot even while streams keep appending."""
    if not has_commits(path):
        raise UserError(f"no table at {path}: {hint}")
    version = latest_version(spark, path)
    return read_table(spark, path, version), {"table": str(path), "delta_version": version}


def require_rows(sizes: Mapping[str, int], minimum: int, what: str, how: str = "by time") -> None:
    """Refuse a split too small to train or judge on, before anything is logged or registered;
    `how` says how it was split."""
    if sizes["train"] < minimum or not sizes["validation"] or not sizes["holdout"]:
        total = sum(sizes.values())
        raise UserError(
            f"too few {what} to train: {total:,} in all, split {how} into "
            f"{sizes['train']:,} train / {sizes['validation']:,} validation / "
            f"{sizes['holdout']:,} holdout (need at least {minimum:,} to train on and "
            "some in each later split); nothing was registered or changed"
        )


def finite(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics MLflow can store (a NaN means "not measurable here": left out)."""
    return {k: v for k, v in metrics.items() if not math.isnan(v)}


def log_figure(draw: Callable[[Any], None], name: str) -> None:
    """Draw on a fresh matplotlib axes (headless) and log the PNG to the active run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    figure, axes = plt.subplots(figsize=(5, 3.5))
    draw(axes)
    figure.tight_layout()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        figure.savefig(path, dpi=100)
        mlflow.log_artifact(str(path))
    plt.close(figure)
