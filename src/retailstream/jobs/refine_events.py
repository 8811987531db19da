"""Refine: bronze event store -> typed, validated, deduplicated silver tables + quarantine.

Reads: `<lake>/bronze_events` as a stream (one query for every topic,
checkpoint `<lake>/_checkpoints/refine_events`), the reference tables of
`world init`, and the expectation suites in `conf/expectations/`.
Writes, per micro-batch and idempotently (a replayed batch writes nothing):
- `<lake>/silver/<table>` for clickstream, orders, ratings, shipments, weather,
  world_events, and `<lake>/silver/order_lines` (one row per order line);
- `<lake>/quarantine`: rows that failed to parse or failed expectations, with
  their bronze coordinates, raw key and value, and the list of reasons;
- `<lake>/quality_metrics`: one row per micro-batch and table: rows in,
  duplicates removed, rows later than the watermark, valid, quarantined by reason.

Deduplication by `event_id` is a streaming `dropDuplicatesWithinWatermark`
per topic (RocksDB state bounded by `refine.watermark_delay`). Parsing and the
expectations run in the streaming plan too, built once when the query starts
(`refined_records`); each micro-batch is then persisted once and split by table
for the writes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pyspark import inheritable_thread_target
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.health.progress import QUARANTINED, ROWS, Tally, publish_tally
from retailstream.io import datasets
from retailstream.io.datasets import (
    bronze_table,
    checkpoints,
    load_references,
    quality_metrics_table,
    quarantine_table,
    require_table,
    silver_table,
)
from retailstream.io.delta import (
    StreamTrigger,
    append_once,
    create_if_missing,
    foreach_batch_stream,
    read_stream,
)
from retailstream.jobs.interrupts import await_queries
from retailstream.jobs.spec import StreamRun, stream_job
from retailstream.quality.expectations import KnownValues
from retailstream.quality.reference_values import known_values
from retailstream.quality.suites import Suite, load_suites
from retailstream.quality.verdicts import REASONS, mark_events
from retailstream.schemas import (
    CONTRACTS_BY_TABLE,
    QUARANTINE_SCHEMA,
    silver_schema,
)
from retailstream.session import built_side_by_side, sql_conf
from retailstream.transforms.parse import (
    dedup_key,
    drop_duplicate_events,
    event_id_text,
    parse_events,
)

QUERY_NAME = datasets.REFINE_QUERY
# How often `run refine` writes the metrics of the batches its query completed.
METRICS_EVERY_S = 5.0


def query_name(table: str) -> str:
    """The transaction id of a table's appends (idempotent per micro-batch)."""
    return f"{QUERY_NAME}_{table}"


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


# The column naming each refined row's table, and the bronze columns a quarantine row keeps.
TABLE_COLUMN = "_table"
QUARANTINE_COLUMNS = ("topic", "partition", "offset", "kafka_timestamp", "key", "value")


def quarantine_rows(refined: DataFrame, batch_id: int) -> DataFrame:
    """The rows of a refined batch (`refined_records`) that failed to parse or failed
    an expectation, as quarantine rows with every reason they failed for (pure)."""
    return refined.where(F.size(REASONS) > 0).select(
        F.col(TABLE_COLUMN).alias("table"),
        *QUARANTINE_COLUMNS,
        "event_id",
        F.col(REASONS).alias("reasons"),
        F.lit(batch_id).cast("long").alias("refine_batch_id"),
    )


def silver_rows(refined: DataFrame, table: str) -> DataFrame:
    """The rows of `table` in a refined batch that passed everything, as silver rows (pure)."""
    valid = (F.col(TABLE_COLUMN) == table) & (F.size(REASONS) == 0)
    return refined.where(valid).select(f"{table}.*")


def tally(refined: DataFrame) -> dict[str, dict[str, object]]:
    """Per table of a refined batch: rows, valid, quarantined and quarantined by
    reason, in one job.

    Grouping by the whole reason list keeps the result to a handful of rows per
    table (one per distinct combination), which the driver sums.
    """
    rows = refined.groupBy(TABLE_COLUMN, REASONS).count().collect()
    tables: dict[str, dict[str, Any]] = {}
    for row in rows:
        mine = tables.setdefault(
            row[TABLE_COLUMN], {"rows": 0, "valid": 0, "quarantined": 0, "by_reason": {}}
        )
        count = int(row["count"])
        mine["rows"] += count
        if row[REASONS]:
            mine["quarantined"] += count
            for reason in row[REASONS]:
                mine["by_reason"][reason] = mine["by_reason"].get(reason, 0) + count
        else:
            mine["valid"] += count
    return tables


class BatchCounts:
    """What each micro-batch's handler counted per table, for the metrics writer
    (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_batch: dict[int, dict[str, dict[str, object]]] = {}
        self._totals: Tally = {}

    def put(self, batch_id: int, counts: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            # A batch put again before the metrics writer took its counts counts once.
            if batch_id not in self._by_batch:
                for table, mine in counts.items():
                    total = self._totals.setdefault(table, {ROWS: 0, QUARANTINED: 0})
                    total[ROWS] += int(mine["rows"])
                    total[QUARANTINED] += int(mine["quarantined"])
                    for reason, count in mine["by_reason"].items():
                        total[reason] = total.get(reason, 0) + int(count)
            self._by_batch[batch_id] = counts

    def totals(self) -> Tally:
        """Rows and quarantined rows per table (and per reason) since the job started."""
        with self._lock:
            return {table: dict(counts) for table, counts in self._totals.items()}

    def pop(self, batch_id: int) -> dict[str, dict[str, object]] | None:
        with self._lock:
            return self._by_batch.pop(batch_id, None)


def rows_in_metric(table: str) -> str:
    """The observed metric counting a table's bronze rows before deduplication."""
    return f"refine_rows_in_{table}"


def refined_records(
    bronze: DataFrame,
    tables: Sequence[str],
    delay: str,
    suites: Mapping[str, Suite],
    known: KnownValues,
) -> DataFrame:
    """Bronze records of `tables`, each event once, parsed and checked (pure; of a
    stream: deduplication within a watermark runs on streams only).

    A branch per table, in `tables` order: its topic's records, counted
    (`rows_in_metric`), deduplicated by event id (read without parsing the rest
    of the value) within `delay` of Kafka time, parsed once and marked with
    their reasons. A branch per topic keeps its own deduplication state and its
    own count of rows dropped as late (a state operator each, in this order, in
    the query's progress). The branches are united in one shape: the table's
    name (`TABLE_COLUMN`), the bronze coordinates, key and value, the event id,
    the reasons, and the silver row in a struct column named after its table
    (null in the other tables' rows).

    Built once per query, not once per micro-batch: a table's plan of parsing
    and checks is thousands of expressions, and building and analysing six of
    them took seconds of driver time in every batch, however small.
    """

    def branch(table: str) -> DataFrame:
        contract = CONTRACTS_BY_TABLE[table]
        records = bronze.where(F.col("topic") == contract.topic)
        counted = records.observe(rows_in_metric(table), F.count(F.lit(1)).alias("rows"))
        keyed = counted.select(
            "*",
            dedup_key(event_id_text(F.col("value"))).alias("_dedup_key"),
            F.col("kafka_timestamp").alias("_wm_time"),
        )
        deduplicated = drop_duplicate_events(keyed, delay, ("_dedup_key",))
        marked = mark_events(parse_events(deduplicated, contract), contract, suites[table], known)
        silver = [F.col(f.name) for f in silver_schema(table).fields]
        return marked.select(
            F.lit(table).alias(TABLE_COLUMN),
            *QUARANTINE_COLUMNS,
            F.col("event_id").cast("string").alias("event_id"),
            REASONS,
            F.struct(*silver).alias(table),
        )

    branches = built_side_by_side(branch, tables)
    return functools.reduce(
        lambda left, right: left.unionByName(right, allowMissingColumns=True), branches
    )


def refine_batch_handler(
    settings: Settings, tables: Sequence[str], counts: BatchCounts
) -> Callable[[DataFrame, int], None]:
    """The foreachBatch handler of `refined_records`: count the batch per table and
    reason, write silver per table and the quarantine once.

    Built by a factory so that it can be called on a static DataFrame in tests.
    The tables' writes run side by side (each mostly waits on its own Delta
    commit); their jobs run in the caller's scheduler pool.
    """

    def handle(batch: DataFrame, batch_id: int) -> None:
        # Persisted first and counted: that one job runs the stream's read,
        # deduplication, parsing and checks once; every write reads the cached rows.
        # The union has a partition per table and state partition; merged back to
        # the session's shuffle partitions, each write runs that many tasks, not
        # six times as many that mostly find other tables' rows.
        # A batch with no rows only moves the watermark on: nothing to write.
        partitions = int(batch.sparkSession.conf.get("spark.sql.shuffle.partitions") or 1)
        batch = batch.coalesce(partitions).persist()
        try:
            counted = tally(batch)
            chosen = [t for t in tables if t in counted]
            if not chosen:
                counts.put(batch_id, {})
                return

            def write(table: str) -> None:
                valid = silver_rows(batch, table)
                append_once(valid, silver_table(settings, table), query_name(table), batch_id)
                if table == "orders":
                    append_once(
                        order_lines(valid),
                        silver_table(settings, "order_lines"),
                        query_name("order_lines"),
                        batch_id,
                    )

            with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
                inherit = inheritable_thread_target(batch.sparkSession)
                list(pool.map(inherit(write), chosen))
            append_once(
                quarantine_rows(batch, batch_id),
                quarantine_table(settings),
                f"{QUERY_NAME}_quarantine",
                batch_id,
            )
            counts.put(batch_id, counted)
        finally:
            batch.unpersist()

    return handle


def start(
    spark: SparkSession,
    settings: Settings,
    trigger: StreamTrigger,
    known: KnownValues,
    suites: Mapping[str, Suite],
    counts: BatchCounts,
) -> StreamingQuery:
    """Start the refine query of every configured table; `known` holds the reference
    values (`known_values`)."""
    tables = settings.refine.tables
    records = refined_records(
        read_stream(spark, bronze_table(settings)),
        tables,
        settings.refine.watermark_delay,
        suites,
        known,
    )
    handler = refine_batch_handler(settings, tables, counts)
    # Late is judged against the newest Kafka time of any topic (all arrive through
    # the same brokers), so a quiet topic cannot hold every topic's state back.
    with sql_conf(spark, {"spark.sql.streaming.multipleWatermarkPolicy": "max"}):
        return foreach_batch_stream(
            records, handler, datasets.checkpoint(settings, QUERY_NAME), QUERY_NAME, trigger
        )


def metrics_rows(
    tables: Sequence[str], progress: Sequence[dict], counts: BatchCounts
) -> list[dict]:
    """Per completed micro-batch, a metrics row for each table it read rows of
    (pure but for `counts.pop`)."""
    rows = []
    for event in progress:
        batch_id = int(event["batchId"])
        counted = counts.pop(batch_id)
        if counted is None:
            continue
        observed = event.get("observedMetrics") or {}
        operators = event.get("stateOperators") or []
        for index, table in enumerate(tables):
            metric = observed.get(rows_in_metric(table))  # a Row, when observed
            rows_in = int(metric["rows"]) if metric is not None else 0
            late = int(operators[index].get("numRowsDroppedByWatermark", 0)) if operators else 0
            if rows_in == 0 and late == 0:
                continue
            mine: dict[str, Any] = counted.get(
                table, {"valid": 0, "quarantined": 0, "by_reason": {}}
            )
            out = int(mine["valid"]) + int(mine["quarantined"])
            rows.append(
                {
                    "table": table,
                    "batch_id": batch_id,
                    "rows_in": rows_in,
                    # Derived from exact counts rather than the operator's
                    # numDroppedDuplicateRows, which over-counted in our tests.
                    "duplicates_removed": rows_in - out - late,
                    "late_rows_dropped": late,
                    "valid": int(mine["valid"]),
                    "quarantined": int(mine["quarantined"]),
                    "quarantined_by_reason": mine["by_reason"],
                    "recorded_at": datetime.now(UTC),
                }
            )
    return rows


METRICS_DDL = (
    "table string, batch_id long, rows_in long, duplicates_removed long, late_rows_dropped long, "
    "valid long, quarantined long, quarantined_by_reason map<string,long>, recorded_at timestamp"
)


def write_metrics(spark: SparkSession, settings: Settings, rows: list[dict]) -> None:
    """Append metrics rows: one commit per drain, idempotent by its newest batch id.

    Delta skips a (txnAppId, txnVersion) at or below the last one written, so a
    drain repeated after a crash writes nothing twice; one commit per drain
    (not per batch) keeps a long-running job from spending its time on them.
    """
    if not rows:
        return
    frame = spark.createDataFrame(rows, METRICS_DDL)
    newest = max(r["batch_id"] for r in rows)
    append_once(frame, quality_metrics_table(settings), f"{QUERY_NAME}_metrics", newest)


def require_one_query_layout(settings: Settings) -> None:
    """Refuse a lake refined by the per-table queries of earlier versions: the one
    query would read bronze again from the start next to their silver rows."""
    old = sorted(
        p.name
        for p in checkpoints(settings).glob("refine_*")
        if p.name != QUERY_NAME and p.is_dir()
    )
    if old:
        raise UserError(
            f"this lake was refined by an earlier version's per-table queries ({', '.join(old)}):"
            " delete its silver, quarantine and quality_metrics tables and those checkpoints,"
            " then refine again"
        )


class RefineRun:
    """The refine query of one job: the suites and reference values it uses, and the
    per-batch counts the metrics writer drains."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        references: Mapping[str, DataFrame] | Mapping[str, pd.DataFrame] | None = None,
    ) -> None:
        """`references`: the reference tables (loaded, or a generated world's), when the
        caller has them already."""
        require_one_query_layout(settings)
        self.spark = spark
        self.settings = settings
        self.suites = load_suites(settings.refine.expectations_dir)
        if references is None:
            references = load_references(spark, settings)
        self.known = known_values(spark, references, self.suites)
        self.counts = BatchCounts()
        publish_tally(QUERY_NAME, self.counts.totals)  # the quarantine rate health reports

    def create_silver_tables(self) -> None:
        """Create each silver table and the quarantine (empty) that is not there yet:
        before `start`.

        Readers (the gold views, SQL) find every table from the start, also those
        of topics that have had no events yet.
        """
        wanted = {
            silver_table(self.settings, table): silver_schema(table)
            for table in self.settings.refine.tables
        }
        wanted[quarantine_table(self.settings)] = QUARANTINE_SCHEMA
        if "orders" in self.settings.refine.tables:
            empty = self.spark.createDataFrame([], silver_schema("orders"))
            wanted[silver_table(self.settings, "order_lines")] = order_lines(empty).schema
        # Each creation is a small Delta commit, mostly fixed latency: side by side.
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda item: create_if_missing(self.spark, *item), wanted.items()))

    def start(self, trigger: StreamTrigger) -> StreamingQuery:
        return start(self.spark, self.settings, trigger, self.known, self.suites, self.counts)

    def drain(self, query: StreamingQuery) -> int:
        """Write the metrics rows of the batches `query` completed; return how many."""
        rows = metrics_rows(self.settings.refine.tables, query.recentProgress, self.counts)
        write_metrics(self.spark, self.settings, rows)
        return len(rows)


def run_query(spark: SparkSession, settings: Settings, trigger: StreamTrigger) -> int:
    """Run the refine query until it ends; return the metrics rows written."""
    refine = RefineRun(spark, settings)
    refine.create_silver_tables()
    query = refine.start(trigger)
    written: list[int] = []
    try:
        await_queries(
            query, tick=lambda: written.append(refine.drain(query)), tick_every_s=METRICS_EVERY_S
        )
    except KeyboardInterrupt:
        refine.drain(query)  # the metrics of the batches the stopped query completed
        raise
    written.append(refine.drain(query))
    if query.exception() is not None:
        raise UserError(f"refine failed: {str(query.exception()).splitlines()[0]}")
    return sum(written)


def run(spark: SparkSession, cfg: StreamRun) -> int:
    settings = cfg.settings
    require_table(
        bronze_table(settings), "there is no bronze table yet: run `retailstream run ingest` first"
    )
    written = run_query(spark, settings, cfg.trigger(settings.refine.trigger_interval))
    print(f"refined {', '.join(settings.refine.tables)}: {written} table micro-batches")
    return 0


JOB = stream_job(
    "refine", __doc__.splitlines()[0], "refine_events", run, "refine what bronze holds"
)
main = JOB.main
