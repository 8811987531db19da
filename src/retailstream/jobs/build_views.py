"""Views: silver -> gold materialized views, upserted into the serving store.

Reads (as streams): the silver tables each view is made of; as tables: the
same silver tables in full, and the reference data.
Writes, per view `v` and micro-batch:
- `<lake>/gold/<v>`: a Delta table, MERGEd by the view's key (or overwritten
  for a top-K view), checkpoint `<lake>/_checkpoints/views_<v>`;
- the serving store (`views.sqlite_path`): the same rows, upserted in the same
  batch, and how far into each Kafka partition the view has read (for the
  API's read-your-writes tokens).

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
from retailstream.views.store import ServingStore, open_store

CATALOGUE = {
    "products": ("sku", "name", "category", "season", "brand", "price"),
    "stores": ("store_id", "city", "region", "country", "lat", "lon"),
    "customers": ("customer_id", "home_region"),
}


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
    """The reference tables the views and the catalogue read."""
    return {t for v in definitions(settings.views).values() for t in v.references} | set(CATALOGUE)


def load_references(spark: SparkSession, settings: Settings) -> dict[str, DataFrame]:
    """The reference tables the views and the catalogue read (cached; one-line error if absent)."""
    return refine_events.load_references(spark, settings, sorted(reference_tables(settings)))


def publish_catalogue(store: ServingStore, references: Mapping[str, DataFrame]) -> None:
    """The products, stores and customers the API checks commands and lookups against."""
    for name, columns in CATALOGUE.items():
        store.replace(name, [r.asDict() for r in references[name].select(*columns).collect()])


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


def store_rows(rows: DataFrame) -> list[dict]:
    return [r.asDict(recursive=True) for r in rows.collect()]


def advance_positions(store: ServingStore, view: str, batch: DataFrame) -> None:
    """Record the highest Kafka offset per topic-partition the batch brought into `view`."""
    latest = batch.groupBy("topic", "partition").agg(F.max("offset").alias("offset")).collect()
    by_topic: dict[str, dict[int, int]] = {}
    for row in latest:
        by_topic.setdefault(row["topic"], {})[int(row["partition"])] = int(row["offset"])
    for topic, offsets in by_topic.items():
        store.advance(view, topic, offsets)


def views_batch_handler(
    spark: SparkSession,
    settings: Settings,
    view: ViewDefinition,
    references: Mapping[str, DataFrame],
    store: ServingStore,
) -> Callable[[DataFrame, int], None]:
    """The foreachBatch handler of one view (a factory, so tests can call it on static frames)."""
    path = gold_table(settings, view.name)

    def handle(batch: DataFrame, batch_id: int) -> None:
        exists = has_commits(path)
        if exists and batch.isEmpty():
            return
        batch = batch.persist()
        try:
            keyed = exists and view.key is not None
            rows = compute_view(spark, settings, view, references, batch if keyed else None)
            rows = rows.persist()
            # The serving store first: readers see the batch without waiting for the
            # Delta commit (a MERGE takes seconds). Both are computed from silver alone
            # and written idempotently, so a batch that fails in between is redone
            # whole on restart and the two agree again; positions move last.
            if keyed:
                store.upsert(view.name, store_rows(rows))
                _merge(rows, path, view.key)
            else:
                store.replace(view.name, store_rows(rows))
                write_table(rows, path, mode="overwrite")
            rows.unpersist()
            advance_positions(store, view.name, batch)
        finally:
            batch.unpersist()

    return handle


def start(
    spark: SparkSession,
    settings: Settings,
    view: ViewDefinition,
    references: Mapping[str, DataFrame],
    store: ServingStore,
    trigger: StreamTrigger,
) -> StreamingQuery:
    """Start the query that keeps `view` up to date with its silver tables."""
    streams = {t: read_stream(spark, silver_table(settings, t)) for t in view.sources}
    return foreach_batch_stream(
        view.facts(streams),
        views_batch_handler(spark, settings, view, references, store),
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
    """Publish the catalogue and start one query per configured view.

    `references`: the loaded reference tables, when the caller has them already.
    """
    views = chosen_views(settings, names)
    require_silver(settings, views)
    if references is None:
        references = load_references(spark, settings)
    store = open_store(settings.views.sqlite_path)
    publish_catalogue(store, references)
    return [start(spark, settings, view, references, store, trigger) for view in views]


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
    """`views rebuild VIEW [--as-of TIME]`.

    Without a time, the live view is replaced (Delta overwrite and serving
    store) by its recomputation: the repair for a view that went wrong. With
    one, the past state goes to its own table and the live view is untouched.
    """
    rows = rebuild(spark, settings, args.view, args.as_of).persist()
    if args.as_of is None:
        path = gold_table(settings, args.view)
        write_table(rows, path, mode="overwrite")
        store = open_store(settings.views.sqlite_path)
        count = store.replace(args.view, store_rows(rows))
        print(f"rebuilt {args.view}: {count:,} rows in {path} and the serving store")
    else:
        path = as_of_table(settings, args.view, args.as_of)
        write_table(rows, path, mode="overwrite")
        print(f"{args.view} as of {args.as_of.isoformat()}: {rows.count():,} rows in {path}")
    rows.unpersist()
    return 0


def run(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
    trigger = StreamTrigger(args.available_now, settings.views.trigger_interval)
    queries = start_all(spark, settings, trigger)
    for query in queries:
        query.awaitTermination()
    print(f"views up to date: {', '.join(q.name for q in queries)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return launch(
        __doc__.splitlines()[0],
        run,
        argv,
        available_now_flag("bring the views up to date with silver"),
        prog="build_views",
    )
