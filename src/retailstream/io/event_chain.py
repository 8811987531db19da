"""The event store's tamper-evidence in the lake: hashing each ingest batch as it is
appended, recording the batch's link in a chain table apart from the store, and
reading both back for `verify` (formulas in `transforms.chain`).

Each ingest micro-batch gets a `record_hash` per row (Spark expressions, in the
JVM) and is appended to bronze; per (topic, partition) its offsets, count and
records digest, linked to the partition's previous batch, go to the chain
table. The next batch links to that entry: held in memory while the query
runs, read back only after a restart, and only from batches before the one
being written, so a batch replayed after a crash gets the same links.
"""

from __future__ import annotations

import json
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, StructField, StructType

from retailstream.io.delta import append_once, has_commits, read_table
from retailstream.transforms.chain import (
    GENESIS,
    RECORD_HASH,
    batch_summary,
    link,
    record_hash,
)

# One row per ingest batch and (topic, partition) it read.
CHAIN_SCHEMA = (
    "topic string, partition int, batch_id long, first_offset long, last_offset long, "
    "records long, records_digest binary, chain_hash binary"
)
Links = dict[tuple[str, int], bytes]


def with_record_hash(schema: StructType) -> StructType:
    """`schema` and the `record_hash` column (a new StructType: a DataFrame's own is not copied)."""
    return StructType([*schema.fields, StructField(RECORD_HASH, BinaryType())])


def links_before(spark: SparkSession, path: Path, batch_id: int) -> Links:
    """Each partition's chain hash after the last batch before `batch_id`."""
    if not has_commits(path):
        return {}
    rows = (
        read_table(spark, path)
        .where(F.col("batch_id") < batch_id)
        .groupBy("topic", "partition")
        .agg(F.max_by("chain_hash", "batch_id").alias("chain_hash"))
        .collect()
    )
    return {(r["topic"], r["partition"]): bytes(r["chain_hash"]) for r in rows}


class ChainedAppend:
    """The ingest query's batch handler: hash the batch, append it, record its links.

    Both appends are idempotent per (query id, batch id), the id the Delta
    streaming sink used before, so a store written by that sink carries on.
    """

    def __init__(self, spark: SparkSession, bronze: Path, chain: Path, checkpoint: Path) -> None:
        self.spark, self.bronze, self.chain, self.checkpoint = spark, bronze, chain, checkpoint
        self._after: tuple[int, Links] | None = None  # (batch id, links after it)

    def _query_id(self) -> str:
        # Spark writes the query's id here when it starts, before the first batch.
        return str(json.loads((self.checkpoint / "metadata").read_text())["id"])

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if self._after is not None and self._after[0] == batch_id - 1:
            previous = self._after[1]
        else:  # the first batch since the start, or a replay: read back what was written
            previous = links_before(self.spark, self.chain, batch_id)
        # Kept for the second pass (the summary) instead of reading Kafka again.
        rows = batch.withColumn(RECORD_HASH, record_hash()).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            app_id = self._query_id()
            append_once(rows, self.bronze, app_id, batch_id)
            summary = batch_summary(rows).collect()
        finally:
            rows.unpersist()
        links = [
            (
                r["topic"],
                r["partition"],
                batch_id,
                r["first_offset"],
                r["last_offset"],
                r["records"],
                bytes(r["records_digest"]),
                link(
                    previous.get((r["topic"], r["partition"]), GENESIS),
                    bytes(r["records_digest"]),
                    r["first_offset"],
                    r["last_offset"],
                    r["records"],
                ),
            )  # fmt: skip
            for r in summary
        ]
        append_once(self.spark.createDataFrame(links, CHAIN_SCHEMA), self.chain, app_id, batch_id)
        self._after = (batch_id, {**previous, **{(t, p): h for t, p, *_, h in links}})
