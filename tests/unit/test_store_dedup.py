"""The serving path's deduplication in the store: the first copy of an event id is
folded, repeats and records behind the watermark are not, a replayed batch keeps
what it kept, and old ids are forgotten once the watermark has passed them. And
where a serving query with a new checkpoint starts: after the store's positions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retailstream.config import ViewsSettings
from retailstream.io.kafka_source import starting_after
from retailstream.views.folds import Catalogue
from retailstream.views.serving import apply_facts
from retailstream.views.store import SeenRecord, SqliteStore

pytestmark = pytest.mark.unit

TOPIC = "shop.ratings"
HOUR_MS = 3_600_000
SETTINGS = ViewsSettings(last_ratings=5)
CATALOGUE = Catalogue(products={"SKU-1": {"sku": "SKU-1", "category": "shirts"}}, stores={})


def _record(partition: int, offset: int, key: str, kafka_ms: int) -> SeenRecord:
    return SeenRecord(TOPIC, partition, offset, key, kafka_ms)


def _first(store: SqliteStore, records: list[SeenRecord], delay_ms: int = HOUR_MS) -> set:
    with store.batch() as tx:
        return tx.first_records(records, delay_ms)


def test_repeats_within_a_batch_and_across_batches_are_skipped(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "views.db")
    skipped = _first(
        store, [_record(0, 1, "a", 1_000), _record(0, 2, "b", 1_000), _record(1, 7, "a", 1_100)]
    )
    assert skipped == {(TOPIC, 1, 7)}
    skipped = _first(store, [_record(2, 3, "b", 2_000), _record(2, 4, "c", 2_000)])
    assert skipped == {(TOPIC, 2, 3)}


def test_the_same_id_on_another_topic_is_another_event(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "views.db")
    _first(store, [_record(0, 1, "a", 1_000)])
    with store.batch() as tx:
        assert tx.first_records([SeenRecord("shop.orders", 0, 1, "a", 1_000)], HOUR_MS) == set()


def test_a_replayed_batch_keeps_what_it_kept(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "views.db")
    batch = [_record(0, 1, "a", 1_000), _record(0, 2, "a", 1_000), _record(0, 3, "b", 1_000)]
    assert _first(store, batch) == {(TOPIC, 0, 2)}
    assert _first(store, batch) == {(TOPIC, 0, 2)}
    assert _first(store, batch[1:]) == {(TOPIC, 0, 2)}


def test_records_behind_the_watermark_are_skipped_and_old_ids_forgotten(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "views.db")
    _first(store, [_record(0, 1, "old", 0), _record(0, 2, "new", 3 * HOUR_MS)])
    # The watermark is now 2 h: a record stamped 1 h is late, whatever its id.
    assert _first(store, [_record(0, 3, "late", HOUR_MS)]) == {(TOPIC, 0, 3)}
    # "old" (0 h) was forgotten when the watermark passed it by the delay: its id
    # is new again, as Spark's dropDuplicatesWithinWatermark would have it.
    assert _first(store, [_record(0, 4, "old", 3 * HOUR_MS)]) == set()
    assert _first(store, [_record(0, 5, "new", 3 * HOUR_MS)]) == {(TOPIC, 0, 5)}


def _rating(partition: int, offset: int, event_id: str, stars: int) -> list[dict]:
    where = {"topic": TOPIC, "partition": partition, "offset": offset}
    return [
        {
            "view": "item_ratings", **where, "sku": "SKU-1", "event_id": event_id,
            "customer_id": "C-1", "stars": stars, "event_time": f"2026-06-01T09:00:0{offset}",
        },
        {"view": "_seen", **where, "dedup_key": event_id, "kafka_ms": 1_000 + offset},
    ]  # fmt: skip


def test_a_fold_with_deduplication_counts_each_event_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "views.db")
    facts = [*_rating(0, 1, "e1", 5), *_rating(1, 1, "e1", 5), *_rating(0, 2, "e2", 3)]
    applied = apply_facts(store, facts, ["item_ratings"], CATALOGUE, SETTINGS, HOUR_MS)
    assert applied == {"item_ratings": 2}
    row = store.get("item_ratings", sku="SKU-1")
    assert row is not None
    assert row["ratings_count"] == 2
    again = [*_rating(1, 2, "e2", 3), *_rating(0, 3, "e3", 1)]
    assert apply_facts(store, again, ["item_ratings"], CATALOGUE, SETTINGS, HOUR_MS) == {
        "item_ratings": 1
    }
    row = store.get("item_ratings", sku="SKU-1")
    assert row is not None
    assert row["ratings_count"] == 3
    # Every record was read, repeats included: tokens for them resolve.
    assert store.positions("item_ratings", TOPIC) == {0: 3, 1: 2}


def test_a_new_checkpoint_starts_after_what_the_store_applied() -> None:
    assert starting_after(TOPIC, {}, [0, 1, 2]) == "earliest"
    starts = json.loads(starting_after(TOPIC, {0: 41, 2: 0}, [0, 1, 2]))
    # Every partition is named, as Spark requires; -2 is Spark's "earliest".
    assert starts == {TOPIC: {"0": 42, "1": -2, "2": 1}}
