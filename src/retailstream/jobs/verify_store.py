"""Verify the event store: recompute every record's hash and every ingest batch's
digest, and report the first record per (topic, partition) that was changed,
removed or inserted; check the batch chain ingest kept apart from the store too.

Exit status 0 when every chain holds, 1 when one does not.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.datasets import bronze_table, chain_table
from retailstream.io.delta import has_commits, read_table
from retailstream.io.event_chain import CHAIN_SCHEMA
from retailstream.jobs.spec import Job
from retailstream.transforms.chain import (
    RECORD_HASH,
    Break,
    batch_faults,
    chain_faults,
    first_gap,
    in_batches,
    record_faults,
    rehashed,
)


@dataclass(frozen=True)
class Verdict:
    records: int  # hashed records checked
    chains: int  # (topic, partition) chains
    unchained: int  # records ingested before the store had record hashes
    breaks: list[Break]

    @property
    def intact(self) -> bool:
        return not self.breaks


def _hashed_part(bronze: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(records from each partition's first hashed record on, records before it).

    A store ingested before record hashes existed keeps those older records
    without one; from a partition's first hash on, a missing hash is a change.
    """
    first = (
        bronze.where(F.col(RECORD_HASH).isNotNull())
        .groupBy("topic", "partition")
        .agg(F.min("offset").alias("_first"))
    )
    marked = bronze.join(first, ["topic", "partition"], "left")
    covered = F.col("_first").isNotNull() & (F.col("offset") >= F.col("_first"))
    return marked.where(covered).drop("_first"), marked.where(~covered)


def _batch_break(row: Any, located: DataFrame, ends: dict[tuple[str, int], int]) -> Break:
    """What a batch whose stored records differ from ingest's record says happened."""
    topic, partition, batch = row["topic"], row["partition"], row["batch_id"]
    if batch is None:
        end = ends.get((topic, partition))
        where = "in a partition no ingest batch recorded" if end is None else (
            f"after offset {end}, where the last ingest batch ended this chain"
        )  # fmt: skip
        return Break(topic, partition, row["stored_first_offset"], "inserted", where)
    first, last, records = row["first_offset"], row["last_offset"], row["records"]
    if row["stored_records"] is None:
        return Break(topic, partition, first, "removed",
                     f"offsets {first}..{last} are missing (all of ingest batch {batch})")  # fmt: skip
    if row["stored_records"] < records:
        offsets = [
            r["offset"]
            for r in located.where(
                (F.col("topic") == topic) & (F.col("partition") == partition)
                & (F.col("batch_id") == batch)
            ).select("offset").orderBy("offset").collect()
        ]  # fmt: skip
        gap = first_gap(offsets, first, last)
        if gap is not None and last - first + 1 == records:  # ingest saw no gap here
            return Break(topic, partition, gap[0], "removed",
                         f"offsets {gap[0]}..{gap[1]} are missing")  # fmt: skip
        return Break(topic, partition, first, "removed",
                     f"ingest batch {batch} wrote {records} records between offsets "
                     f"{first} and {last}, {row['stored_records']} are left")  # fmt: skip
    if row["stored_records"] > records:
        return Break(topic, partition, first, "inserted",
                     f"ingest batch {batch} wrote {records} records between offsets "
                     f"{first} and {last}, the store holds {row['stored_records']}")  # fmt: skip
    return Break(topic, partition, first, "changed",
                 f"records between offsets {first} and {last} were rewritten, "
                 f"their hashes with them: ingest batch {batch}'s digest differs")  # fmt: skip


def _breaks(located: DataFrame, chain: DataFrame) -> list[Break]:
    """Every break `located` (rehashed records in their batches) and `chain` show."""
    # The first faulty record of each batch is enough: one break is named per chain.
    first_faults = (
        record_faults(located)
        .groupBy("topic", "partition", "batch_id")
        .agg(F.min(F.struct("offset", "kind")).alias("first"))
        .collect()
    )
    records = [
        Break(
            r["topic"],
            r["partition"],
            r["first"]["offset"],
            r["first"]["kind"],
            "a record the batch did not hold"
            if r["first"]["kind"] == "inserted"
            else "its content or hash differs from what was ingested",
        )  # fmt: skip
        for r in first_faults
    ]
    ends = {
        (r["topic"], r["partition"]): r["end"]
        for r in chain.groupBy("topic", "partition")
        .agg(F.max("last_offset").alias("end"))
        .collect()
    }
    # A batch with a faulty record is reported by that record, which says more.
    named = {(r["topic"], r["partition"], r["batch_id"]) for r in first_faults}
    batches = [
        _batch_break(r, located, ends)
        for r in batch_faults(located, chain).collect()
        if (r["topic"], r["partition"], r["batch_id"]) not in named
    ]
    edited = [
        Break(
            r["topic"],
            r["partition"],
            r["first_offset"],
            "changed",
            f"ingest batch {r['batch_id']}'s entry in the batch chain was edited",
        )  # fmt: skip
        for r in chain_faults(chain).collect()
    ]
    # An edited chain explains the batch that no longer matches it: named first.
    return edited + records + batches


def verify(spark: SparkSession, settings: Settings) -> Verdict:
    path = bronze_table(settings)
    if not has_commits(path):
        raise UserError(f"no event store at {path}: run `retailstream run ingest` first")
    bronze = read_table(spark, path)
    if RECORD_HASH not in bronze.columns:
        raise UserError("this event store has no record hashes yet: run ingest once to add them")
    covered, older = _hashed_part(bronze)
    chain_path = chain_table(settings)
    chain = (
        read_table(spark, chain_path)
        if has_commits(chain_path)
        else spark.createDataFrame([], CHAIN_SCHEMA)
    )
    # Persisted once: the checks, and the counts of what was checked, all read it.
    located = in_batches(rehashed(covered), chain).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        found = _breaks(located, chain)
        counts = located.groupBy("topic", "partition").count().collect()
    finally:
        located.unpersist()
    # One report per place, the first found there (`_breaks` lists the most telling first).
    unique: dict[tuple[str, int, int], Break] = {}
    for one in found:
        unique.setdefault((one.topic, one.partition, one.offset), one)
    ordered = sorted(unique.values(), key=lambda b: (b.topic, b.partition, b.offset))
    return Verdict(
        records=sum(r["count"] for r in counts),
        chains=len(counts),
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


@dataclass(frozen=True)
class VerifyRun:
    """What `verify` runs with: the settings (it has no flags)."""

    settings: Settings


def run(spark: SparkSession, cfg: VerifyRun) -> int:
    verdict = verify(spark, cfg.settings)
    older = (
        f"; {verdict.unchained:,} older records were ingested before the store had record hashes"
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


def configure(settings: Settings, args: argparse.Namespace) -> VerifyRun:
    """A `VerifyRun` of the settings (the command has no flags of its own)."""
    del args
    return VerifyRun(settings)


JOB = Job(
    "verify",
    "walk the event store's hash chains: report records changed, removed or inserted",
    "command", "verify_store", configure, run,
)  # fmt: skip
main = JOB.main
