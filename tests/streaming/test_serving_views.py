"""The serving path: Kafka -> serving store in one hop. With duplicates, late and
out-of-order events and defects in the input, over several micro-batches, the live
views equal a rebuild from the event store and the counts of refine's silver tables."""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.io import datasets
from retailstream.io.datasets import bronze_table, silver_table
from retailstream.io.delta import StreamTrigger, read_table
from retailstream.io.lake_names import lake_tables
from retailstream.jobs import serving_views
from retailstream.postgres_server import reader_dsn
from retailstream.serve.commands import RatingPublisher
from retailstream.serve.server import start_background
from retailstream.views.facts import decode_facts, fact_messages
from retailstream.views.postgres_store import PostgresStore
from retailstream.views.serving import view_topics
from retailstream.views.store import SqliteStore
from support import (
    GENERATED_LAKE,
    SERVING_TABLES,
    SERVING_VIEWS,
    assert_same_views,
    check_item_ratings,
    keyed_rows,
)


@pytest.fixture(scope="module")
def served(generated_lake: Settings) -> Settings:
    """Views folded by the serving path over two rounds of events, with the lake path
    (ingest, refine) run over the same records (`conftest.generated_lake`)."""
    return generated_lake


@pytest.fixture(scope="module")
def rebuilt(
    served: Settings, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> SqliteStore:
    target = tmp_path_factory.mktemp("rebuilt") / "views.db"
    serving_views.rebuild(spark, served, target)
    return SqliteStore(target)


def test_a_lake_given_as_a_file_uri_with_a_space_holds_every_table(served: Settings) -> None:
    root = served.lake.root
    assert root.name == GENERATED_LAKE and root.is_dir()
    tables = lake_tables(root)
    for name in ("bronze.events", "quality.quarantine", "silver.ratings", "gold.item_ratings"):
        assert name in tables and tables[name].is_relative_to(root), sorted(tables)
    assert served.views.store_path.is_relative_to(root)  # the serving store beside them
    # Nothing went to a percent-escaped twin of the folder, or anywhere else.
    assert not list(root.parent.rglob("*%20*")) and sorted(root.parent.iterdir()) == sorted(
        [root, root.parent / "kafka"]
    )


def live(settings: Settings) -> SqliteStore:
    return SqliteStore(settings.views.store_path)


@pytest.mark.parametrize("table", SERVING_TABLES)
def test_the_live_views_equal_a_rebuild_from_the_event_store(
    served: Settings, rebuilt: SqliteStore, table: str
) -> None:
    served_rows = keyed_rows(live(served), table)
    assert served_rows, f"{table} has rows"
    assert served_rows == keyed_rows(rebuilt, table)


def test_postgres_holds_the_same_views_as_sqlite(served: Settings) -> None:
    """The serving path fed both stores: SQLite folded by the driver, PostgreSQL by the
    tasks, each slice a transaction of its own. Read back with the API's read-only role."""
    assert served.views.stores == ("sqlite", "postgres")
    assert_same_views(PostgresStore(reader_dsn(served), writer=False), live(served))


def test_positions_equal_the_rebuilds(served: Settings, rebuilt: SqliteStore) -> None:
    for view in SERVING_VIEWS:
        for topic in view_topics(view):
            assert live(served).positions(view, topic) == rebuilt.positions(view, topic)


def test_item_ratings_count_each_valid_rating_once(served: Settings, spark: SparkSession) -> None:
    check_item_ratings(
        live(served).rows("item_ratings"), read_table(spark, silver_table(served, "ratings"))
    )


def test_the_input_had_duplicates_and_quarantined_events(
    served: Settings, spark: SparkSession
) -> None:
    bronze = read_table(spark, bronze_table(served))
    ids = bronze.select(F.get_json_object(F.col("value").cast("string"), "$.event_id"))
    assert bronze.count() > ids.distinct().count(), "the input has duplicates"
    assert read_table(spark, served.lake.table("quarantine")).count() > 0


def test_sales_add_up_to_refines_orders(served: Settings, spark: SparkSession) -> None:
    orders = read_table(spark, silver_table(served, "orders"))
    rows = live(served).rows("sales_by_region")
    assert sum(r["orders"] + r["late_orders"] for r in rows) == orders.count()
    counted = orders.where(F.col("event_lag_seconds") <= served.views.sales_lateness_s)
    cents_row = counted.agg(F.sum(F.round(F.col("total") * 100))).first()
    assert cents_row is not None
    cents = cents_row[0]
    assert sum(r["revenue_cents"] for r in rows) == cents
    assert all(r["region"] for r in rows)


def test_inventory_is_initial_plus_deliveries_minus_sales(
    served: Settings, spark: SparkSession
) -> None:
    lines = read_table(spark, silver_table(served, "order_lines")).where("store_id IS NOT NULL")
    sold: Counter[tuple[str, str]] = Counter()
    for r in lines.groupBy("store_id", "sku").agg(F.sum("quantity").alias("q")).collect():
        sold[r["store_id"], r["sku"]] = r["q"]
    initial = read_table(spark, datasets.reference_table(served, "initial_stock")).count()
    positions = live(served).rows("inventory_positions")
    assert len(positions) >= initial
    for p in positions:
        assert p["sold"] == sold[p["store_id"], p["sku"]]
        assert p["on_hand"] == p["initial"] + p["delivered"] - p["sold"]
    assert any(p["delivered"] > 0 for p in positions), "some deliveries arrived"


def test_trending_ranks_the_last_minutes_of_activity(served: Settings, spark: SparkSession) -> None:
    rows = live(served).rows("trending_items")
    assert rows
    by_category: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row)
    for items in by_category.values():
        items.sort(key=lambda r: r["rank"])
        assert [r["rank"] for r in items] == list(range(1, len(items) + 1))
        scores = [r["score"] for r in items]
        assert scores == sorted(scores, reverse=True)
        assert len(items) <= served.views.trending_top
    activity = live(served).rows("trending_activity")
    minutes = {r["minute"] for r in activity}
    assert len(minutes) <= served.views.trending_minutes, "older minutes are pruned"


def test_a_replayed_batch_changes_nothing(
    served: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    path = serving_views.ServingPath(spark, served, live(served))
    before = {t: keyed_rows(live(served), t) for t in SERVING_TABLES}
    records = read_table(spark, bronze_table(served)).limit(500)
    by_topic = lambda topic: records.where(F.col("topic") == topic)  # noqa: E731
    facts = path.facts(by_topic, serving_views.first_copies).toArrow().to_pylist()
    assert any(f["view"] != "_seen" for f in facts)
    assert path.fold(facts) == dict.fromkeys(SERVING_VIEWS, 0)
    assert {t: keyed_rows(live(served), t) for t in SERVING_TABLES} == before


def test_fact_messages_carry_the_same_facts_as_fact_rows(
    served: Settings, spark: SparkSession
) -> None:
    """The real-time path hands facts over as a JSON message per record: decoded, they
    are the rows, types and nulls included, that the micro-batch path folds."""
    path = serving_views.ServingPath(spark, served, live(served))
    records = read_table(spark, bronze_table(served))
    first = records.where(F.col("offset") < 200)  # the same rows for both computations
    by_topic = lambda topic: first.where(F.col("topic") == topic)  # noqa: E731
    rows = path.facts(by_topic, serving_views.first_copies).toArrow().to_pylist()
    messages = path.facts(by_topic, serving_views.first_copies, fact_messages).collect()
    decoded = [f for m in messages for f in decode_facts(m["value"])]
    in_order = lambda facts: sorted(facts, key=lambda f: sorted(map(str, f.items())))  # noqa: E731
    assert {f["view"] for f in rows} >= {"_seen", "item_ratings", "sales_by_region"}
    assert in_order(decoded) == in_order(rows)
    # One message per record, keyed by its topic and partition.
    assert len(messages) == sum(f["view"] == "_seen" for f in rows)
    assert all(
        m["key"] == f"{f['topic']}:{f['partition']}"
        for m in messages[:50]
        for f in decode_facts(m["value"])
    )


def test_a_lost_checkpoint_resumes_after_the_stores_positions(
    served: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    checkpoint = served.lake.checkpoint(serving_views.CHECKPOINT)
    kept = tmp_path / "checkpoint"
    shutil.move(checkpoint, kept)
    before = {t: keyed_rows(live(served), t) for t in SERVING_TABLES}
    try:
        path = serving_views.ServingPath(spark, served, live(served))
        query = path.start(StreamTrigger(available_now=True))
        query.awaitTermination()
        read = sum(p["numInputRows"] for p in query.recentProgress)
    finally:
        shutil.rmtree(checkpoint, ignore_errors=True)
        shutil.move(kept, checkpoint)
    assert query.exception() is None
    assert read == 0, "a new checkpoint starts where the store's positions are"
    assert {t: keyed_rows(live(served), t) for t in SERVING_TABLES} == before


# Last in the module: it adds a rating to the topics the tests above compared.
def test_a_posted_rating_is_read_back_through_kafka_and_the_serving_path(
    served: Settings, spark: SparkSession
) -> None:
    token = "serving-test-token"
    settings = served.model_copy(
        update={
            "serve": served.serve.model_copy(
                update={"api_token": token, "consistency_wait_s": 300.0}
            )
        }
    )
    store = live(served)
    sku = max(store.rows("item_ratings"), key=lambda d: d["ratings_count"])["sku"]
    customer = store.rows("customers")[0]["customer_id"]
    query = serving_views.ServingPath(spark, settings, store).start(
        StreamTrigger(False, "0 seconds")
    )
    publisher = RatingPublisher(settings.kafka.bootstrap, timeout_s=30.0)
    server, url = start_background(settings, store=store, publisher=publisher)
    try:
        with httpx.Client(base_url=url, timeout=600.0) as http:
            before = http.get(f"/v1/items/{sku}").json()
            posted = http.post(
                f"/v1/items/{sku}/ratings",
                json={"customer_id": customer, "stars": 5},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert posted.status_code == 202, posted.text
            accepted = posted.json()
            read = http.get(
                f"/v1/items/{sku}", params={"consistency_token": accepted["consistency_token"]}
            ).json()
    finally:
        server.stop()
        query.stop()
        publisher.close()
    assert query.exception() is None
    assert read["consistency"]["token_satisfied"] is True, read["consistency"]
    assert read["ratings_count"] == before["ratings_count"] + 1
    assert read["histogram"]["5"] == before["histogram"]["5"] + 1
    # The API stamps the rating with the current time: newer than any generated one.
    assert read["last_ratings"][0]["event_id"] == accepted["event_id"]
    positions = store.positions("item_ratings", accepted["topic"])
    assert positions[accepted["partition"]] >= accepted["offset"]
