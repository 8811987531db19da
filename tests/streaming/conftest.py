"""Lakes built once per run and shared by the streaming tests.

- `generated_lake`, which both view paths are tested on (its lake a `file://` URI of a
  folder named with a space): one broker of its own, two
  rounds of generated events with duplicates, late and out-of-order events and malformed
  records, and after each round the serving path, then the lake path (ingest, refine,
  gold views), each draining what Kafka holds (test_build_views, test_serving_views).
- `shipped_lake`: days of clean generated events through ingest, refine and enrich, with
  the generator's shipment truth (test_enrich_events reads it, test_train_disruption
  trains on a copy).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from retailstream.config import Settings, load_settings
from retailstream.io.truth import TruthWriter
from retailstream.jobs import (
    build_views,
    enrich_events,
    ingest_events,
    init_world,
    refine_events,
)
from retailstream.jobs.spec import StreamRun
from retailstream.kafka.topics import create_topics
from retailstream.postgres_server import LocalPostgres
from retailstream.world import DefectRates, EventGenerator, build_world
from support import (
    GENERATED_LAKE,
    PROJECT_HOME,
    own_pipeline,
    produce_generated,
    serve_available,
    with_postgres,
)

SEED = 11
# Plenty of the defects views must withstand, and some that refine quarantines.
DEFECTS = DefectRates(
    duplicate=0.03, out_of_order=0.03, late_time=0.01, wrong_type=0.005, unknown_sku=0.005
)


@pytest.fixture(scope="session")
def generated_lake(
    tmp_path_factory: pytest.TempPathFactory, spark: SparkSession, postgres_server: LocalPostgres
) -> Iterator[Settings]:
    """The serving path feeds SQLite and PostgreSQL (`test_serving_views` holds them equal).
    The lake is given as a `file://` URI of a folder whose name has a space in it
    (`GENERATED_LAKE`): every job finds its tables through the dataset catalog."""
    root = tmp_path_factory.mktemp("generated")
    with own_pipeline(root) as broker_side:
        lake_uri = (root / GENERATED_LAKE).as_uri()  # file:///.../shop%20lake
        lake_settings = load_settings(
            "test",
            [f"lake.root={lake_uri}", f"kafka.bootstrap_servers={broker_side.kafka.bootstrap}"],
            home=PROJECT_HOME,
        )
        settings = with_postgres(lake_settings, postgres_server, "generated")
        create_topics(settings.kafka.bootstrap, settings.kafka.topics)
        init_world.write_world(spark, settings, SEED, "small")
        generator = EventGenerator(
            build_world(SEED, "small"), SEED, datetime(2026, 6, 1, 9, tzinfo=UTC), 4.0, DEFECTS
        )
        for events in (4000, 3000):  # a first batch, then merges into what is there
            produce_generated(settings, generator, events)
            serve_available(spark, settings)
            ingest_events.run(spark, StreamRun(settings, available_now=True))
            refine_events.run(spark, StreamRun(settings, available_now=True))
            build_views.run(spark, StreamRun(settings, available_now=True))
        yield settings


SHIPPED_SEED = 23
SHIPPED_EVENTS = 60_000
SHIPPED_SIM_SECONDS_PER_EVENT = 5.0  # about 3.5 simulated days: some 1,500 shipments


@pytest.fixture(scope="session")
def shipped_lake(
    tmp_path_factory: pytest.TempPathFactory, spark: SparkSession
) -> Iterator[tuple[Settings, pd.DataFrame]]:
    """Settings over the lake, and the generator's shipment truth. Read it, never change
    it: a test that must change it copies it first (`copied_lake`)."""
    with own_pipeline(tmp_path_factory.mktemp("shipped")) as settings:
        create_topics(settings.kafka.bootstrap, settings.kafka.topics)
        init_world.write_world(spark, settings, SHIPPED_SEED, "small")
        generator = EventGenerator(
            build_world(SHIPPED_SEED, "small"), SHIPPED_SEED, datetime(2026, 1, 5, tzinfo=UTC),
            SHIPPED_SIM_SECONDS_PER_EVENT, DefectRates.none(),
        )  # fmt: skip
        batch = produce_generated(settings, generator, SHIPPED_EVENTS)
        truth = batch.truth_frames()["shipment_truth"]
        TruthWriter(settings.lake.root).append({"shipment_truth": truth})
        ingest_events.run(spark, StreamRun(settings, available_now=True))
        refine_events.run(spark, StreamRun(settings, available_now=True))
        enrich_events.run(spark, StreamRun(settings, available_now=True))
        yield settings, truth
