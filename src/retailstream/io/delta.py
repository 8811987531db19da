"""Delta tables: streaming appends with a checkpoint per query, and batch reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery
from pyspark.sql.types import StructType

# Defined with the lake's table names (no Spark there), used by every Delta job from here.
from retailstream.io.lake_names import has_commits as has_commits


@dataclass(frozen=True)
class StreamTrigger:
    """How a streaming query advances: drain what is there and stop, or run on an interval."""

    available_now: bool = False
    processing_time: str = "5 seconds"

    def apply(self, writer: DataStreamWriter) -> DataStreamWriter:
        """`writer` with this trigger set."""
        if self.available_now:
            return writer.trigger(availableNow=True)
        return writer.trigger(processingTime=self.processing_time)


def append_stream(
    df: DataFrame,
    path: Path,
    checkpoint: Path,
    query_name: str,
    trigger: StreamTrigger,
    partition_by: Sequence[str] = (),
) -> StreamingQuery:
    """Start an append-only stream into the Delta table at `path`.

    Delta's streaming sink records each micro-batch id in the table's log, so
    a batch replayed after a crash is not written twice: with the checkpoint,
    this is exactly-once.
    """
    writer = trigger.apply(
        df.writeStream.format("delta")
        .outputMode("append")
        .queryName(query_name)
        .option("checkpointLocation", str(checkpoint))
    )
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    return writer.start(str(path))


def create_if_missing(
    spark: SparkSession, path: Path, schema: StructType, partition_by: Sequence[str] = ()
) -> None:
    """Create an empty Delta table at `path` unless one is there.

    Needed before several streaming queries append to one table: their first
    commits would otherwise race to create it (DELTA_PROTOCOL_CHANGED); and
    before batch appends that must land in a partitioned table.
    """
    builder = DeltaTable.createIfNotExists(spark).location(str(path)).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    builder.execute()


def read_table(spark: SparkSession, path: Path, version: int | None = None) -> DataFrame:
    """A Delta table as a batch DataFrame, optionally as of a past version (time travel)."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(str(path))


def latest_version(spark: SparkSession, path: Path) -> int:
    """The version of the Delta table's newest commit."""
    latest = DeltaTable.forPath(spark, str(path)).history(1).first()
    assert latest is not None  # a Delta table has at least its first commit
    return int(latest["version"])


def table_detail(spark: SparkSession, path: Path) -> Row:
    """DESCRIBE DETAIL of the Delta table at `path`: its id, numFiles, sizeInBytes..."""
    detail = DeltaTable.forPath(spark, str(path)).detail().first()
    assert detail is not None  # DESCRIBE DETAIL answers one row for any Delta table
    return detail


def write_table(df: DataFrame, path: Path, mode: str = "append") -> None:
    """Write a batch DataFrame to the Delta table at `path` (`append` or `overwrite`)."""
    df.write.format("delta").mode(mode).save(str(path))


def append_once(df: DataFrame, path: Path, app_id: str, version: int) -> None:
    """Append `df` to the Delta table at `path` unless (`app_id`, `version`) was already written.

    Delta records the pair in its log with the commit; a micro-batch replayed
    after a crash therefore writes nothing the second time.
    """
    (
        df.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", version)
        .option("mergeSchema", "false")
        .save(str(path))
    )


def foreach_batch_stream(
    df: DataFrame,
    handler: Callable[[DataFrame, int], None],
    checkpoint: Path,
    query_name: str,
    trigger: StreamTrigger,
) -> StreamingQuery:
    """Start a stream whose micro-batches are handed to `handler(batch, batch_id)`."""
    return trigger.apply(
        df.writeStream.foreachBatch(handler)
        .queryName(query_name)
        .option("checkpointLocation", str(checkpoint))
    ).start()


def read_stream(spark: SparkSession, path: Path) -> DataFrame:
    """A Delta table as an unbounded stream of its appends."""
    return spark.readStream.format("delta").load(str(path))
