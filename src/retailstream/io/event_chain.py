"""The event store's hash chains in Spark: chaining each ingest batch, and walking them back.

Each ingest micro-batch is chained per (topic, partition) from the hash its
partition ended with, then appended to bronze; the batch's last offset and hash
per partition (its heads) go to a small table of their own. The heads serve
twice: the next batch continues from them (read back only after a restart,
and only from batches before the one being written, so a batch replayed after
a crash gets the same hashes), and `verify` checks the store against them, so
a chain rewritten from some record on still shows.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import cast

import pandas as pd
from pyspark import cloudpickle
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, LongType, StringType, StructField, StructType

from retailstream.io.delta import append_once, has_commits, read_table
from retailstream.transforms import chain as chain_module
from retailstream.transforms.chain import GENESIS, chain_hashes, first_break

# The hashing and the walk run in Python workers. Shipped by value, they need only
# pandas there (as every pandas UDF does), not retailstream installed on the cluster.
cloudpickle.register_pickle_by_value(chain_module)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

HEADS_TABLE = "bronze_chain_heads"
HEADS_SCHEMA = (
    "topic string, partition int, batch_id long, last_offset long, chain_hash binary, records long"
)
Heads = dict[tuple[str, int], bytes]


def _with_millis(rows: DataFrame) -> DataFrame:
    return rows.withColumn("timestamp_ms", F.unix_millis("kafka_timestamp"))


def with_chain_hash(schema: StructType) -> StructType:
    """`schema` and the `chain_hash` column (a new StructType: a DataFrame's own is not copied)."""
    return StructType([*schema.fields, StructField("chain_hash", BinaryType())])


def chained(rows: DataFrame, previous: Mapping[tuple[str, int], bytes]) -> DataFrame:
    """Bronze rows with `chain_hash`, each partition continuing from `previous` (else GENESIS).

    No shuffle: Spark's Kafka source reads each Kafka partition's offset range as
    one Spark partition, in offset order, so each task chains its records as they
    come (ingest refuses the source options that would split a range). Were a
    Kafka partition ever split, two tasks would continue its chain from the same
    hash, and `verify` would name the record where they meet.
    """
    starts = dict(previous)

    def chain(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        last = dict(starts)
        for frame in frames:
            frame = frame.sort_values(["topic", "partition", "offset"], kind="stable")
            hashes: list[bytes] = []
            for key, group in frame.groupby(["topic", "partition"], sort=False):
                topic, partition = cast(tuple[str, int], key)
                at = (str(topic), int(partition))
                linked = chain_hashes(group, last.get(at, GENESIS))
                last[at] = linked[-1]
                hashes += linked
            yield frame.assign(chain_hash=hashes)

    timed = _with_millis(rows)
    return timed.mapInPandas(chain, with_chain_hash(timed.schema)).drop("timestamp_ms")


def batch_heads(rows: DataFrame, batch_id: int) -> DataFrame:
    """Per (topic, partition) of chained `rows`: the last offset, its hash, and the row count."""
    return rows.groupBy("topic", "partition").agg(
        F.lit(batch_id).cast("long").alias("batch_id"),
        F.max("offset").alias("last_offset"),
        F.max_by("chain_hash", "offset").alias("chain_hash"),
        F.count("*").alias("records"),
    )


def heads_before(spark: SparkSession, path: Path, batch_id: int) -> Heads:
    """Where each partition's chain stood after the last batch before `batch_id`."""
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
    """The ingest query's batch handler: chain the batch, append it, record its heads.

    Both appends are idempotent per (query id, batch id), the id the Delta
    streaming sink used before, so a store written by that sink carries on.
    """

    def __init__(self, spark: SparkSession, bronze: Path, heads: Path, checkpoint: Path) -> None:
        self.spark, self.bronze, self.heads, self.checkpoint = spark, bronze, heads, checkpoint
        self._after: tuple[int, Heads] | None = None  # (batch id, heads after it)

    def _query_id(self) -> str:
        # Spark writes the query's id here when it starts, before the first batch.
        return str(json.loads((self.checkpoint / "metadata").read_text())["id"])

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if self._after is not None and self._after[0] == batch_id - 1:
            previous = self._after[1]
        else:  # the first batch since the start, or a replay: read back what was written
            previous = heads_before(self.spark, self.heads, batch_id)
        rows = chained(batch, previous).persist()
        try:
            app_id = self._query_id()
            append_once(rows, self.bronze, app_id, batch_id)
            new = batch_heads(rows, batch_id).collect()
            append_once(self.spark.createDataFrame(new, HEADS_SCHEMA), self.heads, app_id, batch_id)
        finally:
            rows.unpersist()
        self._after = (
            batch_id,
            {**previous, **{(r["topic"], r["partition"]): bytes(r["chain_hash"]) for r in new}},
        )


WALK_SCHEMA = StructType(
    [
        StructField("topic", StringType()),
        StructField("partition", LongType()),
        StructField("records", LongType()),
        StructField("break_offset", LongType()),
        StructField("kind", StringType()),
        StructField("detail", StringType()),
    ]
)


def _walk(group: pd.DataFrame) -> pd.DataFrame:
    group = group.sort_values("offset", kind="stable")
    found = first_break(group)
    return pd.DataFrame(
        [
            {
                "topic": str(group["topic"].iloc[0]),
                "partition": int(group["partition"].iloc[0]),
                "records": len(group),
                "break_offset": None if found is None else found.offset,
                "kind": None if found is None else found.kind,
                "detail": None if found is None else found.detail,
            }
        ]
    )


def walk_chains(bronze: DataFrame) -> DataFrame:
    """One row per (topic, partition) of chained bronze rows: how many records, and the
    first break if the chain does not hold (null columns when it does)."""
    columns = ["topic", "partition", "offset", "timestamp_ms", "key", "value", "chain_hash"]
    return (
        _with_millis(bronze)
        .select(*columns)
        .groupBy("topic", "partition")
        .applyInPandas(_walk, WALK_SCHEMA)
    )
