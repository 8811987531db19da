"""A gold micro-batch's cost against the size of the history behind it.

The gold query (`jobs.build_views`) folds each micro-batch of silver rows into
the gold Delta views by MERGE, and re-ranks trending_items from the per-minute
activity of the trending window. What could grow with history is the MERGE's
read of the stored rows: sales_by_region gains a row per store and minute of
history, and every table gains files with every commit. This benchmark folds
synthetic silver histories of 10^4 ... 10^7 events through the gold query's
own batch handler into one lake (growing it step by step) and, at each size,
times fresh batches of the same shape, against the baseline of the same
batches folded into gold views that hold no history, in the same run.

Synthetic events follow the generated world's mix (a tenth ratings, a fifth
orders of 1-3 lines, a tenth add-to-cart clicks, a tenth shipments delivered),
ten milliseconds of event time apart, over the small world's products and
stores. No broker and no silver tables: the handler gets the rows as a
streaming batch would hand them over.

    .venv/bin/python bench/bench_gold_history.py [--quick] [--repetitions N]

Full: histories 10^4, 10^5, 10^6, 10^7 events (folded in batches of up to 10^6),
timed batches of 2,000 events, 5 repetitions after a warm-up. `--quick`: the
baseline only, one batch, no warm-up.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from statistics import median

from delta.tables import DeltaTable
from harness import (
    Column,
    bench_settings,
    history_row,
    history_table,
    parse_args,
    publish_history,
)
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.io import datasets
from retailstream.jobs import build_views, init_world
from retailstream.session import build_spark

START = datetime(2026, 6, 1)
SPACING_MS = 10
HISTORY_CHUNK = 1_000_000  # events per history batch
BATCH_EVENTS = 2_000
SEED, SCALE = 7, "small"


def _pick(values: list[str], salt: str) -> F.Column:
    """One of `values`, spread by a hash of the event number."""
    options = F.array(*(F.lit(v) for v in values))
    return F.element_at(
        options, (F.pmod(F.xxhash64("id", F.lit(salt)), len(values)) + 1).cast("int")
    )


def silver_batch(
    spark: SparkSession, first: int, count: int, skus: list[str], stores: list[str]
) -> DataFrame:
    """Events first .. first+count-1 as the gold query's packed batch of silver rows."""
    events = spark.range(first, first + count).select(
        "id",
        (F.lit(START) + F.make_dt_interval(secs=F.col("id") * SPACING_MS / 1000)).alias(
            "event_time"
        ),
        (F.col("id") % 10).alias("kind"),
        F.lit(0).alias("partition"),
        F.col("id").alias("offset"),
    )
    lines = F.transform(
        F.sequence(F.lit(0), (F.col("id") % 3).cast("int")),
        lambda i: F.struct(
            _pick(skus, "line").alias("sku"), (F.lit(1) + i).cast("int").alias("quantity")
        ),
    )
    ratings = events.where("kind = 0").select(
        F.lit("shop.ratings").alias("topic"), "partition", "offset", _pick(skus, "r").alias("sku"),
        "event_time", F.hex("id").alias("event_id"),
        F.format_string("C-%07d", F.col("id") % 2000).alias("customer_id"),
        (F.lit(1) + F.col("id") % 5).cast("int").alias("stars"),
    )  # fmt: skip
    orders = events.where("kind IN (1, 2)").select(
        F.lit("shop.orders").alias("topic"), "partition", "offset", "event_time",
        _pick(stores, "o").alias("store_id"), lines.alias("lines"),
        F.lit(19.99).alias("total"), F.lit(1.0).alias("event_lag_seconds"),
    )  # fmt: skip
    clicks = events.where("kind = 3").select(
        F.lit("shop.clickstream").alias("topic"), "partition", "offset", "event_time",
        F.lit("add_to_cart").alias("action"), _pick(skus, "c").alias("sku"),
    )  # fmt: skip
    shipments = events.where("kind = 9").select(
        F.lit("logistics.shipments").alias("topic"), "partition", "offset", "event_time",
        F.lit("delivered").alias("status"), _pick(stores, "s").alias("destination_store_id"),
        lines.alias("lines"),
    )  # fmt: skip
    return build_views.packed(
        {"ratings": ratings, "orders": orders, "clickstream": clicks, "shipments": shipments}
    )


class GoldLake:
    """A lake whose gold views the handler folds synthetic batches into, batch id by id."""

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        self.spark, self.settings = spark, settings
        references = build_views.gold_references(spark, settings)
        products = references["products"].select("sku").collect()
        self.skus = sorted(r["sku"] for r in products)
        self.stores = sorted(
            r["store_id"]
            for r in references["initial_stock"].select("store_id").distinct().collect()
        )
        self.handler = build_views.GoldBatch(
            settings, build_views.chosen_views(settings), references, lambda: "bench"
        )
        self.batch_id = 0
        self.events = 0

    def fold(self, count: int) -> float:
        """Fold the next `count` events as one batch; return the seconds it took."""
        batch = silver_batch(self.spark, self.events, count, self.skus, self.stores).persist()
        batch.count()  # the rows exist before the clock starts, as a stream's batch's do
        started = time.perf_counter()
        self.handler(batch, self.batch_id)
        seconds = time.perf_counter() - started
        batch.unpersist()
        self.batch_id += 1
        self.events += count
        return seconds

    def grow_to(self, events: int) -> None:
        while self.events < events:
            self.fold(min(HISTORY_CHUNK, events - self.events))

    def timed(self, repetitions: int) -> list[float]:
        return [self.fold(BATCH_EVENTS) for _ in range(repetitions)]

    def shape(self) -> dict[str, int]:
        sales = datasets.gold_table(self.settings, "sales_by_region")
        detail = DeltaTable.forPath(self.spark, str(sales)).detail().first()
        assert detail is not None
        return {
            "sales_rows": self.spark.read.format("delta").load(str(sales)).count(),
            "sales_files": int(detail["numFiles"]),
        }


def main() -> int:
    args = parse_args(__doc__)
    # A smoke run measures the baseline only: each gold batch costs seconds.
    sizes = () if args.quick else (10_000, 100_000, 1_000_000, 10_000_000)
    repetitions = args.repetitions or (1 if args.quick else 5)
    began = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-gold-") as tmp_name:
        tmp = Path(tmp_name)
        # No broker: the handler is given its batches directly.
        empty_settings = bench_settings(tmp / "empty", "127.0.0.1:9")
        spark = build_spark(empty_settings)
        try:
            init_world.write_world(spark, empty_settings, SEED, SCALE)
            empty = GoldLake(spark, empty_settings)
            empty.fold(1)  # batch 0 writes the views whole: from here on, batches MERGE
            if not args.quick:
                empty.timed(1)  # warm-up (plans, JIT), not counted
            empty_times = empty.timed(repetitions)
            baseline = median(empty_times)
            rows.append(
                history_row("no history (baseline)", 0, empty_times, baseline, **empty.shape())
            )
            history_settings = bench_settings(tmp / "history", "127.0.0.1:9")
            if sizes:
                init_world.write_world(spark, history_settings, SEED, SCALE)
            lake = GoldLake(spark, history_settings) if sizes else empty
            for size in sizes:
                lake.grow_to(size)
                print(
                    f"history of {size:,} events folded after {time.perf_counter() - began:.0f} s"
                )
                times = lake.timed(repetitions)
                rows.append(history_row(f"{size:,} events", size, times, baseline, **lake.shape()))
                print(f"  batch of {BATCH_EVENTS:,} events: median {median(times) * 1000:.0f} ms")
        finally:
            spark.stop()
    table = history_table(
        f"Folding one gold micro-batch ({BATCH_EVENTS:,} events) into the four gold views, "
        f"against the history already folded ({repetitions} batches each)",
        rows,
        ",.0f",
        "vs no history",
        [Column("sales_rows", "sales rows"), Column("sales_files", "sales files")],
    )
    largest = rows[-1]
    notes = [
        f"With {largest['events']:,} events behind it a gold batch took a median "
        f"{largest['median_ms']:,.0f} ms, {largest['vs_empty']:.2f}× the same batches into views "
        f"without history ({baseline * 1000:,.0f} ms).",
        "",
    ]
    publish_history(
        "gold_history",
        "Gold micro-batch cost against history (`bench/bench_gold_history.py`)",
        __doc__,
        table,
        sizes,
        BATCH_EVENTS,
        repetitions,
        args.quick,
        notes,
        began,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
