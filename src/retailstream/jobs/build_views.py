"""Gold views: silver -> gold materialized Delta views, for SQL, BI, time travel and audit.

Reads (as streams): the silver tables each view is made of; as tables: the
same silver tables in full, and the reference data.
Writes, per view `v` and micro-batch: `<lake>/gold/<v>`, a Delta table,
MERGEd by the view's key (or overwritten for a top-K view), checkpoint
`<lake>/_checkpoints/views_<v>`.

The API does not read these: the serving store's views are folded straight
from Kafka by the serving path (`jobs.serving_views`), in one hop.

A micro-batch recomputes the keys it touched from every stored silver fact
(`views.definitions`), so a replayed batch rewrites identical rows: the view
is exactly-once without extra bookkeeping, and `rebuild` equals it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.delta import (
    StreamTrigger,
    foreach_batch_stream,
    has_commits,
    read_stream,
    read_table,
    write_table,
)
from retailstream.jobs import refine_events
from retailstream.jobs.ingest_events import BRONZE_TABLE
from retailstream.jobs.launcher import available_now_flag, launch
from retailstream.jobs.refine_events import silver_table
from retailstream.views.definitions import COORDINATES, ViewDefinition, definitions


def gold_table(settings: Settings, view: str) -> Path:
    return settings.lake.table(f"gold/{view}")


def query_name(view: str) -> str:
    return f"views_{view}"


def chosen_views(settings: Settings, names: Sequence[str] | None = None) -> list[ViewDefinition]:
    known = definitions(settings.views)
    names = list(names or settings.views.views)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown view {', '.join(unknown)}; views: {', '.join(known)}")
    return [known[n] for n in names]


def require_silver(settings: Settings, views: Sequence[ViewDefinition]) -> None:
    """Fail in one line when a silver table a view is made of is missing."""
    missing = sorted(
        {t for v in views for t in v.sources if not has_commits(silver_table(settings, t))}
    )
    if missing:
        raise UserError(
            f"silver tables missing ({', '.join(missing)}): run `retailstream run refine`"
        )


def reference_tables(settings: Settings) -> set[str]:
    """The reference tables the gold views read."""
    return {t for v in definitions(settings.views).values() for t in v.references}


def load_references(spark: SparkSession, settings: Settings) -> dict[str, DataFrame]:
    """The reference tables the gold views read (cached; one-line error if absent)."""
    return refine_events.load_references(spark, settings, sorted(reference_tables(settings)))


def all_facts(
    spark: SparkSession, settings: Settings, view: ViewDefinition, as_of: datetime | None
) -> DataFrame:
    """Every stored silver fact of `view` (up to event time `as_of`)."""
    silver = {t: read_table(spark, silver_table(settings, t)) for t in view.sources}
    facts = view.facts(silver)
    if as_of is not None:
        facts = facts.where(F.col("event_time") <= F.lit(as_of).cast("timestamp"))
    return facts


def compute_view(
    spark: SparkSession,
    settings: Settings,
    view: ViewDefinition,
    references: Mapping[str, DataFrame],
    touched: DataFrame | None = None,
    as_of: datetime | None = None,
) -> DataFrame:
    """The rows of `view` from stored silver: all of them, or those of the keys in `touched`."""
    facts = all_facts(spark, settings, view, as_of)
    if touched is None or view.key is None:
        return view.compute(facts, references, settings.views, None, as_of)
    keys = touched.select(*view.key).distinct()
    restricted = facts.join(keys, list(view.key), "left_semi")
    return view.compute(restricted, references, settings.views, keys, as_of)


def _merge(rows: DataFrame, path: Path, key: Sequence[str]) -> None:
    condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in key)
    (
        DeltaTable.forPath(rows.sparkSession, str(path))
        .alias("t")
        .merge(rows.alias("s"), condition)
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )


def views_batch_handler(
    spark: SparkSession,
    settings: Settings,
    view: ViewDefinition,
    references: Mapping[str, DataFrame],
) -> Callable[[DataFrame, int], None]:
    """The foreachBatch handler of one view (a factory, so tests can call it on static frames)."""
    path = gold_table(settings, view.name)

    def handle(batch: DataFrame, batch_id: int) -> None:
        exists = has_commits(path)
        if exists and batch.isEmpty():
            return
        keyed = exists and view.key is not None
        rows = compute_view(spark, settings, view, references, batch if keyed else None)
        if keyed:
            _merge(rows, path, view.key)
        else:
            write_table(rows, path, mode="overwrite")

    return handle


def start(
    spark: SparkSession,
    settings: Settings,
    view: ViewDefinition,
    references: Mapping[str, DataFrame],
    trigger: StreamTrigger,
) -> StreamingQuery:
    """Start the query that keeps `view` up to date with its silver tables."""
    streams = {t: read_stream(spark, silver_table(settings, t)) for t in view.sources}
    return foreach_batch_stream(
        view.facts(streams),
        views_batch_handler(spark, settings, view, references),
        settings.lake.checkpoint(query_name(view.name)),
        query_name(view.name),
        trigger,
    )


def start_all(
    spark: SparkSession,
    settings: Settings,
    trigger: StreamTrigger,
    names: Sequence[str] | None = None,
    references: Mapping[str, DataFrame] | None = None,
) -> list[StreamingQuery]:
    """Start one query per configured view.

    `references`: the loaded reference tables, when the caller has them already.
    """
    views = chosen_views(settings, names)
    require_silver(settings, views)
    if references is None:
        references = load_references(spark, settings)
    return [start(spark, settings, view, references, trigger) for view in views]


def rebuild(
    spark: SparkSession, settings: Settings, name: str, as_of: datetime | None = None
) -> DataFrame:
    """`name` recomputed in batch from every stored silver fact (up to `as_of`)."""
    (view,) = chosen_views(settings, [name])
    require_silver(settings, [view])
    return compute_view(spark, settings, view, load_references(spark, settings), as_of=as_of)


def fold_ingested_by(
    spark: SparkSession, settings: Settings, name: str, ingested_by: datetime
) -> DataFrame:
    """`name` as the stream had it once it had seen what was ingested by `ingested_by`:
    computed from the silver facts whose records the event store took in by then."""
    (view,) = chosen_views(settings, [name])
    require_silver(settings, [view])
    taken = (
        read_table(spark, settings.lake.table(BRONZE_TABLE))
        .where(F.col("ingest_time") <= F.lit(ingested_by).cast("timestamp"))
        .select(*COORDINATES)
    )
    silver = {
        t: read_table(spark, silver_table(settings, t)).join(taken, list(COORDINATES), "left_semi")
        for t in view.sources
    }
    return view.compute(
        view.facts(silver), load_references(spark, settings), settings.views, None, None
    )


def as_of_table(settings: Settings, view: str, as_of: datetime) -> Path:
    return settings.lake.table(f"gold_as_of/{view}/{as_of.strftime('%Y%m%dT%H%M%SZ')}")


def rebuild_command(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
    """`views rebuild-gold VIEW [--as-of TIME]`.

    Without a time, the gold view is replaced (Delta overwrite) by its
    recomputation from silver: the repair for a view that went wrong. With
    one, the past state goes to its own table and the live view is untouched.
    """
    rows = rebuild(spark, settings, args.view, args.as_of)
    path = (
        gold_table(settings, args.view)
        if args.as_of is None
        else as_of_table(settings, args.view, args.as_of)
    )
    write_table(rows, path, mode="overwrite")
    written = read_table(spark, path).count()
    when = "" if args.as_of is None else f" as of {args.as_of.isoformat()}"
    print(f"rebuilt gold {args.view}{when} from silver: {written:,} rows in {path}")
    return 0


def run(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
    trigger = StreamTrigger(args.available_now, settings.views.trigger_interval)
    queries = start_all(spark, settings, trigger)
    for query in queries:
        query.awaitTermination()
    print(f"gold views up to date: {', '.join(q.name for q in queries)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return launch(
        __doc__.splitlines()[0],
        run,
        argv,
        available_now_flag("bring the views up to date with silver"),
        prog="build_views",
    )
