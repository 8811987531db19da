"""`train disruption` on shipments that went the whole way (Kafka -> bronze -> silver ->
enriched with weather and world events: the run's `shipped_lake`), with a real MLflow store: the model, a baseline
and the generator's true probabilities judged on the same holdout, and the champion rule."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.datasets import gold_table, silver_table
from retailstream.io.delta import StreamTrigger, read_table
from retailstream.jobs import build_views, score_shipments, train_disruption
from retailstream.jobs.spec import StreamRun
from retailstream.ml import registry
from retailstream.serve.app import create_app
from retailstream.views.store import open_store
from support import copied_lake, mlflow_runs, with_ml


@pytest.fixture(scope="module")
def shipped(
    shipped_lake: tuple[Settings, pd.DataFrame],
    tmp_path_factory: pytest.TempPathFactory,
    spark: SparkSession,
) -> Settings:
    """A copy of the run's shipped lake (the tests score and append to it), with a
    model store of its own; the first model trained."""
    lake, _ = shipped_lake
    copy = copied_lake(
        lake,
        tmp_path_factory.mktemp("disruption"),
        f"kafka.bootstrap_servers={lake.kafka.bootstrap}",
    )
    settings = with_ml(copy, "disruption", iterations=(10,), depths=(3, 4))
    assert train_disruption.run(spark, train_disruption.DisruptionRun(settings)) == 0
    return settings


def test_the_model_is_judged_against_a_baseline_and_the_true_probabilities(
    shipped: Settings, spark: SparkSession
) -> None:
    client = registry.client(shipped.ml)
    run = mlflow_runs(shipped, train_disruption.EXPERIMENT)[0]
    m = run.data.metrics
    for kind in ("holdout", "baseline", "truth"):
        for metric in ("roc_auc", "pr_auc"):
            assert 0.0 <= m[f"{kind}_{metric}"] <= 1.0, (kind, metric)
    # Weather, world events, carrier and distance carry signal the carrier alone does not.
    assert m["holdout_roc_auc"] > m["baseline_roc_auc"]
    assert m["holdout_roc_auc"] > 0.6
    # Nobody beats the true probabilities by much (a small holdout leaves some luck).
    assert m["holdout_roc_auc"] < m["truth_roc_auc"] + 0.05
    assert 0.0 < m["holdout_late_rate"] < 0.5
    inputs = json.loads(Path(client.download_artifacts(run.info.run_id, "inputs.json")).read_text())
    assert set(inputs) == {"shipments_enriched", "shipments"}
    assert all(isinstance(v["delta_version"], int) for v in inputs.values())
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"pr_curve.png", "validation_grid.json", "inputs.json"} <= artifacts
    mlmodel = Path(client.download_artifacts(run.info.run_id, "model/MLmodel")).read_text()
    assert "signature:" in mlmodel and "carrier_reliability" in mlmodel
    assert registry.champion_version(client, shipped.ml.disruption_model) == "1"


def test_a_model_that_is_not_better_leaves_the_champion_alone(
    shipped: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    # One shallow tree sees little of what the champion learnt.
    weak = with_ml(shipped, "disruption", iterations=(1,), depths=(1,))
    assert train_disruption.run(spark, train_disruption.DisruptionRun(weak)) == 0
    client = registry.client(shipped.ml)
    run = mlflow_runs(shipped, train_disruption.EXPERIMENT)[-1]
    assert run.data.tags["promoted"] == "false"
    assert (
        run.data.metrics["vs_champion_new_pr_auc"]
        <= run.data.metrics["vs_champion_champion_pr_auc"]
    )
    assert registry.champion_version(client, shipped.ml.disruption_model) == "1"


def test_too_few_delivered_shipments_is_a_clear_error(
    shipped: Settings, spark: SparkSession
) -> None:
    strict = with_ml(shipped, "disruption", min_rows=10_000_000)
    client = registry.client(shipped.ml)
    before = len(client.search_model_versions(f"name = '{shipped.ml.disruption_model}'"))
    with pytest.raises(UserError, match="too few delivered shipments to train"):
        train_disruption.run(spark, train_disruption.DisruptionRun(strict))
    assert len(client.search_model_versions(f"name = '{shipped.ml.disruption_model}'")) == before


def test_live_departures_are_scored_by_the_champion_with_rerouting(
    shipped: Settings, spark: SparkSession
) -> None:
    views = shipped.model_copy(
        update={"views": shipped.views.model_copy(update={"views": ("inventory_positions",)})}
    )
    build_views.run(spark, StreamRun(views, available_now=True))
    assert score_shipments.run(spark, StreamRun(shipped, available_now=True)) == 0
    alerts = read_table(spark, gold_table(shipped, "disruption_alerts")).toPandas()
    threshold = shipped.ml.disruption.alert_threshold
    assert len(alerts) > 0
    assert (alerts["probability"] >= threshold).all() and set(alerts["model_version"]) == {"1"}
    assert alerts["shipment_id"].is_unique
    positions = read_table(spark, shipped.lake.table("gold/inventory_positions")).toPandas()
    # Column by column, as itertuples reads them (whose fields pandas-stubs types as scalars,
    # which an array column's values are not).
    spare = {
        (store_id, sku): on_hand - shipped.views.low_stock_threshold
        for store_id, sku, on_hand in zip(
            positions["store_id"], positions["sku"], positions["on_hand"], strict=True
        )
    }
    kinds = set()
    for shipment_id, destination_store_id, skus in zip(
        alerts["shipment_id"], alerts["destination_store_id"], alerts["skus"], strict=True
    ):
        assert skus is not None and len(skus) > 0, shipment_id
        for line in skus:
            kinds.add(line["source_kind"])
            if line["source_kind"] == "store":  # a store that can spare the whole line
                assert line["source_id"] != destination_store_id
                assert spare[(line["source_id"], line["sku"])] >= line["quantity"]
    assert kinds & {"store", "distribution_centre"}
    with TestClient(create_app(shipped, store=open_store(shipped.views.store_path))) as api:
        served = api.get("/v1/alerts/disruptions", params={"limit": 1000}).json()
    assert served["count"] == len(alerts)
    probabilities = [item["probability"] for item in served["items"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(item["summary"].startswith(item["shipment_id"]) for item in served["items"])


def test_a_new_champion_is_picked_up_without_restarting_the_query(
    shipped: Settings, spark: SparkSession
) -> None:
    # Every departure an alert, so that each batch shows which version scored it.
    eager = with_ml(shipped, "disruption", alert_threshold=0.0001)
    query = score_shipments.start(spark, eager, StreamTrigger(False, "1 second"))
    client = registry.client(shipped.ml)
    name = shipped.ml.disruption_model
    enriched = silver_table(shipped, "shipments_enriched")

    def departures_again(tag: str) -> None:
        rows = read_table(spark, enriched).limit(20)
        again = rows.withColumn("shipment_id", F.concat("shipment_id", F.lit(tag)))
        again.write.format("delta").mode("append").save(str(enriched))

    def scored_by(tag: str) -> set[str]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = (
                read_table(spark, gold_table(shipped, "disruption_alerts"))
                .where(F.col("shipment_id").endswith(tag))
                .select("model_version")
                .distinct()
                .collect()
            )
            if found:
                return {r[0] for r in found}
            assert query.exception() is None, query.exception()
            time.sleep(1)
        raise AssertionError(f"departures {tag} were not scored")

    try:
        departures_again("-A")
        assert scored_by("-A") == {"1"}
        registry.promote(client, name, "2")
        departures_again("-B")
        assert scored_by("-B") == {"2"}
        assert query.isActive
    finally:
        query.stop()
        registry.rollback(client, name)
