"""Score live shipments: the disruption champion on each departure, alerts with rerouting.

Reads (as a stream): `silver/shipments_enriched`; as tables: `silver/shipments`
(the lines of each shipment), `gold/inventory_positions` (who holds what),
stores and routes.
Writes, per micro-batch: the departures whose P(late) reaches
`ml.disruption.alert_threshold` to `<lake>/gold/disruption_alerts` (Delta,
once per batch id) and the serving store (`GET /v1/alerts/disruptions`), each
with its probability, the model version, the main reasons, the affected store
and skus and where else each sku could come from.

The model is the registry's `champion` of `ml.disruption_model`. Each batch
asks the registry which version that is (one small query) and loads a new one
when the alias has moved: promoting or rolling back takes effect without
restarting the query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io import datasets
from retailstream.io.datasets import gold_table, load_references, silver_table
from retailstream.io.delta import (
    StreamTrigger,
    append_once,
    foreach_batch_stream,
    has_commits,
    read_stream,
    read_table,
)
from retailstream.jobs.interrupts import await_queries
from retailstream.jobs.spec import StreamRun, stream_job
from retailstream.ml import disruption as dis
from retailstream.ml import registry
from retailstream.ml.rerouting import alerted_lines, suggestions
from retailstream.views.store import ServingStore, open_store

QUERY_NAME = datasets.SCORE_QUERY


ALERT_SCHEMA = (
    "shipment_id string, probability double, model_version string, departed_at timestamp, "
    "eta timestamp, origin_dc_id string, destination_store_id string, carrier_id string, "
    "reasons array<string>, skus array<struct<sku:string, quantity:int, source_kind:string, "
    "source_id:string, distance_km:double, lead_time_hours:double>>, summary string"
)


class Champion:
    """The registry's current champion model, reloaded when the alias moves."""

    def __init__(self, settings: Settings) -> None:
        self.name = settings.ml.disruption_model
        self.tracking = registry.client(settings.ml)
        self.version: str | None = None
        self.model: PipelineModel | None = None

    def current(self) -> tuple[str, PipelineModel]:
        import mlflow.spark

        version = registry.champion_version(self.tracking, self.name)
        if version is None and self.model is None:
            raise UserError(
                f"no champion for {self.name} yet: run `retailstream train disruption` first"
            )
        if version is not None and version != self.version:
            self.model = mlflow.spark.load_model(f"models:/{self.name}/{version}")
            self.version = version
            print(f"scoring shipments with {self.name} v{version}", flush=True)
        assert self.version is not None and self.model is not None
        return self.version, self.model


def summary(alert: dict[str, Any]) -> str:
    """One line for people: the shipment, how likely late, why, and what to do."""
    reasons = "; ".join(alert["reasons"]) or "combination of conditions"
    moves = [
        f"{s['sku']} x{s['quantity']} from {s['source_id']}"
        for s in alert["skus"]
        if s["source_kind"] != "none"
    ]
    if moves:
        advice = f"reroute {', '.join(moves[:3])}" + (" ..." if len(moves) > 3 else "")
    else:
        advice = "no spare stock nearby"
    return (
        f"{alert['shipment_id']} to {alert['destination_store_id']}: "
        f"{alert['probability']:.0%} likely late ({reasons}); {advice}"
    )


def alert_documents(alerts: DataFrame, lines: DataFrame, version: str) -> list[dict[str, Any]]:
    """The store documents of a batch's alerts (small: collected)."""
    by_shipment: dict[str, list[dict]] = {}
    for row in lines.collect():
        line = row.asDict()
        by_shipment.setdefault(line.pop("shipment_id"), []).append(line)
    documents = []
    wanted = ["shipment_id", "p_late", "departed_at", "eta", "origin_dc_id",
              "destination_store_id", "carrier_id", *[column for column, _, _ in dis.REASONS]]  # fmt: skip
    for row in alerts.select(*wanted).collect():
        alert = row.asDict()
        document = {
            "shipment_id": alert["shipment_id"],
            "probability": round(float(alert["p_late"]), 4),
            "model_version": version,
            "departed_at": alert["departed_at"],
            "eta": alert["eta"],
            "origin_dc_id": alert["origin_dc_id"],
            "destination_store_id": alert["destination_store_id"],
            "carrier_id": alert["carrier_id"],
            "reasons": dis.reasons(alert),
            "skus": sorted(by_shipment.get(alert["shipment_id"], []), key=lambda s: s["sku"]),
        }
        document["summary"] = summary(document)
        documents.append(document)
    return documents


def score_batch_handler(
    spark: SparkSession, settings: Settings, champion: Champion, store: ServingStore
) -> Callable[[DataFrame, int], None]:
    references = load_references(spark, settings, ["stores", "routes"])
    threshold = settings.ml.disruption.alert_threshold

    def handle(batch: DataFrame, batch_id: int) -> None:
        if batch.isEmpty():
            return
        version, model = champion.current()
        scored = model.transform(dis.features(batch))
        alerts = (
            scored.withColumn("p_late", dis.late_probability(scored))
            .where(F.col("p_late") >= threshold)
            .persist()
        )
        try:
            lines = alerted_lines(alerts, read_table(spark, silver_table(settings, "shipments")))
            positions_path = gold_table(settings, "inventory_positions")
            positions = (
                read_table(spark, positions_path)
                if has_commits(positions_path)
                else spark.createDataFrame([], "store_id string, sku string, on_hand long")
            )
            moves = suggestions(
                lines, positions, references["stores"], references["routes"],
                settings.score.low_stock_threshold,
            )  # fmt: skip
            documents = alert_documents(alerts, moves, version)
            rows = spark.createDataFrame(documents, ALERT_SCHEMA)
            append_once(rows, gold_table(settings, "disruption_alerts"), QUERY_NAME, batch_id)
            store.upsert("disruption_alerts", documents)
        finally:
            alerts.unpersist()

    return handle


def start(spark: SparkSession, settings: Settings, trigger: StreamTrigger) -> StreamingQuery:
    """Start scoring `silver/shipments_enriched`; fails at once without a champion."""
    enriched = silver_table(settings, "shipments_enriched")
    if not has_commits(enriched):
        raise UserError(f"no {enriched}: run `retailstream run enrich` first")
    champion = Champion(settings)
    champion.current()
    handler = score_batch_handler(spark, settings, champion, open_store(settings.views.store_path))
    return foreach_batch_stream(
        read_stream(spark, enriched),
        handler,
        datasets.checkpoint(settings, QUERY_NAME),
        QUERY_NAME,
        trigger,
    )


def run(spark: SparkSession, cfg: StreamRun) -> int:
    settings = cfg.settings
    trigger = cfg.trigger(settings.score.trigger_interval)
    await_queries(start(spark, settings, trigger))
    print(f"scored shipments up to date ({QUERY_NAME})")
    return 0


JOB = stream_job(
    "score", __doc__.splitlines()[0], "score_shipments", run, "score what is in silver, then stop"
)
main = JOB.main
