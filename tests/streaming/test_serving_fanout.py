"""Fan-out: the serving path feeds SQLite and PostgreSQL at once, each with its own
query, checkpoint and offsets. PostgreSQL is stopped while events keep arriving: the
SQLite side keeps up, the PostgreSQL side waits, and once the server is back it
catches up from its own offsets and ends equal to SQLite, row for row."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial

import pytest
from pyspark.sql import SparkSession

from retailstream.config import Settings
from retailstream.health.lag import KafkaPositions
from retailstream.io.delta import StreamTrigger
from retailstream.jobs import init_world, serving_views
from retailstream.kafka.topics import create_topics, topic_partitions
from retailstream.postgres_server import LocalPostgres
from retailstream.views.serving import view_topics
from retailstream.views.store import ServingStore
from retailstream.world import DefectRates, EventGenerator, build_world
from support import assert_same_views, own_pipeline, produce_generated, with_postgres

SEED = 23
DEFECTS = DefectRates(duplicate=0.03, out_of_order=0.03, wrong_type=0.005)


def _until(condition: Callable[[], bool], what: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def _caught_up(store: ServingStore, settings: Settings, views: tuple[str, ...]) -> bool:
    """Every view of `store` has applied every record Kafka holds for it."""
    topics = sorted({t for v in views for t in view_topics(v)})
    partitions = topic_partitions(settings.kafka.bootstrap, topics)
    kafka = KafkaPositions(settings.kafka.bootstrap)
    try:
        ends = kafka.ends([(t, p) for t in topics for p in partitions[t]])
    finally:
        kafka.close()
    for view in views:
        for topic in view_topics(view):
            applied = store.positions(view, topic)
            for p in partitions[topic]:
                if ends[topic, p] and applied.get(p, -1) != ends[topic, p] - 1:
                    return False
    return True


@pytest.fixture
def fanned_out(
    tmp_path_factory: pytest.TempPathFactory, spark: SparkSession, postgres_server: LocalPostgres
) -> Iterator[tuple[Settings, EventGenerator]]:
    with own_pipeline(tmp_path_factory.mktemp("fanout")) as settings:
        settings = with_postgres(settings, postgres_server, "fanout")
        create_topics(settings.kafka.bootstrap, settings.kafka.topics)
        init_world.write_world(spark, settings, SEED, "small")
        world = build_world(SEED, "small")
        yield (
            settings,
            EventGenerator(world, SEED, datetime(2026, 6, 1, 9, tzinfo=UTC), 4.0, DEFECTS),
        )


def test_a_store_that_was_down_catches_up_from_its_own_offsets(
    fanned_out: tuple[Settings, EventGenerator], spark: SparkSession, postgres_server: LocalPostgres
) -> None:
    settings, generator = fanned_out
    produce_generated(settings, generator, 600)
    sqlite_path, postgres_path = serving_views.serving_paths(spark, settings)
    assert (sqlite_path.kind, postgres_path.kind) == ("sqlite", "postgres")
    views = sqlite_path.views
    continuous = StreamTrigger(available_now=False, processing_time="0 seconds")
    queries = [path.start(continuous) for path in (sqlite_path, postgres_path)]
    load = threading.Event()
    producing = threading.Thread(target=_produce_until, args=(settings, generator, load))
    try:
        _until(lambda: _caught_up(postgres_path.store, settings, views), "postgres caught up")
        producing.start()
        postgres_server.stop()
        # Under load: SQLite keeps folding what arrives; PostgreSQL's query waits.
        before = sqlite_path.store.positions("item_ratings", "shop.ratings")
        _until(
            lambda: sqlite_path.store.positions("item_ratings", "shop.ratings") != before,
            "sqlite moved on while postgres was down",
        )
        assert all(q.isActive and q.exception() is None for q in queries)
        postgres_server.start()
        load.set()
        producing.join()
        for path in (sqlite_path, postgres_path):
            _until(partial(_caught_up, path.store, settings, views), f"{path.kind} caught up")
    finally:
        load.set()
        for query in queries:
            query.stop()
    assert all(q.exception() is None for q in queries)
    # Row for row, and position for position.
    assert_same_views(postgres_path.store, sqlite_path.store)
    # The tasks folded PostgreSQL's slices, not the driver.
    assert postgres_path.last_workers and all(
        not worker.endswith(f":{os.getpid()}") for worker in postgres_path.last_workers
    )


def _produce_until(settings: Settings, generator: EventGenerator, done: threading.Event) -> None:
    while not done.is_set():
        produce_generated(settings, generator, 300)
