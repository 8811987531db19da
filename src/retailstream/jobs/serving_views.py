"""Serving path: Kafka -> the serving store's views in one hop, exactly once by offsets.

Reads: the topics the serving views are folded from (shop.ratings,
shop.orders, shop.clickstream, logistics.shipments), straight from Kafka; the
reference tables of `world init`; the expectation suites.
Writes: each serving store of `views.stores`, with a query, checkpoint and
offsets of its own (fan-out: a store that was down catches up from its own
offsets while the others go on):
- SQLite (`views.sqlite_path`): per micro-batch, in one transaction folded by
  the driver, the rows of item_ratings, sales_by_region, trending_items and
  inventory_positions that the batch touched, and the Kafka offsets each view
  has applied. Checkpoint `<lake>/_checkpoints/serving_views_v2`.
- PostgreSQL: the same rows and offsets, but each task commits its own Kafka
  partition's slice of the batch, so the writes grow with the executors and
  never pass through the driver (`serving_tasks`). While the server is down,
  the batch is tried again until it answers. Checkpoint `serving_views_v2_postgres`.

Each record is parsed and checked against its suite with the code refine
uses (`transforms.parse`, `quality.verdicts`), so an event that refine
quarantines never counts in a view. The query itself keeps no state: each
batch is deduplicated by event id in the store's transaction, against the
ids the store has seen, by refine's rule (`StoreBatch.first_records`). A
micro-batch reads only its own records and folds their facts into the rows
they touch (`views.serving`): its cost does not grow with history.

`views rebuild` is the second, independent computation: it folds the bronze
event store, in Kafka offset order, through the same folds into a fresh store.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import KafkaSettings, Settings, ViewsSettings, interval_ms
from retailstream.errors import UserError
from retailstream.io import datasets
from retailstream.io.datasets import REFERENCE_TABLES, bronze_table, load_references
from retailstream.io.delta import StreamTrigger, foreach_batch_stream, has_commits, read_table
from retailstream.io.kafka_source import read_kafka_stream, starting_after
from retailstream.jobs import serving_realtime
from retailstream.jobs.interrupts import await_queries
from retailstream.jobs.serving_tasks import SliceFold, SliceReport, StoreOutage, fold_in_tasks
from retailstream.jobs.spec import StreamRun, stream_job
from retailstream.kafka.clients import require_broker
from retailstream.kafka.topics import topic_partitions
from retailstream.quality.expectations import KnownValues
from retailstream.quality.reference_values import known_values
from retailstream.quality.suites import load_suites
from retailstream.quality.verdicts import mark_events
from retailstream.schemas import CONTRACTS_BY_TABLE
from retailstream.session import built_side_by_side
from retailstream.transforms.bronze import to_bronze
from retailstream.transforms.parse import parse_events
from retailstream.views.facts import (
    SEEN,
    VIEW_SOURCES,
    fact_messages,
    facts_of,
    seen_facts,
    sources_of,
)
from retailstream.views.folds import Catalogue
from retailstream.views.postgres_store import PostgresStore
from retailstream.views.serving import HANDOVER, apply_facts, seed_inventory, view_topics
from retailstream.views.store import WritableStore, open_store
from retailstream.views.stores import serving_store

QUERY_NAME = datasets.SERVING_QUERY
# The query feeding PostgreSQL, beside SQLite's (`views.stores`: each store its own).
POSTGRES_QUERY_NAME = datasets.SERVING_POSTGRES_QUERY
# The query's checkpoint (a new one starts where the store's positions say, so
# nothing is read twice or skipped).
CHECKPOINT = datasets.SERVING_CHECKPOINT
RT_CHECKPOINT = serving_realtime.CHECKPOINT
# How a topic's parsed records are deduplicated: a streaming operator, or in batch.
Deduplication = Callable[[DataFrame], DataFrame]
# What a topic's checked records become: a row per fact, or a message per record.
FactShape = Callable[[DataFrame, str, tuple[str, ...], ViewsSettings], DataFrame]
# The products, stores and customers the API checks commands and lookups against.
CATALOGUE = {
    "products": ("sku", "name", "category", "season", "brand", "price"),
    "stores": ("store_id", "city", "region", "country", "lat", "lon"),
    "customers": ("customer_id", "home_region"),
}
STOCK_COLUMNS = ("store_id", "sku", "on_hand")
# Facts folded per store transaction by a rebuild (a micro-batch is one transaction).
REBUILD_CHUNK = 50_000


def _collected(frame: DataFrame) -> list[dict]:
    """A small frame's rows on the driver as dicts (through Arrow: no Row objects)."""
    return frame.toArrow().to_pylist()


def catalogue_rows(references: Mapping[str, DataFrame]) -> dict[str, list[dict]]:
    """The products, stores and customers the API checks commands and lookups against."""
    return {name: _collected(references[name].select(*cols)) for name, cols in CATALOGUE.items()}


def world_rows(tables: Mapping[str, pd.DataFrame]) -> dict[str, list[dict]]:
    """The catalogue and the initial stock straight from the generated world's frames
    (what `world init` writes to Delta), without Spark: the demo's API serves
    them while Spark is still starting."""
    wanted = {**CATALOGUE, "initial_stock": STOCK_COLUMNS}
    return {
        name: pa.Table.from_pandas(tables[name][list(cols)], preserve_index=False).to_pylist()
        for name, cols in wanted.items()
    }


def catalogue_of(rows: Mapping[str, list[dict]]) -> Catalogue:
    """What the folds decorate rows with, from the catalogue's rows."""
    return Catalogue(
        {p["sku"]: p for p in rows["products"]}, {s["store_id"]: s for s in rows["stores"]}
    )


def publish_catalogue(store: WritableStore, rows: Mapping[str, list[dict]]) -> None:
    """Write the catalogue's tables of `rows` (as `catalogue_rows` gives them)."""
    for name in CATALOGUE:
        store.replace(name, rows[name])


def prepare_store(store: WritableStore, rows: Mapping[str, list[dict]], settings: Settings) -> None:
    """The catalogue, and every initial stock position (once): `rows` as `world_rows`
    gives them. Idempotent: a store that has started its views keeps them."""
    publish_catalogue(store, rows)
    if "inventory_positions" in settings.views.views:
        seed_inventory(store, rows["initial_stock"], catalogue_of(rows), settings.views)


class ServingPath:
    """What every micro-batch of the serving query shares: the suites, the reference
    value sets, the catalogue the folds decorate rows with, and the store."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        store: WritableStore,
        references: Mapping[str, DataFrame] | None = None,
        known: KnownValues | None = None,
    ) -> None:
        """`references`, `known`: the loaded reference tables and the suites' value
        sets (`quality.reference_values.known_values`), when the caller has them already."""
        self.spark = spark
        self.settings = settings
        self.store = store
        self.views = tuple(settings.views.views)
        unknown = sorted(set(self.views) - set(VIEW_SOURCES))
        if unknown:
            raise UserError(f"unknown view {', '.join(unknown)}; views: {', '.join(VIEW_SOURCES)}")
        self.tables = sources_of(self.views)
        self.topics = [CONTRACTS_BY_TABLE[t].topic for t in self.tables]
        if references is None:
            wanted = sorted(set(REFERENCE_TABLES) | {"initial_stock"})
            references = load_references(spark, settings, wanted)
        self.references = references
        self.suites = load_suites(settings.refine.expectations_dir)
        self.known = known or known_values(spark, references, self.suites)
        # Collected once: the store's catalogue and the folds' decorations alike.
        self.catalogue_rows = catalogue_rows(references)
        self.catalogue = catalogue_of(self.catalogue_rows)
        # Set by the first fold: records pass through the serving path (the demo
        # starts the lake path's work after it, so that the two do not warm up at once).
        self.folded = threading.Event()
        # PostgreSQL is written by the tasks that read the records (`serving_tasks`),
        # SQLite by the driver. Each store has its own query, checkpoint and offsets.
        self.kind = "postgres" if isinstance(store, PostgresStore) else "sqlite"
        suffix = "" if self.kind == "sqlite" else f"_{self.kind}"
        self.query_name = QUERY_NAME if self.kind == "sqlite" else POSTGRES_QUERY_NAME
        self.checkpoints = (CHECKPOINT + suffix, RT_CHECKPOINT + suffix)
        self.stopping = threading.Event()
        self.outage = StoreOutage(
            self.kind, self.stopping, lambda line: print(line, file=sys.stderr)
        )
        self.slice_fold: SliceFold | None = None
        # The processes whose tasks folded the last micro-batch (PostgreSQL only).
        self.last_workers: frozenset[str] = frozenset()

    def prepare_store(self) -> None:
        """The catalogue, and every initial stock position (once)."""
        stock = self.references["initial_stock"].select(*STOCK_COLUMNS)
        rows = {**self.catalogue_rows, "initial_stock": _collected(stock)}
        prepare_store(self.store, rows, self.settings)

    def facts(
        self,
        records: Callable[[str], DataFrame],
        deduplicate: Deduplication,
        shape: FactShape = facts_of,
    ) -> DataFrame:
        """Every fact of the records of each topic (`records(topic)`: a stream or a
        table, bronze-shaped): per topic parsed, deduplicated by `deduplicate` and
        checked as refine does it, in one pass; a row per fact, or as `shape` gives
        them (`views.facts`)."""

        def facts_of_table(table: str) -> DataFrame:
            contract = CONTRACTS_BY_TABLE[table]
            parsed = deduplicate(parse_events(records(contract.topic), contract))
            marked = mark_events(parsed, contract, self.suites[table], self.known)
            return shape(marked, table, self.views, self.settings.views)

        parts = built_side_by_side(facts_of_table, self.tables)  # on the demo's start-up path
        facts = parts[0]
        for part in parts[1:]:
            facts = facts.unionByName(part)
        return facts

    def fold(
        self,
        facts: Iterable[Mapping],
        deduplicate: bool = False,
        handed_over: tuple[str, Mapping[int, int]] | None = None,
    ) -> dict[str, int]:
        """Fold `facts` in one store transaction; `deduplicate`: by event id against
        the ids the store has seen (facts of a stream; a rebuild's are distinct);
        `handed_over`: the facts topic offsets they came in (`apply_facts`)."""
        delay_ms = interval_ms(self.settings.refine.watermark_delay) if deduplicate else None
        applied = apply_facts(
            self.store,
            facts,
            self.views,
            self.catalogue,
            self.settings.views,
            delay_ms,
            handed_over,
        )
        self.folded.set()
        return applied

    def handle(self, batch: DataFrame, batch_id: int) -> None:
        """The foreachBatch handler. SQLite: the batch's facts to the driver in one Spark
        job, deduplicated and folded in one store transaction. PostgreSQL: each task
        folds its own slice, and only counts come back; while the store is down, the
        batch is tried again until it answers (its offsets make a retry a no-op)."""
        if self.slice_fold is None:
            self.fold(_collected(batch), deduplicate=True)
            return
        store = self.store
        assert isinstance(store, PostgresStore)

        def fold_batch() -> SliceReport:
            base = store.batch_watermark(self.query_name, batch_id)
            return fold_in_tasks(batch, replace(slice_fold, newest_ms=base))

        slice_fold = self.slice_fold
        report = self.outage.run(fold_batch)
        self.last_workers = report.workers
        self.folded.set()

    def start(self, trigger: StreamTrigger) -> StreamingQuery:
        """Start the serving query (the caller waits for it or stops it): in
        real-time mode when it runs continuously and the application has a task
        slot for each partition it reads (`serving_realtime`), else in micro-batches.

        Parsing and checks are part of the streaming plan, which is built once
        here: built per micro-batch in the handler, the same
        DataFrame took over a second of Py4J calls each time.
        """
        partitions = topic_partitions(self.settings.kafka.bootstrap, self.topics)
        starts = self.starting_offsets(partitions)
        real_time = self.settings.serving.real_time and not trigger.available_now
        if real_time and self.kind != "sqlite":
            # Real-time mode has no foreachBatch: its facts would reach the store
            # through one consumer on the driver, where the tasks write them here.
            print(
                f"serving: micro-batches for the {self.kind} store: its tasks write their own slices",
                file=sys.stderr,
            )
            real_time = False
        if real_time:
            slots, needed = (
                serving_realtime.task_slots(self.spark),
                sum(map(len, partitions.values())),
            )
            if slots < needed:
                print(
                    f"serving: micro-batches: real-time mode needs a task slot per partition"
                    f" ({needed}), the application has {slots} (spark.master=local[{needed}]"
                    " or more gives it them)",
                    file=sys.stderr,
                )
                real_time = False
        # A checkpoint of the other mode is stale: the store's positions say where to
        # start (`starting_offsets`), and the stale one would re-read from its offsets.
        batches, continuous = self.checkpoints
        mine, other = (continuous, batches) if real_time else (batches, continuous)
        shutil.rmtree(datasets.checkpoint(self.settings, other), ignore_errors=True)
        checkpoint = datasets.checkpoint(self.settings, mine)
        if real_time:
            return self._start_real_time(starts, str(checkpoint))
        kafka = self.settings.kafka
        # The consumer's fetch wait is paid again and again inside a batch's read
        # (measured: ~25 ms per partition at 50 ms); the serving path's records
        # are there already, so it waits 1 ms unless config says otherwise.
        kafka = kafka.model_copy(
            update={
                "max_offsets_per_trigger": self.settings.serving.max_offsets_per_trigger,
                "source_options": {"kafka.fetch.max.wait.ms": "1", **kafka.source_options},
            }
        )
        # No deduplication here: the store does it in each batch's transaction,
        # so the query has no state to commit, no shuffle, and one Spark stage.
        facts = self.facts(self._reader(kafka, starts), lambda parsed: parsed)
        if self.kind == "sqlite":
            # One task reads every partition of the four topics: a batch of a few thousand
            # records is tens of milliseconds of work, and one task is deserialized once
            # and needs one free slot where twelve need six rounds of the two a laptop has.
            facts = facts.coalesce(1)
        else:
            # A task per Kafka partition, each folding its own slice (no shuffle: a
            # slice is exactly one partition's records of the batch).
            assert isinstance(self.store, PostgresStore)
            if not (checkpoint / "offsets").exists():
                self.store.forget_batches(self.query_name)
            self.slice_fold = SliceFold(
                self.store.dsn,
                self.views,
                self.spark.sparkContext.broadcast(self.catalogue),
                self.settings.views,
                interval_ms(self.settings.refine.watermark_delay),
            )
        query = foreach_batch_stream(facts, self.handle, checkpoint, self.query_name, trigger)
        return StoppingServing(query, self.stopping)

    def _reader(
        self, kafka: KafkaSettings, starts: Mapping[str, str]
    ) -> Callable[[str], DataFrame]:
        """A topic's records as a bronze-shaped stream. A Kafka source per topic: each
        topic's branch reads its own records once, where one source for all would
        be read again by every branch."""
        return lambda topic: read_kafka_stream(
            self.spark, kafka, [topic], starting_offsets=starts[topic]
        ).transform(to_bronze)

    def _start_real_time(self, starts: Mapping[str, str], checkpoint: str) -> StreamingQuery:
        """The real-time query (records -> fact messages) and the folder of its messages."""
        messages = self.facts(
            self._reader(self.settings.kafka, starts), lambda parsed: parsed, fact_messages
        )
        facts_topic = self.settings.serving.facts_topic
        serving_realtime.create_facts_topic(self.settings)
        folder = serving_realtime.Folder(
            self.settings.kafka.bootstrap,
            facts_topic,
            self.store.positions(HANDOVER, facts_topic),
            lambda facts, handed_over: self.fold(facts, True, handed_over),
        )
        try:
            query = serving_realtime.start_query(messages, self.settings, checkpoint)
        except BaseException:
            folder.discard()
            raise
        folder.start()
        return serving_realtime.RealTimeServing(query, folder)

    def starting_offsets(self, partitions: Mapping[str, Sequence[int]]) -> dict[str, str]:
        """Per topic, where the query starts when its checkpoint is new: after the
        offsets every view of the topic has applied (the store's positions), so a
        lost or replaced checkpoint costs no re-reading of what the store holds.
        `partitions`: each topic's partition ids."""
        starts = {}
        for topic in self.topics:
            ids = partitions.get(topic, [])
            applied = [
                self.store.positions(v, topic) for v in self.views if topic in view_topics(v)
            ]
            common = {
                p: min(done[p] for done in applied)
                for p in ids
                if all(p in done for done in applied)
            }
            starts[topic] = starting_after(topic, common, ids)
        return starts


class StoppingServing(StreamingQuery):
    """A serving query whose stop also ends a wait for its store to come back (a
    foreachBatch handler that waits would otherwise hold the stop until it answers)."""

    def __init__(self, query: StreamingQuery, stopping: threading.Event) -> None:
        super().__init__(query._jsq)
        self._stopping = stopping

    def stop(self) -> None:
        self._stopping.set()
        super().stop()


def first_copies(parsed: DataFrame) -> DataFrame:
    """Each event of a topic's parsed records once: the copy with the lowest
    (partition, offset), as the stream keeps the first it reads. (The stream
    forgets an event id after `refine.watermark_delay` of Kafka time; copies
    further apart than that count twice live and once here. The generator's
    copies are seconds apart.)"""
    first = Window.partitionBy("_dedup_key").orderBy("partition", "offset")
    return (
        parsed.withColumn("_copy", F.row_number().over(first))
        .where(F.col("_copy") == 1)
        .drop("_copy")
    )


def _chunks(rows: Iterator[Row], size: int) -> Iterator[list[dict]]:
    while chunk := [r.asDict() for r in itertools.islice(rows, size)]:
        yield chunk


def rebuild(
    spark: SparkSession, settings: Settings, target: Path, ingested_by: datetime | None = None
) -> dict[str, int]:
    """Fold the bronze event store (what was ingested by `ingested_by`, else all of it)
    into a fresh serving store at `target`; return the facts applied per view.

    Facts are folded in Kafka offset order per partition, so a store
    transaction per chunk moves each view's positions forward only.
    """
    bronze_path = bronze_table(settings)
    if not has_commits(bronze_path):
        raise UserError("there is no bronze table yet: run `retailstream run ingest` first")
    for stale in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
        stale.unlink(missing_ok=True)
    path = ServingPath(spark, settings, open_store(target))
    path.prepare_store()
    bronze = read_table(spark, bronze_path)
    if ingested_by is not None:
        bronze = bronze.where(F.col("ingest_time") <= F.lit(ingested_by).cast("timestamp"))
    first = path.facts(lambda topic: bronze.where(F.col("topic") == topic), first_copies)
    # Every record read moves the positions, a repeat too, as it does on the live path
    # (which reads every record and skips repeats in the store).
    read = seen_facts(bronze.where(F.col("topic").isin(path.topics)))
    ordered = first.unionByName(read).orderBy(
        "topic", "partition", "offset", (F.col("view") == SEEN).alias("_seen_last")
    )
    applied = dict.fromkeys(path.views, 0)
    for chunk in _chunks(ordered.toLocalIterator(), REBUILD_CHUNK):
        for view, count in path.fold(chunk).items():
            applied[view] += count
    return applied


def rebuild_command(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
    """`views rebuild [--into PATH]`: the serving views folded afresh from the event store."""
    live = settings.views.store_path
    target = args.into or Path(f"{live}.rebuilt")
    if target.resolve() == live.resolve():
        raise UserError(f"--into {target} is the live serving store: name another file")
    applied = rebuild(spark, settings, target)
    rebuilt = open_store(target)
    print(f"rebuilt the serving views from the event store into {target}")
    for view, count in applied.items():
        rows = len(rebuilt.rows(view))
        print(f"  {view}: {count:,} facts, {rows:,} rows")
    return 0


def serving_paths(spark: SparkSession, settings: Settings) -> list[ServingPath]:
    """A serving path per store of `views.stores` (fan-out), catalogue and initial stock
    written; they share the reference tables and suites, and each has its own offsets."""
    paths: list[ServingPath] = []
    for kind in settings.views.stores:
        first = paths[0] if paths else None
        path = ServingPath(
            spark,
            settings,
            serving_store(settings, kind),
            first.references if first else None,
            first.known if first else None,
        )
        path.prepare_store()
        paths.append(path)
    return paths


def run(spark: SparkSession, cfg: StreamRun) -> int:
    settings = cfg.settings
    require_broker(settings.kafka.bootstrap)
    paths = serving_paths(spark, settings)
    trigger = cfg.trigger(settings.serving.trigger_interval)
    await_queries(*(path.start(trigger) for path in paths))
    stores = " and ".join(path.kind for path in paths)
    print(f"serving views up to date in {stores}: {', '.join(paths[0].views)}", file=sys.stderr)
    for path in paths:
        if path.kind == "postgres":
            # Where PostgreSQL's writes came from: the tasks' processes (on a cluster,
            # the executors' Python workers), never the driver.
            workers = sorted(path.last_workers)
            hosts = {worker.rsplit(":", 1)[0] for worker in workers}
            print(
                f"serving: postgres slices folded by {len(workers)} task processes on"
                f" {len(hosts)} hosts (driver pid {os.getpid()}): {', '.join(workers) or 'none'}",
                file=sys.stderr,
            )
    return 0


JOB = stream_job(
    "serving",
    __doc__.splitlines()[0],
    "serving_views",
    run,
    "fold what Kafka holds into the serving views",
)
main = JOB.main
