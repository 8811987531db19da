"""Shared fixtures: one real Kafka broker, one PostgreSQL server (for the tests that
ask) and one SparkSession per test run.

Tier markers come from the folder a test lives in (unit/, streaming/, e2e/,
browser/), so `pytest -m unit` selects a tier without decorating every test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retailstream.config import Settings, load_settings
from retailstream.jars import classpath
from retailstream.kafka.broker import LocalBroker
from retailstream.postgres_server import LocalPostgres, throwaway_server
from support import PROJECT_HOME, broker_settings

TIERS = ("unit", "streaming", "e2e", "browser")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(PROJECT_HOME / "tests").parts
        if parts and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def project_home() -> Path:
    return PROJECT_HOME


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """The test run's real Kafka broker (KRaft, loopback, free ports)."""
    broker = LocalBroker(
        broker_settings(tmp_path_factory.mktemp("kafka")), classpath(PROJECT_HOME, "kafka-broker")
    )
    broker.start(tethered=True)  # never outlives the run, even a killed one
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def lake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lake")


@pytest.fixture(scope="session")
def settings(kafka_broker: LocalBroker, lake_root: Path) -> Settings:
    """Settings of the `test` env pointed at the test broker and a temporary lake."""
    return load_settings(
        "test",
        [
            f"lake.root={lake_root}",
            f"kafka.bootstrap_servers={kafka_broker.bootstrap}",
            f"spark.driver_log={lake_root.parent / 'spark-driver.log'}",
        ],
        home=PROJECT_HOME,
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """The test run's real PostgreSQL server (loopback, a free port), started only for
    the tests that ask for it; its database and roles are those of `postgres start`."""
    with throwaway_server() as server:
        yield server


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - SparkSession
    """The one SparkSession of the test run (no broker needed to build it)."""
    from retailstream.session import build_spark

    lake = tmp_path_factory.mktemp("spark-lake")
    session = build_spark(
        load_settings(
            "test",
            [f"lake.root={lake}", f"spark.driver_log={lake.parent / 'spark-driver.log'}"],
            home=PROJECT_HOME,
        )
    )
    yield session
    session.stop()


@pytest.fixture
def topic_name() -> str:
    """A topic name no other test uses."""
    return f"test.{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def sample_lake(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Settings:
    """Settings over a sample lake: two simulated days through the whole pipeline
    (`retailstream sample-lake`), built once per run. Read it, never change it; a
    test that must change a lake copies it first (`copied_lake`)."""
    from retailstream.jobs import sample_lake as sample

    root = tmp_path_factory.mktemp("sample")
    settings = load_settings(
        "test",
        [f"lake.root={root / 'lake'}", f"ml.store_dir={root / 'models'}"],
        home=PROJECT_HOME,
    )
    sample.build(spark, settings, sample.SampleSpec(days=2, events_per_day=10_000))
    return settings
