"""Answer a gold view as of a past time: what the view held then.

From Delta time travel when the view's version of that time is still kept (the
newest version committed at or before it); otherwise, when the log or the files
of that version are gone (vacuumed, or older than the log's retention), by
folding the events the event store had taken in by then into the view. The
answer says which of the two it used.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from delta.tables import DeltaTable
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.datasets import gold_table
from retailstream.io.delta import has_commits, read_table
from retailstream.jobs.build_views import fold_ingested_by
from retailstream.jobs.launcher import iso_time
from retailstream.jobs.spec import Job
from retailstream.views.definitions import chosen_views


@dataclass(frozen=True)
class Answer:
    rows: pd.DataFrame
    how: str  # "time travel" | "fold"
    detail: str


def version_at(spark: SparkSession, path: Path, at: datetime) -> tuple[int, datetime] | None:
    """The newest version of the table committed at or before `at` (None: none kept)."""
    if not has_commits(path):
        return None
    newest = (
        DeltaTable.forPath(spark, str(path))
        .history()
        .where(F.col("timestamp") <= F.lit(at).cast("timestamp"))
        .orderBy(F.desc("version"))
        .select("version", "timestamp")
        .first()
    )
    if newest is None:
        return None
    return int(newest["version"]), newest["timestamp"].replace(tzinfo=UTC)


def answer(spark: SparkSession, settings: Settings, view: str, at: datetime) -> Answer:
    """`view` as it stood at `at` (see the module's doc for how)."""
    chosen_views(settings, [view])  # an unknown view is a clear error
    if at > datetime.now(UTC):
        raise UserError(f"{at.isoformat()} is in the future: `asof` answers the past")
    path = gold_table(settings, view)
    found = version_at(spark, path, at)
    reason = "no version of the view was committed by then"
    if found is not None:
        version, committed = found
        try:
            rows = read_table(spark, path, version).toPandas()
            return Answer(rows, "time travel",
                          f"gold.{view} version {version}, committed {committed:%Y-%m-%d %H:%M:%S} UTC")  # fmt: skip
        except (Py4JJavaError, PySparkException) as error:  # its files were vacuumed
            reason = f"version {version} can no longer be read ({_first_line(error)})"
    rows = fold_ingested_by(spark, settings, view, at).toPandas()
    return Answer(rows, "fold", f"the events ingested by {at:%Y-%m-%d %H:%M:%S} UTC; {reason}")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:160] if text else type(error).__name__


@dataclass(frozen=True)
class AsofRun:
    """What `asof` runs with: the settings, the gold view, the past time to answer it
    at, and how many of its rows to print."""

    settings: Settings
    view: str
    time: datetime
    limit: int = 20


def run(spark: SparkSession, cfg: AsofRun) -> int:
    at = cfg.time
    found = answer(spark, cfg.settings, cfg.view, at.astimezone(UTC))
    print(f"{cfg.view} as of {at.isoformat()}: {len(found.rows):,} rows, by {found.how} "
          f"({found.detail})")  # fmt: skip
    shown = found.rows.head(cfg.limit)
    print(shown.to_string(index=False) if not shown.empty else "(no rows)")
    if len(found.rows) > cfg.limit:
        print(f"... {len(found.rows) - cfg.limit:,} more rows (raise --limit)")
    return 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("time", type=iso_time, help="ISO 8601, UTC unless an offset is given")
    parser.add_argument("view", help="a gold view, e.g. item_ratings")
    parser.add_argument("--limit", type=int, default=20, help="rows to print at most")


def configure(settings: Settings, args: argparse.Namespace) -> AsofRun:
    return AsofRun(settings, view=args.view, time=args.time, limit=args.limit)


JOB = Job(
    "asof",
    "a gold view as it stood at a past time (Delta time travel, else folded from events)",
    "command", "asof_views", configure, run, add_flags,
)  # fmt: skip
main = JOB.main
