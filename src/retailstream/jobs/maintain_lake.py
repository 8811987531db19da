"""Maintain the lake: compact small files and vacuum old ones, within a retention that
keeps the promised time travel and everything the slowest stream still has to read.

Streams append small files every micro-batch; compaction rewrites them into
fewer large ones and marks the small ones removed, and vacuum deletes removed
files older than the retention. Two readers still need removed files: time
travel to a version inside `lake.time_travel_hours`, and a stream that has not
read a version yet (it reads the files that version added, even after a
compaction removed them). The retention is checked against both first, and a
setting that would break either is refused before anything changes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io import datasets, lake_names
from retailstream.io.checkpoints import delta_source_versions
from retailstream.io.delta import table_detail
from retailstream.jobs.spec import Job


@dataclass(frozen=True)
class Need:
    """Removed files younger than `hours` must stay, because of `why`."""

    hours: float
    why: str


def _commit_time(spark: SparkSession, path: Path, version: int) -> datetime | None:
    """When `version` of the table was committed (None: not committed yet)."""
    rows = DeltaTable.forPath(spark, str(path)).history().where(f"version = {version}").collect()
    return rows[0]["timestamp"].replace(tzinfo=UTC) if rows else None


def _table_ids(spark: SparkSession, tables: dict[str, Path]) -> dict[str, tuple[str, Path]]:
    """{Delta table id: (readable name, path)}: checkpoints name their sources by id."""
    found = {}
    for name, path in tables.items():
        found[str(table_detail(spark, path)["id"])] = (name, path)
    return found


def stream_needs(spark: SparkSession, settings: Settings, now: datetime) -> list[Need]:
    """For each streaming query behind on a Delta source: how old the oldest version
    it still has to read is (its files must survive the vacuum)."""
    checkpoints = datasets.checkpoints(settings)
    if not checkpoints.is_dir():
        return []
    ids = _table_ids(spark, lake_names.lake_tables(settings.lake.root))
    needs = []
    for checkpoint in sorted(p for p in checkpoints.iterdir() if p.is_dir()):
        for table_id, version in delta_source_versions(checkpoint).items():
            if table_id not in ids:
                continue
            name, path = ids[table_id]
            committed = _commit_time(spark, path, version)
            if committed is None:  # caught up: the version it waits for does not exist yet
                continue
            age = (now - committed).total_seconds() / 3600
            needs.append(
                Need(
                    age,
                    f"query {checkpoint.name} has not read {name} version {version} "
                    f"(committed {committed:%Y-%m-%d %H:%M} UTC) yet",
                )  # fmt: skip
            )
    return needs


def check_retention(retention_hours: float, needs: Sequence[Need]) -> None:
    """Refuse a retention shorter than any need, naming the needs it would break."""
    broken = sorted((n for n in needs if retention_hours < n.hours), key=lambda n: -n.hours)
    if broken:
        shown = "; ".join(f"{n.why} (needs {n.hours:.2f} h)" for n in broken[:3])
        raise UserError(
            f"a retention of {retention_hours:g} h would delete files still needed: {shown}. "
            f"Use --retention-hours {max(n.hours for n in broken):.2f} or more, or let the "
            "streams catch up first; nothing was changed"
        )


@dataclass(frozen=True)
class Maintained:
    table: str
    files_before: int
    files_after: int
    seconds: float


def _live_files(spark: SparkSession, path: Path) -> int:
    return int(table_detail(spark, path)["numFiles"])


def maintain(
    spark: SparkSession,
    settings: Settings,
    retention_hours: float,
    dry_run: bool = False,
    only: Sequence[str] = (),
) -> list[Maintained]:
    """Check the retention, then compact and vacuum every lake table (or those named in
    `only`); what each became."""
    now = datetime.now(UTC)
    promise = Need(settings.lake.time_travel_hours,
                   f"time travel is promised for {settings.lake.time_travel_hours:g} h "
                   "(lake.time_travel_hours)")  # fmt: skip
    check_retention(retention_hours, [promise, *stream_needs(spark, settings, now)])
    tables = lake_names.lake_tables(settings.lake.root)
    unknown = sorted(set(only) - set(tables))
    if unknown:
        raise UserError(
            f"no table {', '.join(unknown)} in the lake (see `retailstream sql --tables`)"
        )
    if only:
        tables = {name: path for name, path in tables.items() if name in only}
    if dry_run:
        return [
            Maintained(n, _live_files(spark, p), _live_files(spark, p), 0.0)
            for n, p in tables.items()
        ]
    # Delta refuses retentions under 7 days on its own; ours is checked above against
    # what actually reads this lake, so that check is switched off while we vacuum.
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    # Vacuum lists a table's files in as many tasks as this says (10,000 by default):
    # 25-35 s of task overhead for a small table on 2 cores, 3-4 s with a few.
    listing = str(max(4, 2 * spark.sparkContext.defaultParallelism))
    spark.conf.set("spark.sql.sources.parallelPartitionDiscovery.parallelism", listing)
    done = []
    for name, path in tables.items():
        started = time.monotonic()
        before = _live_files(spark, path)
        table = DeltaTable.forPath(spark, str(path))
        table.optimize().executeCompaction()
        table.vacuum(retention_hours)
        done.append(Maintained(name, before, _live_files(spark, path), time.monotonic() - started))
    return done


@dataclass(frozen=True)
class MaintainRun:
    """What `maintain` runs with: the settings, how long to keep removed files (None:
    `lake.time_travel_hours`), whether to only check and list, and the tables to
    maintain (empty: every table)."""

    settings: Settings
    retention_hours: float | None = None
    dry_run: bool = False
    tables: tuple[str, ...] = ()

    @property
    def retention(self) -> float:
        """The retention in hours: the one asked for, else the promised time travel."""
        if self.retention_hours is None:
            return self.settings.lake.time_travel_hours
        return self.retention_hours


def run(spark: SparkSession, cfg: MaintainRun) -> int:
    retention = cfg.retention
    if retention < 0:
        raise UserError("--retention-hours must be zero or more")
    done = maintain(spark, cfg.settings, retention, cfg.dry_run, cfg.tables)
    verb = "would compact and vacuum" if cfg.dry_run else "compacted and vacuumed"
    print(f"{verb} {len(done)} tables, keeping removed files for {retention:g} h:")
    for m in done:
        print(
            f"  {m.table:<34} {m.files_before:>6} -> {m.files_after:>5} files  {m.seconds:5.1f} s"
        )
    return 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retention-hours", type=float,
        help="keep removed files this long (default: lake.time_travel_hours)",
    )  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true", help="check the retention and list, change nothing"
    )
    parser.add_argument(
        "--table", action="append", default=[],
        help="only this table, e.g. gold.item_ratings (repeatable; default: every table)",
    )  # fmt: skip


def configure(settings: Settings, args: argparse.Namespace) -> MaintainRun:
    return MaintainRun(
        settings, retention_hours=args.retention_hours, dry_run=args.dry_run,
        tables=tuple(args.table),
    )  # fmt: skip


JOB = Job(
    "maintain",
    "compact and vacuum every lake table, within a retention the streams and "
    "the promised time travel allow",
    "command", "maintain_lake", configure, run, add_flags,
)  # fmt: skip
main = JOB.main
