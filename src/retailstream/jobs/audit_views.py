"""Audit a gold view: which micro-batches changed it, when, and from which Kafka records.

The gold query's checkpoint says, batch by batch, up to which version of each
silver table it read (of the view's tables, those are what the view took in); the silver versions in between name the data files they
added; those rows carry the Kafka coordinates of the records they came from. So
each batch of the view is traced to per-partition Kafka offset ranges, and to
the view's own Delta versions committed while it ran.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io import datasets
from retailstream.io.checkpoints import committed_batches, delta_source_versions_of_batch
from retailstream.io.datasets import gold_table, silver_table
from retailstream.io.delta import has_commits, table_detail
from retailstream.io.delta_log import added_files
from retailstream.jobs.spec import Job
from retailstream.views.definitions import chosen_views


@dataclass(frozen=True)
class KafkaRange:
    topic: str
    partition: int
    first: int
    last: int
    records: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] {self.first}-{self.last} ({self.records:,})"


@dataclass(frozen=True)
class BatchAudit:
    batch_id: int
    planned_at: datetime
    committed_at: datetime
    silver_versions: dict[str, tuple[int, int]]  # table -> [from, to) versions read
    kafka: list[KafkaRange] = field(default_factory=list)
    gold_versions: list[int] = field(default_factory=list)


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _kafka_ranges(spark: SparkSession, files: list[str]) -> list[KafkaRange]:
    if not files:
        return []
    rows = (
        spark.read.parquet(*files)
        .groupBy("topic", "partition")
        .agg(
            F.min("offset").alias("first"),
            F.max("offset").alias("last"),
            F.count("*").alias("records"),
        )  # fmt: skip
        .orderBy("topic", "partition")
        .collect()
    )
    return [
        KafkaRange(r["topic"], r["partition"], r["first"], r["last"], r["records"]) for r in rows
    ]


def audit(spark: SparkSession, settings: Settings, view: str, last: int) -> list[BatchAudit]:
    """The view's last `last` committed batches, oldest first."""
    (definition,) = chosen_views(settings, [view])
    checkpoint = datasets.checkpoint(settings, datasets.GOLD_QUERY)
    batches = committed_batches(checkpoint)
    if not batches:
        raise UserError(f"the gold query has not committed a batch yet ({checkpoint})")
    tables = {t: silver_table(settings, t) for t in definition.sources}
    ids = {str(table_detail(spark, p)["id"]): t for t, p in tables.items()}
    gold = gold_table(settings, view)
    history = (
        DeltaTable.forPath(spark, str(gold)).history().select("version", "timestamp").collect()
        if has_commits(gold)
        else []
    )
    found = []
    previous: dict[str, int] = {}
    for batch in batches:
        read_to = {
            ids[i]: v
            for i, v in delta_source_versions_of_batch(checkpoint, batch).items()
            if i in ids
        }
        ranges = {t: (previous.get(t, 0), v) for t, v in read_to.items()}
        previous.update(read_to)
        if batch not in batches[-last:]:
            continue
        planned = _mtime(checkpoint / "offsets" / str(batch))
        committed = _mtime(checkpoint / "commits" / str(batch))
        files = [f for t, (a, b) in ranges.items() for f in added_files(tables[t], a, b)]
        changed = sorted(
            int(h["version"]) for h in history
            if planned <= h["timestamp"].replace(tzinfo=UTC) <= committed
        )  # fmt: skip
        found.append(
            BatchAudit(batch, planned, committed, ranges, _kafka_ranges(spark, files), changed)
        )
    return found


def render(view: str, batches: Sequence[BatchAudit]) -> str:
    lines = [f"{view}: the last {len(batches)} committed batches"]
    for b in batches:
        reads = ", ".join(f"silver.{t} v{a}..v{z - 1}" if z > a else f"silver.{t} (nothing new)"
                          for t, (a, z) in b.silver_versions.items())  # fmt: skip
        gold = ", ".join(f"v{v}" for v in b.gold_versions) or "none"
        lines.append(f"batch {b.batch_id}  committed {b.committed_at:%Y-%m-%d %H:%M:%S} UTC  "
                     f"read {reads}; gold versions {gold}")  # fmt: skip
        lines += [f"    {r}" for r in b.kafka] or ["    no new records"]
    return "\n".join(lines)


@dataclass(frozen=True)
class AuditRun:
    """What `audit` runs with: the settings, the gold view, and how many of its recent
    batches to trace."""

    settings: Settings
    view: str
    last: int = 20


def run(spark: SparkSession, cfg: AuditRun) -> int:
    print(render(cfg.view, audit(spark, cfg.settings, cfg.view, cfg.last)))
    return 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("view", help="a gold view, e.g. item_ratings")
    parser.add_argument("--last", type=int, default=20, help="how many recent batches")


def configure(settings: Settings, args: argparse.Namespace) -> AuditRun:
    return AuditRun(settings, view=args.view, last=args.last)


JOB = Job(
    "audit",
    "which micro-batches changed a gold view, when, from which Kafka offset ranges",
    "command", "audit_views", configure, run, add_flags,
)  # fmt: skip
main = JOB.main
