"""Explain a value the views serve: the events that produced it, in order, with their
event-store coordinates and the running value after each.

- `explain item SKU`: the ratings behind the item's document, with the running count
  and average ("how did this item's rating get so low?");
- `explain store STORE [--sku SKU]`: the sales and deliveries behind the store's stock,
  with the running on-hand quantity per sku from the initial stock;
- `explain customer ID`: the ratings the customer gave, in order, and the
  recommendations served to them with the model version that made them.

The facts are the ones the views are computed from (silver, deduplicated and
validated), so the last running value is what a rebuilt view says; each line
names the Kafka record it came from, which the event store holds byte for byte.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal, get_args

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.window import WindowSpec

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.datasets import gold_table, reference_table, silver_table
from retailstream.io.delta import has_commits, read_table
from retailstream.jobs.spec import Job
from retailstream.views.definitions import COORDINATES, rating_facts, stock_movement_facts


@dataclass(frozen=True)
class Explanation:
    subject: str
    events: pd.DataFrame  # in order, with the running value
    served: dict  # what the view holds now (empty when it has nothing)

    def agrees(self, running: str, served: str) -> bool | None:
        """Whether the last running value equals the served one (None: nothing to compare)."""
        if self.events.empty or served not in self.served:
            return None
        return bool(abs(float(self.events[running].iloc[-1]) - float(self.served[served])) < 1e-6)


def _silver(spark: SparkSession, settings: Settings, *tables: str) -> dict[str, DataFrame]:
    found = {}
    for table in tables:
        path = silver_table(settings, table)
        if not has_commits(path):
            raise UserError(f"no silver {table} table in {settings.lake.root}: run refine first")
        found[table] = read_table(spark, path)
    return found


def _gold_row(spark: SparkSession, settings: Settings, view: str, condition: str) -> dict:
    path = gold_table(settings, view)
    if not has_commits(path):
        return {}
    row = read_table(spark, path).where(condition).limit(1).collect()
    return row[0].asDict(recursive=True) if row else {}


def _in_order(*partition: str) -> WindowSpec:
    return (
        Window.partitionBy(*partition)
        .orderBy("event_time", *COORDINATES)
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )


def item(spark: SparkSession, settings: Settings, sku: str) -> Explanation:
    facts = rating_facts(_silver(spark, settings, "ratings")).where(F.col("sku") == sku)
    window = _in_order("sku")
    events = (
        facts.select(
            "event_time",
            "customer_id",
            "stars",
            *COORDINATES,
            F.count("*").over(window).alias("running_count"),
            F.round(F.avg("stars").over(window), 4).alias("running_average"),
        )  # fmt: skip
        .orderBy("event_time", *COORDINATES)
        .toPandas()
    )
    served = _gold_row(spark, settings, "item_ratings", f"sku = '{_quoted(sku)}'")
    if events.empty and not served:
        raise UserError(f"no ratings and no item document for sku {sku!r}")
    served = {k: served[k] for k in ("ratings_count", "average_stars") if k in served}
    return Explanation(f"item {sku}", events, served)


def store(spark: SparkSession, settings: Settings, store_id: str, sku: str | None) -> Explanation:
    facts = stock_movement_facts(_silver(spark, settings, "orders", "shipments")).where(
        F.col("store_id") == store_id
    )
    initial = read_table(spark, reference_table(settings, "initial_stock")).where(
        F.col("store_id") == store_id
    )
    if sku is not None:
        facts, initial = facts.where(F.col("sku") == sku), initial.where(F.col("sku") == sku)
    if not initial.limit(1).count() and not facts.limit(1).count():
        raise UserError(f"store {store_id!r} holds no stock" + (f" of {sku!r}" if sku else ""))
    window = _in_order("sku")
    change = F.sum(F.col("delivered") - F.col("sold")).over(window)
    events = (
        facts.join(initial.select("sku", F.col("on_hand").alias("initial")), "sku", "left")
        .select(
            "event_time",
            "sku",
            "delivered",
            "sold",
            *COORDINATES,
            (F.coalesce("initial", F.lit(0)) + change).alias("running_on_hand"),
        )  # fmt: skip
        .orderBy("event_time", *COORDINATES, "sku")
        .toPandas()
    )
    served = {}
    if sku is not None:
        row = _gold_row(spark, settings, "inventory_positions",
                        f"store_id = '{_quoted(store_id)}' AND sku = '{_quoted(sku)}'")  # fmt: skip
        served = {k: row[k] for k in ("initial", "delivered", "sold", "on_hand") if k in row}
    return Explanation(f"store {store_id}" + (f", sku {sku}" if sku else ""), events, served)


def customer(spark: SparkSession, settings: Settings, customer_id: str) -> Explanation:
    facts = rating_facts(_silver(spark, settings, "ratings")).where(
        F.col("customer_id") == customer_id
    )
    events = (
        facts.select(
            "event_time",
            "sku",
            "stars",
            *COORDINATES,
            F.count("*").over(_in_order("customer_id")).alias("ratings_so_far"),
        )  # fmt: skip
        .orderBy("event_time", *COORDINATES)
        .toPandas()
    )
    path = gold_table(settings, "recommendations")
    served: dict = {}
    if has_commits(path):
        rows = (
            read_table(spark, path)
            .where(F.col("customer_id") == customer_id)
            .orderBy("rank")
            .collect()
        )
        if rows:
            served = {
                "model_version": rows[0]["model_version"],
                "recommended": [r["sku"] for r in rows],
            }
    if events.empty and not served:
        raise UserError(f"customer {customer_id!r} has no ratings and no recommendations")
    return Explanation(f"customer {customer_id}", events, served)


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def render(explanation: Explanation, limit: int) -> str:
    events = explanation.events
    shown = events.tail(limit)
    lines = [f"{explanation.subject}: {len(events):,} events"]
    if len(events) > limit:
        lines.append(f"(the first {len(events) - limit:,} not shown; raise --limit)")
    lines.append(shown.to_string(index=False) if not shown.empty else "(no events)")
    if explanation.served:
        lines.append("served now: " + ", ".join(f"{k} {v}" for k, v in explanation.served.items()))
    return "\n".join(lines)


Subject = Literal["item", "store", "customer"]


@dataclass(frozen=True)
class ExplainRun:
    """What `explain` runs with: the settings, what to explain (an item, a store or a
    customer) and its id, with `store` optionally one sku only, and how many of the
    last events to print."""

    settings: Settings
    subject: Subject
    id: str  # the sku, store id or customer id
    sku: str | None = None
    limit: int = 50


def run(spark: SparkSession, cfg: ExplainRun) -> int:
    settings = cfg.settings
    if cfg.subject == "item":
        found = item(spark, settings, cfg.id)
        agrees = found.agrees("running_average", "average_stars")
    elif cfg.subject == "store":
        found = store(spark, settings, cfg.id, cfg.sku)
        agrees = found.agrees("running_on_hand", "on_hand")
    else:
        found, agrees = customer(spark, settings, cfg.id), None
    print(render(found, cfg.limit))
    if agrees is False:
        print("the view differs from its events: it is behind the stream, or needs "
              "`retailstream views rebuild`")  # fmt: skip
    return 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", choices=list(get_args(Subject)), help="what to explain")
    parser.add_argument("id", help="the sku, store id or customer id")
    parser.add_argument("--sku", help="with `store`: one sku only")
    parser.add_argument("--limit", type=int, default=50, help="the last N events to print")


def configure(settings: Settings, args: argparse.Namespace) -> ExplainRun:
    return ExplainRun(settings, subject=args.subject, id=args.id, sku=args.sku, limit=args.limit)


JOB = Job(
    "explain",
    "the events behind an item's rating, a store's stock or a customer's "
    "recommendations, in order, with the running value",
    "command", "explain_views", configure, run, add_flags,
)  # fmt: skip
main = JOB.main
