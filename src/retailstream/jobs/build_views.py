"""Gold views: silver -> gold materialized Delta views, for SQL, BI, time travel and audit.

One streaming query (`gold_views`) reads every silver table the views are made
of and, per micro-batch, folds the batch into each view:

- a keyed view (item_ratings, sales_by_region, inventory_positions) gets the
  rows of the batch's own facts MERGEd into the stored rows of those keys
  (`views.gold_merges`: sums, histograms, the newest N);
- trending_items is re-ranked from `gold/trending_activity`, per-minute
  activity MERGEd the same way and cut to the trending window.

Nothing reads stored silver, so a batch costs what its own rows cost. Each
write carries Delta's (txnAppId, txnVersion) = (the query's id, the batch id):
a batch replayed after a crash is skipped table by table, so the views are
exactly-once. The query's first batch reads the whole silver snapshot and
writes every view whole; a view configured later is first built from the
silver versions the query has read (`seed_new_views`).

Writes `<lake>/gold/<view>` and `<lake>/gold/trending_activity`, checkpoint
`<lake>/_checkpoints/gold_views`. The API does not read these: the serving
store's views are folded straight from Kafka by the serving path
(`jobs.serving_views`), in one hop.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from functools import reduce
from pathlib import Path

from delta.tables import DeltaTable
from pyspark import inheritable_thread_target
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings, ViewsSettings
from retailstream.errors import UserError
from retailstream.io import datasets
from retailstream.io.checkpoints import committed_batches, delta_source_offsets_of_batch
from retailstream.io.datasets import (
    GOLD_QUERY,
    bronze_table,
    gold_as_of_table,
    gold_table,
    silver_table,
)
from retailstream.io.delta import (
    StreamTrigger,
    foreach_batch_stream,
    has_commits,
    read_stream,
    read_table,
    table_detail,
    write_table,
)
from retailstream.jobs.interrupts import await_queries
from retailstream.jobs.spec import StreamRun, stream_job
from retailstream.transforms.aggregate import aggregate_value
from retailstream.views.definitions import (
    COORDINATES,
    ViewDefinition,
    chosen_views,
    definitions,
    minute_activity,
    rank_trending,
    trending_minutes,
)
from retailstream.views.gold_merges import GoldMerge, keyed_merges, trending_activity

# Delta's idempotent-write session confs (honoured by MERGE, DELETE and writes alike).
TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
TXN_VERSION = "spark.databricks.delta.write.txnVersion"


QUERY_NAME = GOLD_QUERY
ACTIVITY_TABLE = "trending_activity"  # per-minute activity, what trending_items is ranked from


def checkpoint(settings: Settings) -> Path:
    """The gold query's checkpoint (one for every view)."""
    return datasets.checkpoint(settings, QUERY_NAME)


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


def gold_references(spark: SparkSession, settings: Settings) -> dict[str, DataFrame]:
    """The reference tables the gold views read (cached; one-line error if absent)."""
    return datasets.load_references(spark, settings, sorted(reference_tables(settings)))


def all_facts(
    spark: SparkSession,
    settings: Settings,
    view: ViewDefinition,
    as_of: datetime | None,
    silver: Mapping[str, DataFrame] | None = None,
) -> DataFrame:
    """Every stored silver fact of `view` (up to event time `as_of`); `silver`: the
    tables to read instead of the current ones."""
    if silver is None:
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
    as_of: datetime | None = None,
    silver: Mapping[str, DataFrame] | None = None,
) -> DataFrame:
    """Every row of `view` computed from stored silver (or from `silver`)."""
    facts = all_facts(spark, settings, view, as_of, silver)
    return view.compute(facts, references, settings.views, None, as_of)


def stream_tables() -> tuple[str, ...]:
    """The silver tables the gold query reads: those of every defined view, configured
    or not, so that configuring another view later keeps the query's sources."""
    return tuple(sorted({t for v in definitions_of_all() for t in v.sources}))


def definitions_of_all() -> list[ViewDefinition]:
    return list(definitions(ViewsSettings()).values())


def packed(frames: Mapping[str, DataFrame]) -> DataFrame:
    """Silver tables' rows as one frame: each row names its table in `_table` and
    carries its columns in a struct named after it (the tables' columns differ)."""
    packed_frames = [
        frame.select(F.lit(table).alias("_table"), F.struct("*").alias(table))
        for table, frame in sorted(frames.items())
    ]
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), packed_frames)


def packed_stream(spark: SparkSession, settings: Settings) -> DataFrame:
    """The gold query's input: the appends of every table in `stream_tables`, packed."""
    return packed({t: read_stream(spark, silver_table(settings, t)) for t in stream_tables()})


def unpacked(batch: DataFrame, tables: Sequence[str]) -> dict[str, DataFrame]:
    """The silver rows of each table in a packed batch."""
    return {t: batch.where(F.col("_table") == t).select(f"`{t}`.*") for t in tables}


@contextmanager
def idempotent_writes(spark: SparkSession, app_id: str | None, version: int) -> Iterator[None]:
    """Delta writes (MERGE included) in this block are skipped on a table that has
    recorded (`app_id`, `version`) or a later version already: one write per table.

    Session confs, so `spark` must be this query's own session (a foreachBatch
    frame's is).
    """
    if app_id is None:
        yield
        return
    confs = {TXN_APP_ID: app_id, TXN_VERSION: str(version)}
    for key, value in confs.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key in confs:
            spark.conf.unset(key)


def merge_rows(
    rows: DataFrame, path: Path, merge: GoldMerge, older_than: datetime | None = None
) -> None:
    """MERGE a batch's `rows` (one per key) into the stored rows by `merge`'s rule.

    `older_than`: stored and new rows whose `prune_on` is before it are dropped
    in the same commit (trending's activity outside its window).
    """
    condition = reduce(
        lambda a, b: a & b, (F.col(f"t.`{k}`").eqNullSafe(F.col(f"s.`{k}`")) for k in merge.key)
    )
    if merge.prune_on is not None:
        low = aggregate_value(rows, F.min(merge.prune_on))
        if low is not None:
            condition = condition & (F.col(f"t.`{merge.prune_on}`") >= F.lit(low))
    builder = (
        DeltaTable.forPath(rows.sparkSession, str(path))
        .alias("t")
        .merge(rows.alias("s"), condition)
        .whenMatchedUpdate(set=merge.updates)
    )
    if older_than is None:
        builder = builder.whenNotMatchedInsertAll()
    else:
        kept = F.col(f"s.`{merge.prune_on}`") >= F.lit(older_than)
        builder = builder.whenNotMatchedInsertAll(kept).whenNotMatchedBySourceDelete(
            F.col(f"t.`{merge.prune_on}`") < F.lit(older_than)
        )
    builder.execute()


class GoldBatch:
    """The gold query's foreachBatch handler: each view takes the batch's facts.

    Every write of a batch carries (`app_id`, batch id), so a replayed batch is
    skipped table by table. `app_id` is the query's id (from its checkpoint: a
    new checkpoint is a new id, so its batch ids do not collide with an old
    one's). Tests call it on static frames with `app_id` fixed.
    """

    def __init__(
        self,
        settings: Settings,
        views: Sequence[ViewDefinition],
        references: Mapping[str, DataFrame],
        app_id: Callable[[], str | None],
    ) -> None:
        self.settings = settings
        self.views = list(views)
        self.references = references
        self.app_id = app_id
        self.merges = keyed_merges(settings.views)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if batch_id > 0 and batch.isEmpty():
            return
        spark = batch.sparkSession
        batch = batch.persist()
        persisted: list[DataFrame] = []
        try:
            silver = unpacked(batch, stream_tables())
            writes = [
                write
                for view in self.views
                if (write := self.plan(spark, view, view.facts(silver), batch_id == 0, persisted))
            ]
            # The views' writes are independent: two at a time keep both cores busy
            # through each other's planning and commits. (Nothing is cached while
            # they run: a MERGE fails when its source's caching changes under it.)
            with (
                idempotent_writes(spark, self.app_id(), batch_id),
                ThreadPoolExecutor(max_workers=2) as pool,
            ):
                list(pool.map(inheritable_thread_target(spark)(lambda write: write()), writes))
        finally:
            for frame in persisted:
                frame.unpersist()
            batch.unpersist()

    def fold(
        self, spark: SparkSession, view: ViewDefinition, facts: DataFrame, whole: bool
    ) -> None:
        """Fold `facts` into `view` now; `whole`: write the view from them alone."""
        persisted: list[DataFrame] = []
        try:
            write = self.plan(spark, view, facts, whole, persisted)
            if write is not None:
                write()
        finally:
            for frame in persisted:
                frame.unpersist()

    def plan(
        self,
        spark: SparkSession,
        view: ViewDefinition,
        facts: DataFrame,
        whole: bool,
        persisted: list[DataFrame],
    ) -> Callable[[], None] | None:
        """The write that folds `facts` into `view` (None: nothing to write), with the
        frames it reads computed and cached first (added to `persisted`)."""
        if view.key is None:
            return self._plan_trending(spark, facts, whole, persisted)
        path = gold_table(self.settings, view.name)
        settings = self.settings.views
        if whole:
            rows = view.compute(facts, self.references, settings)
            return lambda: write_table(rows, path, "overwrite")
        keys = facts.select(*view.key).distinct()
        touched = view.compute(facts, self.references, settings, keys).persist()
        persisted.append(touched)
        if touched.isEmpty():
            return None
        return lambda: merge_rows(touched, path, self.merges[view.name])

    def _plan_trending(
        self, spark: SparkSession, facts: DataFrame, whole: bool, persisted: list[DataFrame]
    ) -> Callable[[], None] | None:
        activity_path = gold_table(self.settings, ACTIVITY_TABLE)
        activity = minute_activity(facts).persist()
        persisted.append(activity)
        newest = aggregate_value(activity, F.max("minute"))
        if not whole:
            if newest is None:
                return None  # nothing new to rank
            stored = aggregate_value(read_table(spark, activity_path), F.max("minute"))
            newest = max(newest, stored or newest)
        newest = newest or datetime(1970, 1, 1)
        first, _ = trending_minutes(newest, self.settings.views)

        def write() -> None:
            if whole:
                kept = activity.where(F.col("minute") >= F.lit(first))
                write_table(kept, activity_path, "overwrite")
            else:
                merge_rows(activity, activity_path, trending_activity(), older_than=first)
            ranked = rank_trending(
                read_table(spark, activity_path), self.references, self.settings.views, newest
            )
            write_table(ranked, gold_table(self.settings, "trending_items"), "overwrite")

        return write


def _query_id(path: Path) -> str | None:
    """The id Spark gave the query in its checkpoint (None before it started)."""
    metadata = path / "metadata"
    return json.loads(metadata.read_text())["id"] if metadata.exists() else None


def silver_read_by_query(spark: SparkSession, settings: Settings) -> dict[str, DataFrame] | None:
    """The silver tables as far as the gold query has read them (Delta time travel to
    the versions before its next batch's); None before its first batch."""
    cp = checkpoint(settings)
    batches = committed_batches(cp)
    if not batches:
        return None
    read = delta_source_offsets_of_batch(cp, batches[-1])
    silver = {}
    for table in stream_tables():
        path = silver_table(settings, table)
        version, index = read.get(str(table_detail(spark, path)["id"]), (0, -1))
        if index != -1:
            raise UserError(
                f"the gold query stopped inside version {version} of silver {table}: "
                "run it once more (`retailstream run views --available-now`) first"
            )
        current = read_table(spark, path)
        silver[table] = read_table(spark, path, version - 1) if version > 0 else current.limit(0)
    return silver


def seed_new_views(
    spark: SparkSession,
    settings: Settings,
    views: Sequence[ViewDefinition],
    references: Mapping[str, DataFrame],
) -> list[str]:
    """Build each view without a table from the silver the gold query has read so far,
    so that its next batch carries it on; return their names.

    Nothing to do before the query's first batch: that one writes every view.
    """
    missing = [v for v in views if not has_commits(gold_table(settings, v.name))]
    silver = silver_read_by_query(spark, settings) if missing else None
    if silver is None:
        return []
    handler = GoldBatch(settings, views, references, lambda: None)
    for view in missing:
        handler.fold(spark, view, view.facts(silver), whole=True)
    return [v.name for v in missing]


def start(
    spark: SparkSession,
    settings: Settings,
    trigger: StreamTrigger,
    names: Sequence[str] | None = None,
    references: Mapping[str, DataFrame] | None = None,
) -> StreamingQuery:
    """Start the one query that keeps the configured gold views up to date with silver.

    `references`: the loaded reference tables, when the caller has them already.
    """
    views = chosen_views(settings, names)
    require_silver(settings, definitions_of_all())
    if references is None:
        references = gold_references(spark, settings)
    seed_new_views(spark, settings, views, references)
    cp = checkpoint(settings)
    return foreach_batch_stream(
        packed_stream(spark, settings),
        GoldBatch(settings, views, references, lambda: _query_id(cp)),
        cp,
        QUERY_NAME,
        trigger,
    )


def rebuild(
    spark: SparkSession,
    settings: Settings,
    name: str,
    as_of: datetime | None = None,
    silver: Mapping[str, DataFrame] | None = None,
) -> DataFrame:
    """`name` recomputed in batch from every stored silver fact (up to `as_of`)."""
    (view,) = chosen_views(settings, [name])
    require_silver(settings, [view])
    return compute_view(spark, settings, view, gold_references(spark, settings), as_of, silver)


def fold_ingested_by(
    spark: SparkSession, settings: Settings, name: str, ingested_by: datetime
) -> DataFrame:
    """`name` as the stream had it once it had seen what was ingested by `ingested_by`:
    computed from the silver facts whose records the event store took in by then."""
    (view,) = chosen_views(settings, [name])
    require_silver(settings, [view])
    taken = (
        read_table(spark, bronze_table(settings))
        .where(F.col("ingest_time") <= F.lit(ingested_by).cast("timestamp"))
        .select(*COORDINATES)
    )
    silver = {
        t: read_table(spark, silver_table(settings, t)).join(taken, list(COORDINATES), "left_semi")
        for t in view.sources
    }
    return view.compute(
        view.facts(silver), gold_references(spark, settings), settings.views, None, None
    )


def rebuild_command(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
    """`views rebuild-gold VIEW [--as-of TIME]`.

    Without a time, the gold view is replaced (Delta overwrite) by its
    recomputation from the silver the gold query has read (so that its next
    batch adds only what follows): the repair for a view that went wrong. With
    one, the past state goes to its own table and the live view is untouched.
    """
    silver = silver_read_by_query(spark, settings) if args.as_of is None else None
    rows = rebuild(spark, settings, args.view, args.as_of, silver)
    path = (
        gold_table(settings, args.view)
        if args.as_of is None
        else gold_as_of_table(settings, args.view, args.as_of)
    )
    write_table(rows, path, mode="overwrite")
    written = read_table(spark, path).count()
    when = "" if args.as_of is None else f" as of {args.as_of.isoformat()}"
    print(f"rebuilt gold {args.view}{when} from silver: {written:,} rows in {path}")
    return 0


def run(spark: SparkSession, cfg: StreamRun) -> int:
    settings = cfg.settings
    trigger = cfg.trigger(settings.views.trigger_interval)
    views = chosen_views(settings)
    await_queries(start(spark, settings, trigger))
    print(f"gold views up to date: {', '.join(v.name for v in views)}")
    return 0


JOB = stream_job(
    "views", __doc__.splitlines()[0], "build_views", run, "bring the views up to date with silver"
)
main = JOB.main
