"""Verify the event store: walk every (topic, partition) hash chain and report the first
record that was changed, removed or inserted, and check the chains against the heads
each ingest batch recorded (which also catches a removed or added tail).

Exit status 0 when every chain holds, 1 when one does not.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.delta import has_commits, read_table
from retailstream.io.event_chain import HEADS_TABLE, walk_chains
from retailstream.jobs.ingest_events import BRONZE_TABLE
from retailstream.jobs.launcher import launch
from retailstream.transforms.chain import Break


@dataclass(frozen=True)
class Verdict:
    records: int  # chained records walked
    chains: int  # (topic, partition) chains
    unchained: int  # records ingested before the store had chains
    breaks: list[Break]

    @property
    def intact(self) -> bool:
        return not self.breaks


def _chained_part(bronze: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(records from each partition's first chained record on, records before it).

    A store ingested before chains existed keeps those older records without a
    hash; from a partition's first hash on, a missing hash is a break.
    """
    first = (
        bronze.where(F.col("chain_hash").isNotNull())
        .groupBy("topic", "partition")
        .agg(F.min("offset").alias("_first"))
    )
    marked = bronze.join(first, ["topic", "partition"], "left")
    covered = F.col("_first").isNotNull() & (F.col("offset") >= F.col("_first"))
    return marked.where(covered).drop("_first"), marked.where(~covered)


def _against_heads(bronze: DataFrame, heads: DataFrame) -> list[Break]:
    """Breaks between the store and the heads its ingest batches recorded."""
    stored = bronze.select(
        "topic", "partition", F.col("offset").alias("last_offset"),
        F.col("chain_hash").alias("stored_hash"),
    )  # fmt: skip
    found = [
        Break(
            r["topic"],
            r["partition"],
            r["last_offset"],
            "removed" if r["stored_hash"] is None else "changed",
            f"ingest batch {r['batch_id']} ended its chain here, "
            + (
                "and the record is gone"
                if r["stored_hash"] is None
                else "with another hash (the chain was rewritten from here or before)"
            ),
        )  # fmt: skip
        for r in heads.join(stored, ["topic", "partition", "last_offset"], "left")
        .where(F.col("stored_hash").isNull() | (F.col("stored_hash") != F.col("chain_hash")))
        .collect()
    ]
    latest = heads.groupBy("topic", "partition").agg(F.max("last_offset").alias("head"))
    beyond = (
        bronze.join(latest, ["topic", "partition"])
        .where(F.col("offset") > F.col("head"))
        .groupBy("topic", "partition")
        .agg(F.min("offset").alias("offset"), F.first("head").alias("head"))
        .collect()
    )
    found += [
        Break(
            r["topic"],
            r["partition"],
            r["offset"],
            "inserted",
            f"after offset {r['head']}, where the last ingest batch ended this chain",
        )  # fmt: skip
        for r in beyond
    ]
    return found


def verify(spark: SparkSession, settings: Settings) -> Verdict:
    path = settings.lake.table(BRONZE_TABLE)
    if not has_commits(path):
        raise UserError(f"no event store at {path}: run `retailstream run ingest` first")
    bronze = read_table(spark, path)
    if "chain_hash" not in bronze.columns:
        raise UserError("this event store has no hash chains yet: run ingest once to add them")
    covered, older = _chained_part(bronze)
    walked = walk_chains(covered).collect()
    heads_path = settings.lake.table(HEADS_TABLE)
    breaks = (
        _against_heads(covered, read_table(spark, heads_path)) if has_commits(heads_path) else []
    )
    breaks += [
        Break(r["topic"], r["partition"], r["break_offset"], r["kind"], r["detail"])
        for r in walked
        if r["kind"] is not None
    ]
    # One report per place: where the walk and the heads both see an edit, the heads
    # know more (a record after the last recorded head was inserted, not changed).
    unique: dict[tuple[str, int, int], Break] = {}
    for found in breaks:
        unique.setdefault((found.topic, found.partition, found.offset), found)
    ordered = sorted(unique.values(), key=lambda b: (b.topic, b.partition, b.offset))
    return Verdict(
        records=sum(r["records"] for r in walked),
        chains=len(walked),
        unchained=older.count(),
        breaks=_first_per_chain(ordered),
    )


def _first_per_chain(breaks: Sequence[Break]) -> list[Break]:
    seen: set[tuple[str, int]] = set()
    first = []
    for found in breaks:
        if (found.topic, found.partition) not in seen:
            seen.add((found.topic, found.partition))
            first.append(found)
    return first


def run(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
    verdict = verify(spark, settings)
    older = (
        f"; {verdict.unchained:,} older records were ingested before the store had chains"
        if verdict.unchained
        else ""
    )
    if verdict.intact:
        print(f"event store intact: {verdict.records:,} records in {verdict.chains} chains{older}")
        return 0
    print(f"event store NOT intact: {len(verdict.breaks)} of {verdict.chains} chains broken{older}")
    for found in verdict.breaks:
        print(f"  {found.describe()}")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    return launch(__doc__.splitlines()[0], run, argv, prog="verify_store")
