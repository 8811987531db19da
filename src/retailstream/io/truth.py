"""The generator's ground truth, kept apart from the events.

What a perfect model would know (true delay probabilities, true tastes) and
which records were made defective on purpose. Written by `retailstream
produce` as Parquet files under `<lake>/ground_truth/<table>/`, one file per
`append` (`publish` appends a minute's or a million rows' worth per table), so
producing needs no JVM; Spark and pandas read each folder as one table.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

TRUTH_ROOT = "ground_truth"


def truth_dir(lake_root: Path, table: str = "") -> Path:
    """The folder of one ground-truth table (or of them all, without `table`)."""
    return lake_root / TRUTH_ROOT / table if table else lake_root / TRUTH_ROOT


class TruthWriter:
    """Appends ground-truth frames as Parquet files; one writer per produce run."""

    def __init__(self, lake_root: Path) -> None:
        self.lake_root = lake_root
        self.run_id = uuid.uuid4().hex[:12]
        self._parts = 0
        self.rows_written: dict[str, int] = {}

    def append(self, frames: dict[str, pd.DataFrame]) -> None:
        for table, frame in frames.items():
            if frame.empty:
                continue
            folder = truth_dir(self.lake_root, table)
            folder.mkdir(parents=True, exist_ok=True)
            self._parts += 1
            path = folder / f"part-{self.run_id}-{self._parts:06d}.parquet"
            # Write to a hidden name, then rename: readers never see half a file.
            tmp = folder / f".{path.name}.tmp"
            # Microsecond timestamps: Spark reads no nanosecond Parquet timestamps.
            pq.write_table(
                pa.Table.from_pandas(frame, preserve_index=False),
                tmp,
                coerce_timestamps="us",
                allow_truncated_timestamps=True,
            )
            tmp.rename(path)
            self.rows_written[table] = self.rows_written.get(table, 0) + len(frame)


def read_truth(spark: SparkSession, lake_root: Path, table: str) -> DataFrame | None:
    """One ground-truth table as a Spark DataFrame, or None when none was written
    (the lake was not filled by the generator)."""
    folder = truth_dir(lake_root, table)
    return spark.read.parquet(str(folder)) if any(folder.glob("*.parquet")) else None
