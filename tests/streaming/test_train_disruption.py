"""`train disruption` on shipments that went the whole way (Kafka -> bronze -> silver ->
enriched with weather and world events), with a real MLflow store: the model, a baseline
and the generator's true probabilities judged on the same holdout, and the champion rule."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.truth import TruthWriter
from retailstream.jobs import (
    enrich_events,
    ingest_events,
    init_world,
    refine_events,
    train_disruption,
)
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics
from retailstream.ml import registry
from retailstream.world import EventGenerator, build_world
from support import own_pipeline

AVAILABLE_NOW = argparse.Namespace(available_now=True)
SEED = 23
EVENTS = 60_000
SIM_SECONDS_PER_EVENT = 5.0  # about 3.5 simulated days: some 1,500 shipments


def _with_ml(settings: Settings, root: Path, **disruption: object) -> Settings:
    ml = settings.ml.model_copy(
        update={
            "store_dir": root / "models",
            "disruption": settings.ml.disruption.model_copy(
                update={"iterations": (10,), "depths": (3, 4), **disruption}
            ),
        }
    )
    return settings.model_copy(update={"ml": ml})


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory, spark: SparkSession) -> Iterator[Settings]:
    """Weeks of generated events through ingest, refine and enrich; the first model trained."""
    root = tmp_path_factory.mktemp("disruption")
    with own_pipeline(root) as base:
        settings = _with_ml(base, root)
        create_topics(settings.kafka.bootstrap, settings.kafka.topics)
        init_world.write_world(spark, settings, SEED, "small")
        generator = EventGenerator(
            build_world(SEED, "small"), SEED, datetime(2026, 1, 5, tzinfo=UTC),
            SIM_SECONDS_PER_EVENT, None,
        )  # fmt: skip
        batch = generator.next_batch(EVENTS)
        client = producer(settings.kafka.bootstrap)
        for record, emitted in zip(batch.records, batch.emit_times_ms, strict=True):
            client.produce(record.topic, key=record.key, value=record.value, timestamp=emitted)
        flush_or_fail(client)
        TruthWriter(settings.lake.root).append(
            {"shipment_truth": pd.DataFrame(batch.shipment_truth)}
        )
        ingest_events.run(spark, settings, AVAILABLE_NOW)
        refine_events.run(spark, settings, AVAILABLE_NOW)
        enrich_events.run(spark, settings, AVAILABLE_NOW)
        assert train_disruption.train(spark, settings, argparse.Namespace()) == 0
        yield settings


def _runs(settings: Settings) -> list:
    client = registry.client(settings.ml)
    experiment = client.get_experiment_by_name(train_disruption.EXPERIMENT)
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_the_model_is_judged_against_a_baseline_and_the_true_probabilities(
    shipped: Settings, spark: SparkSession
) -> None:
    client = registry.client(shipped.ml)
    run = _runs(shipped)[0]
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
    weak = shipped.model_copy(
        update={
            "ml": shipped.ml.model_copy(
                update={
                    "disruption": shipped.ml.disruption.model_copy(
                        update={"iterations": (1,), "depths": (1,)}
                    )
                }
            )
        }  # fmt: skip
    )
    assert train_disruption.train(spark, weak, argparse.Namespace()) == 0
    client = registry.client(shipped.ml)
    run = _runs(shipped)[-1]
    assert run.data.tags["promoted"] == "false"
    assert (
        run.data.metrics["vs_champion_new_pr_auc"]
        <= run.data.metrics["vs_champion_champion_pr_auc"]
    )
    assert registry.champion_version(client, shipped.ml.disruption_model) == "1"


def test_too_few_delivered_shipments_is_a_clear_error(
    shipped: Settings, spark: SparkSession
) -> None:
    strict = _with_ml(shipped, shipped.ml.store_dir.parent, min_rows=10_000_000)
    client = registry.client(shipped.ml)
    before = len(client.search_model_versions(f"name = '{shipped.ml.disruption_model}'"))
    with pytest.raises(UserError, match="too few delivered shipments to train"):
        train_disruption.train(spark, strict, argparse.Namespace())
    assert len(client.search_model_versions(f"name = '{shipped.ml.disruption_model}'")) == before
