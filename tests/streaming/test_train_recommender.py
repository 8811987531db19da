"""`train recommender` against real Spark ALS, real Delta tables and a real MLflow store:
metrics against the baseline and the generator's truth, the champion rule, serving,
the registry commands, and bad input. (A ratings file a user brings, PySpark's MovieLens
sample, is trained on in tests/e2e/test_standalone_cluster.py, on a cluster.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyspark
import pytest
from fastapi.testclient import TestClient
from pyspark.sql import DataFrame, SparkSession

from retailstream.config import Settings, load_settings
from retailstream.errors import UserError
from retailstream.io import datasets
from retailstream.io.datasets import load_references, silver_table
from retailstream.io.delta import read_table, write_table
from retailstream.io.truth import TruthWriter
from retailstream.jobs import init_world, retrain, serving_views, train_recommender
from retailstream.ml import registry
from retailstream.serve.app import create_app
from retailstream.views.store import open_store
from retailstream.world.generator import EventGenerator
from retailstream.world.reference import build_world
from support import (
    PROJECT_HOME,
    mlflow_runs,
    run_cli,
    with_ml,
)

SEED = 5
EVENTS = 150_000  # about 8,800 ratings by 1,500 of the small world's 2,000 customers


def _settings(root: Path, *extra: str) -> Settings:
    return load_settings(
        "test",
        [
            f"lake.root={root / 'lake'}",
            f"ml.store_dir={root / 'models'}",
            f"spark.driver_log={root / 'spark-driver.log'}",
            # Two points: enough to show validation picks one (each costs a fit).
            "ml.recommender.ranks=[4, 8]",
            "ml.recommender.reg_params=[0.3]",
            "ml.recommender.max_iter=5",
            *extra,
        ],
        home=PROJECT_HOME,
    )


def _flags(settings: Settings) -> list[str]:
    return [
        "--env", "test",
        "--set", f"lake.root={settings.lake.root}",
        "--set", f"ml.store_dir={settings.ml.store_dir}",
    ]  # fmt: skip


def _train(spark: SparkSession, settings: Settings, ratings: Path | None = None) -> None:
    cfg = train_recommender.RecommenderRun(settings, ratings=str(ratings) if ratings else None)
    assert train_recommender.run(spark, cfg) == 0


def _silver_acts(spark: SparkSession, records: list) -> dict[str, DataFrame]:
    """The clickstream and orders of generated records, in the columns implicit training
    reads. Records the generator made defective (unparseable, wrong types) are skipped,
    as refine would quarantine them."""
    clicks, orders = [], []
    for record in records:
        if record.topic not in ("shop.clickstream", "shop.orders"):
            continue
        try:
            event = json.loads(record.value)
            when = datetime.fromisoformat(event["event_time"])
            if record.topic == "shop.clickstream":
                row = (event["customer_id"], event["sku"], event["action"], when)
                if all(isinstance(v, str) for v in row[:3]):
                    clicks.append(row)
            elif isinstance(event["customer_id"], str):
                skus = [line["sku"] for line in event["lines"]]
                if all(isinstance(sku, str) for sku in skus):
                    orders.append((event["customer_id"], [(sku,) for sku in skus], when))
        except (ValueError, KeyError, TypeError):
            continue
    return {
        "clickstream": spark.createDataFrame(
            clicks, "customer_id string, sku string, action string, event_time timestamp"
        ),
        "orders": spark.createDataFrame(
            orders, "customer_id string, lines array<struct<sku: string>>, event_time timestamp"
        ),
    }


@pytest.fixture(scope="module")
def world_ratings(
    tmp_path_factory: pytest.TempPathFactory, spark: SparkSession
) -> tuple[Settings, pd.DataFrame]:
    """A world, its silver ratings (the columns the trainer reads, from generated
    events) and the generator's rating truth; the first model trained on them."""
    settings = _settings(tmp_path_factory.mktemp("recommender"))
    init_world.write_world(spark, settings, SEED, "small")
    generator = EventGenerator(
        build_world(SEED, "small"), SEED, datetime(2026, 3, 1, tzinfo=UTC), 1.0, None
    )
    batch = generator.next_batch(EVENTS)
    truth = batch.truth_frames()["rating_truth"]
    TruthWriter(settings.lake.root).append({"rating_truth": truth})
    silver = spark.createDataFrame(
        truth[["event_id", "customer_id", "sku", "stars", "event_time"]]
    ).selectExpr("event_id", "customer_id", "sku", "cast(stars as int) stars", "event_time")
    write_table(silver, silver_table(settings, "ratings"), mode="overwrite")
    for table, frame in _silver_acts(spark, batch.records).items():
        write_table(frame, silver_table(settings, table), mode="overwrite")
    store = open_store(settings.views.store_path)
    references = load_references(spark, settings, ["products", "stores", "customers"])
    serving_views.publish_catalogue(store, serving_views.catalogue_rows(references))
    _train(spark, settings)
    return settings, truth


def test_first_model_is_judged_against_the_baseline_and_the_truth_and_becomes_champion(
    world_ratings: tuple[Settings, pd.DataFrame], spark: SparkSession
) -> None:
    settings, _ = world_ratings
    client = registry.client(settings.ml)
    run = mlflow_runs(settings, train_recommender.EXPERIMENT)[0]
    metrics, params = run.data.metrics, run.data.params
    for name in ("holdout_rmse", "baseline_rmse", "oracle_rmse", "precision_at_10",
                 "ndcg_at_10", "baseline_precision_at_10", "baseline_ndcg_at_10"):  # fmt: skip
        assert name in metrics, name
    # The generator's expected stars are the best predictor there is.
    assert metrics["oracle_rmse"] < metrics["holdout_rmse"]
    assert 0 <= metrics["precision_at_10"] <= 1 and 0 <= metrics["ndcg_at_10"] <= 1
    assert metrics["ranked_customers"] > 0
    # Chosen by validation, from the configured grid.
    assert (int(params["rank"]), float(params["reg_param"])) in {
        (r, g) for r in (4, 8) for g in (0.3,)
    }
    grid = json.loads(
        Path(client.download_artifacts(run.info.run_id, "validation_grid.json")).read_text()
    )
    best = min(grid["trials"], key=lambda t: t["validation_rmse"])
    assert (best["rank"], best["reg_param"]) == (int(params["rank"]), float(params["reg_param"]))
    # Lineage: the Delta version of silver ratings that was read.
    inputs = json.loads(Path(client.download_artifacts(run.info.run_id, "inputs.json")).read_text())
    history = spark.sql(f"DESCRIBE HISTORY delta.`{silver_table(settings, 'ratings')}`")
    newest = history.agg({"version": "max"}).first()
    assert newest is not None
    assert inputs["ratings"]["delta_version"] == newest[0]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"validation_grid.png", "inputs.json"} <= artifacts
    model_files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"MLmodel", "input_example.json"} <= model_files
    mlmodel = Path(client.download_artifacts(run.info.run_id, "model/MLmodel")).read_text()
    assert "signature:" in mlmodel and "customer_id" in mlmodel
    # Stated, not inferred (inferring starts a Spark of its own, and lists whatever the
    # model's loading imported): pyspark pinned, and the MLflow that wrote it.
    requirements = Path(
        client.download_artifacts(run.info.run_id, "model/requirements.txt")
    ).read_text()
    assert {r.split("==")[0] for r in requirements.split()} == {"mlflow", "pyspark"}
    assert f"pyspark=={pyspark.__version__}" in requirements.split()
    assert registry.champion_version(client, settings.ml.recommender_model) == "1"
    assert run.data.tags["promoted"] == "true"


def test_the_champion_s_lists_are_served_and_strangers_get_their_region_s_favourites(
    world_ratings: tuple[Settings, pd.DataFrame], spark: SparkSession
) -> None:
    settings, truth = world_ratings
    gold = read_table(spark, settings.lake.table("gold/recommendations")).toPandas()
    assert set(gold["model_version"]) == {"1"}
    assert (
        gold.groupby("customer_id")["rank"]
        .apply(sorted)
        .map(lambda r: r == list(range(1, 11)))
        .all()
    )
    rated = set(zip(truth["customer_id"], truth["sku"], strict=True))
    assert not any((c, s) in rated for c, s in zip(gold["customer_id"], gold["sku"], strict=True))

    customers = read_table(spark, datasets.reference_table(settings, "customers")).toPandas()
    stranger = customers[~customers["customer_id"].isin(truth["customer_id"])].iloc[0]
    known = gold["customer_id"].iloc[0]
    with TestClient(create_app(settings, store=open_store(settings.views.store_path))) as api:
        mine = api.get(f"/v1/customers/{known}/recommendations")
        assert mine.status_code == 200, mine.text
        body = mine.json()
        assert body["source"] == "model" and len(body["items"]) == 10
        assert [i["sku"] for i in body["items"]] == list(
            gold[gold["customer_id"] == known].sort_values("rank")["sku"]
        )
        theirs = api.get(f"/v1/customers/{stranger['customer_id']}/recommendations").json()
        assert theirs["source"] == "popular_in_region"
        assert theirs["region"] == stranger["home_region"] and len(theirs["items"]) == 10
        missing = api.get("/v1/customers/C-9999999/recommendations")
        assert missing.status_code == 404 and missing.json()["error"] == "unknown_customer"


def test_a_worse_model_is_registered_but_changes_nothing_served(
    world_ratings: tuple[Settings, pd.DataFrame], spark: SparkSession
) -> None:
    settings, _ = world_ratings
    # Sixteen tastes from six ratings a customer, barely regularised: fitted to the noise.
    worse = with_ml(settings, "recommender", ranks=(16,), reg_params=(0.001,))
    before = read_table(spark, settings.lake.table("gold/recommendations")).toPandas()
    _train(spark, worse)
    client = registry.client(settings.ml)
    name = settings.ml.recommender_model
    assert {str(v.version) for v in client.search_model_versions(f"name = '{name}'")} >= {"1", "2"}
    assert registry.champion_version(client, name) == "1"
    run = mlflow_runs(settings, train_recommender.EXPERIMENT)[-1]
    assert run.data.tags["promoted"] == "false"
    assert run.data.metrics["vs_champion_new_rmse"] > run.data.metrics["vs_champion_champion_rmse"]
    after = read_table(spark, settings.lake.table("gold/recommendations")).toPandas()
    assert after.sort_values(["customer_id", "rank"]).equals(
        before.sort_values(["customer_id", "rank"])
    )


def test_models_list_promote_and_rollback_move_the_champion(
    world_ratings: tuple[Settings, pd.DataFrame],
) -> None:
    settings, _ = world_ratings
    flags = _flags(settings)
    listed = run_cli("models", "list", *flags)
    assert listed.returncode == 0, listed.stderr
    assert "champion" in listed.stdout and "holdout_rmse" in listed.stdout
    promoted = run_cli("models", "promote", "recommender", "2", *flags)
    assert promoted.returncode == 0, promoted.stderr
    client = registry.client(settings.ml)
    name = settings.ml.recommender_model
    assert registry.champion_version(client, name) == "2"
    back = run_cli("models", "rollback", "recommender", *flags)
    assert back.returncode == 0, back.stderr
    assert "version 1" in back.stdout
    assert registry.champion_version(client, name) == "1"
    unknown = run_cli("models", "promote", "recommender", "99", *flags)
    assert unknown.returncode != 0 and "no version 99" in unknown.stderr


def test_too_few_ratings_is_a_clear_error_that_registers_nothing(
    world_ratings: tuple[Settings, pd.DataFrame], spark: SparkSession
) -> None:
    settings, _ = world_ratings
    strict = with_ml(settings, "recommender", min_ratings=10_000_000)
    client = registry.client(settings.ml)
    name = settings.ml.recommender_model
    versions = len(client.search_model_versions(f"name = '{name}'"))
    with pytest.raises(UserError, match="too few ratings to train"):
        _train(spark, strict)
    assert len(client.search_model_versions(f"name = '{name}'")) == versions


def test_scheduled_retraining_that_fails_leaves_the_champion_serving(
    world_ratings: tuple[Settings, pd.DataFrame], spark: SparkSession
) -> None:
    settings, _ = world_ratings
    client = registry.client(settings.ml)
    name = settings.ml.recommender_model
    champion = registry.champion_version(client, name)
    versions = len(client.search_model_versions(f"name = '{name}'"))
    served = read_table(spark, settings.lake.table("gold/recommendations")).count()
    failing = with_ml(settings, "recommender", min_ratings=10_000_000)
    cfg = retrain.RetrainRun(failing, every=1.0, models=("recommender",), times=2)
    assert retrain.run(spark, cfg) == 5  # both rounds ran, both failed
    assert registry.champion_version(client, name) == champion
    assert len(client.search_model_versions(f"name = '{name}'")) == versions
    assert read_table(spark, settings.lake.table("gold/recommendations")).count() == served


def test_implicit_signals_rank_better_than_ratings_alone_and_take_over_on_rankings(
    world_ratings: tuple[Settings, pd.DataFrame], spark: SparkSession
) -> None:
    settings, _ = world_ratings
    client = registry.client(settings.ml)
    name = settings.ml.recommender_model
    # One point of the grid (the best of ranks 4 and 8 by regularisation 0.1 and 0.3 on
    # this world's validation), so that the test pays for one fit.
    _train(spark, with_ml(settings, "recommender", implicit=True, ranks=(4,), reg_params=(0.3,)))
    run = mlflow_runs(settings, train_recommender.EXPERIMENT)[-1]
    metrics, params = run.data.metrics, run.data.params
    assert params["signals"] == "implicit" and "validation_ndcg_at_10" in metrics
    assert "holdout_rmse" not in metrics, "a preference model predicts no stars"
    assert {"ndcg_at_10", "baseline_ndcg_at_10", "precision_at_10"} <= set(metrics)
    # Judged against the explicit champion on rankings (it predicts no stars), over the
    # same customers and holdout. Clicks and orders (12x the ratings) tell more about
    # taste than 5.7 ratings a customer: the champion's lists follow its predicted stars
    # (item means included), and this model's beat them (NDCG@10 0.20 against 0.10).
    new, old = metrics["vs_champion_new_ndcg_at_10"], metrics["vs_champion_champion_ndcg_at_10"]
    assert new > old > 0, metrics
    champion = registry.champion_version(client, name)
    assert champion is not None
    version = client.get_model_version(name, champion)
    assert version.tags["signals"] == "implicit" and run.data.tags["promoted"] == "true"
    inputs = json.loads(Path(client.download_artifacts(run.info.run_id, "inputs.json")).read_text())
    assert set(inputs) == {"ratings", "clickstream", "orders"}
    assert all("delta_version" in read for read in inputs.values())
    served = read_table(spark, settings.lake.table("gold/recommendations")).toPandas()
    assert set(served["model_version"]) == {str(version.version)}


def test_implicit_signals_with_a_ratings_file_is_a_clear_error(
    world_ratings: tuple[Settings, pd.DataFrame], spark: SparkSession, tmp_path: Path
) -> None:
    settings, _ = world_ratings
    with pytest.raises(UserError, match="implicit signals"):
        _train(spark, with_ml(settings, "recommender", implicit=True), tmp_path / "any.csv")
