"""Refine: bronze event store -> typed, validated, deduplicated silver tables + quarantine.

Reads: `<lake>/bronze_events` as a stream (one query per topic, each with its
own checkpoint `<lake>/_checkpoints/refine_<table>`), the reference tables of
`world init`, and the expectation suites in `conf/expectations/`.
Writes, per micro-batch and idempotently (a replayed batch writes nothing):
- `<lake>/silver/<table>` for clickstream, orders, ratings, shipments, weather,
  world_events, and `<lake>/silver/order_lines` (one row per order line);
- `<lake>/quarantine`: rows that failed to parse or failed expectations, with
  their bronze coordinates, raw key and value, and the list of reasons;
- `<lake>/quality_metrics`: one row per micro-batch and table: rows in,
  duplicates removed, rows later than the watermark, valid, quarantined by reason.

Deduplication by `event_id` is a streaming `dropDuplicatesWithinWatermark`
(RocksDB state bounded by `refine.watermark_delay`); everything else runs on
each micro-batch as a batch DataFrame.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.delta import (
    StreamTrigger,
    append_once,
    create_if_missing,
    foreach_batch_stream,
    has_commits,
    read_stream,
    read_table,
)
from retailstream.jobs.ingest_events import BRONZE_TABLE
from retailstream.jobs.init_world import reference_table
from retailstream.jobs.launcher import available_now_flag, launch
from retailstream.quality.expectations import KnownValues, known_frames
from retailstream.quality.reference_values import PRODUCT_SKUS, reference_values
from retailstream.quality.suites import Suite, load_suites
from retailstream.quality.verdicts import mark_events, valid_events
from retailstream.schemas import (
    CONTRACTS_BY_TABLE,
    QUARANTINE_SCHEMA,
    EventContract,
    silver_schema,
)
from retailstream.transforms.parse import drop_duplicate_events, parse_events

QUARANTINE_TABLE = "quarantine"
METRICS_TABLE = "quality_metrics"
REFERENCE_TABLES = ("products", "stores", "customers", "distribution_centres", "carriers", "routes")


def silver_table(settings: Settings, table: str) -> Path:
    return settings.lake.table(f"silver/{table}")


def query_name(table: str) -> str:
    return f"refine_{table}"


def load_references(
    spark: SparkSession, settings: Settings, tables: Sequence[str] = REFERENCE_TABLES
) -> dict[str, DataFrame]:
    """The reference `tables` a job checks or joins against (small, static: cached)."""
    missing = [t for t in tables if not has_commits(reference_table(settings, t))]
    if missing:
        raise UserError(
            f"reference tables missing ({', '.join(missing)}): run `retailstream world init` first"
        )
    # Opening a Delta table is mostly fixed latency (its log, its schema): side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        frames = pool.map(lambda t: read_table(spark, reference_table(settings, t)).cache(), tables)
        return dict(zip(tables, frames, strict=True))


def known_values(
    spark: SparkSession, references: Mapping[str, DataFrame], suites: Mapping[str, Suite]
) -> KnownValues:
    """Every reference value set the suites and the line-sku check use, gathered
    once per job: reference tables do not change while the stream runs."""
    values = reference_values(references, suites.values(), extra=[PRODUCT_SKUS])
    return known_frames(spark, values)


def order_lines(orders: DataFrame) -> DataFrame:
    """One row per line of each valid order (pure)."""
    return orders.select(
        "event_id",
        "order_id",
        "event_time",
        "store_id",
        F.posexplode("lines").alias("line_no", "line"),
    ).select(
        "event_id",
        "order_id",
        (F.col("line_no") + 1).cast("int").alias("line_no"),
        F.col("line.sku").alias("sku"),
        F.col("line.quantity").alias("quantity"),
        F.col("line.unit_price").alias("unit_price"),
        "event_time",
        "store_id",
    )


def split_valid(marked: DataFrame, table: str, batch_id: int) -> tuple[DataFrame, DataFrame]:
    """(silver rows, quarantine rows) of a micro-batch marked by `with_reasons` (pure).

    A row is valid when it parsed and met every expectation; otherwise it goes
    to the quarantine with every reason it failed for.
    """
    valid = valid_events(marked, table)
    quarantined = marked.where(F.size("_reasons") > 0).select(
        F.lit(table).alias("table"),
        "topic",
        "partition",
        "offset",
        "kafka_timestamp",
        "key",
        "value",
        "event_id",
        F.col("_reasons").alias("reasons"),
        F.lit(batch_id).cast("long").alias("refine_batch_id"),
    )
    return valid, quarantined


def tally(marked: DataFrame) -> dict[str, object]:
    """Rows, valid, quarantined and quarantined-by-reason of a marked batch, in one job.

    Grouping by the whole reason list keeps the result to a handful of rows
    (one per distinct combination), which the driver sums.
    """
    rows = marked.groupBy("_reasons").count().collect()
    total = sum(int(r["count"]) for r in rows)
    bad = sum(int(r["count"]) for r in rows if r["_reasons"])
    by_reason: dict[str, int] = {}
    for row in rows:
        for reason in row["_reasons"]:
            by_reason[reason] = by_reason.get(reason, 0) + int(row["count"])
    return {"rows": total, "valid": total - bad, "quarantined": bad, "by_reason": by_reason}


class BatchCounts:
    """What each micro-batch's handler counted, for the metrics writer (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_batch: dict[int, dict[str, object]] = {}

    def put(self, batch_id: int, counts: dict[str, object]) -> None:
        with self._lock:
            self._by_batch[batch_id] = counts

    def pop(self, batch_id: int) -> dict[str, object] | None:
        with self._lock:
            return self._by_batch.pop(batch_id, None)


def refine_batch_handler(
    settings: Settings,
    contract: EventContract,
    suite: Suite,
    known: KnownValues,
    counts: BatchCounts,
) -> Callable[[DataFrame, int], None]:
    """The foreachBatch handler of one table: validate, split, write silver and quarantine.

    Built by a factory so that it can be called on a static DataFrame in tests.
    """
    table = contract.table

    def handle(batch: DataFrame, batch_id: int) -> None:
        # A batch with no rows only moves the watermark on (bench_refine found
        # these cost a fifth of a run): nothing to validate or write, once the
        # tables exist (an empty first batch still creates them for readers).
        if (silver_table(settings, table) / "_delta_log").is_dir() and batch.isEmpty():
            counts.put(batch_id, {"rows": 0, "valid": 0, "quarantined": 0, "by_reason": {}})
            return
        batch = batch.persist()
        try:
            marked = mark_events(batch, contract, suite, known).persist()
            valid, quarantined = split_valid(marked, table, batch_id)
            append_once(valid, silver_table(settings, table), query_name(table), batch_id)
            if table == "orders":
                append_once(
                    order_lines(valid),
                    silver_table(settings, "order_lines"),
                    query_name("order_lines"),
                    batch_id,
                )
            append_once(
                quarantined,
                settings.lake.table(QUARANTINE_TABLE),
                f"{query_name(table)}_quarantine",
                batch_id,
            )
            counts.put(batch_id, tally(marked))
            marked.unpersist()
        finally:
            batch.unpersist()

    return handle


def start(
    spark: SparkSession,
    settings: Settings,
    table: str,
    trigger: StreamTrigger,
    known: KnownValues,
    suites: Mapping[str, Suite],
    counts: BatchCounts,
) -> StreamingQuery:
    """Start the refine query of one table; `known` holds the reference values
    (`known_values`)."""
    contract = CONTRACTS_BY_TABLE[table]
    parsed = (
        read_stream(spark, settings.lake.table(BRONZE_TABLE))
        .where(F.col("topic") == contract.topic)
        .transform(lambda bronze: parse_events(bronze, contract))
    )
    deduplicated = drop_duplicate_events(parsed, settings.refine.watermark_delay, ("_dedup_key",))
    handler = refine_batch_handler(settings, contract, suites[table], known, counts)
    return foreach_batch_stream(
        deduplicated,
        handler,
        settings.lake.checkpoint(query_name(table)),
        query_name(table),
        trigger,
    )


def metrics_rows(table: str, progress: Sequence[dict], counts: BatchCounts) -> list[dict]:
    """One metrics row per completed micro-batch that processed data (pure but for `counts.pop`)."""
    rows = []
    for event in progress:
        batch_id = int(event["batchId"])
        counted = counts.pop(batch_id)
        if counted is None:
            continue
        operators = event.get("stateOperators") or [{}]
        rows_in = int(event.get("numInputRows", 0))
        late = int(operators[0].get("numRowsDroppedByWatermark", 0))
        out = int(counted["valid"]) + int(counted["quarantined"])
        rows.append(
            {
                "table": table,
                "batch_id": batch_id,
                "rows_in": rows_in,
                # Derived from exact counts rather than the operator's
                # numDroppedDuplicateRows, which over-counted in our tests.
                "duplicates_removed": rows_in - out - late,
                "late_rows_dropped": late,
                "valid": int(counted["valid"]),
                "quarantined": int(counted["quarantined"]),
                "quarantined_by_reason": counted["by_reason"],
                "recorded_at": datetime.now(UTC),
            }
        )
    return rows


METRICS_DDL = (
    "table string, batch_id long, rows_in long, duplicates_removed long, late_rows_dropped long, "
    "valid long, quarantined long, quarantined_by_reason map<string,long>, recorded_at timestamp"
)


def write_metrics(spark: SparkSession, settings: Settings, rows: list[dict]) -> None:
    """Append metrics rows: one commit per table, idempotent by its newest batch id.

    Delta skips a (txnAppId, txnVersion) at or below the last one written, so a
    drain repeated after a crash writes nothing twice; one commit per drain
    (not per batch) keeps a long-running job from spending its time on them.
    """
    if not rows:
        return
    frame = spark.createDataFrame(rows, METRICS_DDL)
    for table in sorted({r["table"] for r in rows}):
        newest = max(r["batch_id"] for r in rows if r["table"] == table)
        one = frame.where(F.col("table") == table)
        append_once(one, settings.lake.table(METRICS_TABLE), f"metrics_{table}", newest)


class RefineRun:
    """The refine queries of one job: the suites and reference values they share,
    and the per-batch counts the metrics writer drains."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        references: Mapping[str, DataFrame] | None = None,
    ) -> None:
        """`references`: the loaded reference tables, when the caller has them already."""
        self.spark = spark
        self.settings = settings
        self.suites = load_suites(settings.refine.expectations_dir)
        if references is None:
            references = load_references(spark, settings)
        self.known = known_values(spark, references, self.suites)
        self.counts = {table: BatchCounts() for table in settings.refine.tables}
        # Every table's query appends to the one quarantine: create it before they race to.
        create_if_missing(spark, settings.lake.table(QUARANTINE_TABLE), QUARANTINE_SCHEMA)

    def create_silver_tables(self) -> None:
        """Create each silver table (empty) that is not there yet.

        Lets the queries that read silver start at once instead of waiting for
        each table's first refine batch.
        """
        wanted = {
            silver_table(self.settings, table): silver_schema(table)
            for table in self.settings.refine.tables
        }
        if "orders" in self.settings.refine.tables:
            empty = self.spark.createDataFrame([], silver_schema("orders"))
            wanted[silver_table(self.settings, "order_lines")] = order_lines(empty).schema
        # Each creation is a small Delta commit, mostly fixed latency: side by side.
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda item: create_if_missing(self.spark, *item), wanted.items()))

    def start(self, table: str, trigger: StreamTrigger) -> StreamingQuery:
        return start(
            self.spark, self.settings, table, trigger, self.known, self.suites, self.counts[table]
        )

    def drain(self, table: str, query: StreamingQuery) -> int:
        """Write the metrics rows of the batches `query` completed; return how many."""
        rows = metrics_rows(table, query.recentProgress, self.counts[table])
        write_metrics(self.spark, self.settings, rows)
        return len(rows)


def run_queries(spark: SparkSession, settings: Settings, trigger: StreamTrigger) -> dict[str, int]:
    """Run the refine query of every configured table until they end; return batches per table.

    Available-now runs them one after the other (each drains bronze and
    stops); continuous runs start them all and wait.
    """
    refine = RefineRun(spark, settings)
    batches: dict[str, int] = {}

    def drain(table: str, query: StreamingQuery) -> None:
        batches[table] = batches.get(table, 0) + refine.drain(table, query)

    queries = {}
    for table in settings.refine.tables:
        query = refine.start(table, trigger)
        if trigger.available_now:
            query.awaitTermination()
            drain(table, query)
        else:
            queries[table] = query
    while queries:
        for table, query in list(queries.items()):
            if query.awaitTermination(5):
                queries.pop(table)
            drain(table, query)
    return batches


def run(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
    if not (settings.lake.table(BRONZE_TABLE) / "_delta_log").is_dir():
        raise UserError("there is no bronze table yet: run `retailstream run ingest` first")
    batches = run_queries(
        spark, settings, StreamTrigger(args.available_now, settings.refine.trigger_interval)
    )
    summary = ", ".join(f"{t} {n}" for t, n in batches.items())
    print(f"refined micro-batches: {summary}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return launch(
        __doc__.splitlines()[0],
        run,
        argv,
        available_now_flag("refine what bronze holds"),
        prog="refine_events",
    )
