"""The serving views' folds on small in-memory facts: batching does not change the
result, replays change nothing, and each view counts what it should."""

from __future__ import annotations

from pathlib import Path

from retailstream.config import ViewsSettings
from retailstream.views.folds import (
    Catalogue,
    fold_inventory,
    fold_item_ratings,
    fold_sales,
    rank_trending,
)
from retailstream.views.serving import apply_facts, seed_inventory
from retailstream.views.store import SqliteStore

SETTINGS = ViewsSettings(last_ratings=2, trending_minutes=2, trending_top=1, low_stock_threshold=2)
CATALOGUE = Catalogue(
    products={
        "SKU-1": {"sku": "SKU-1", "name": "Shirt", "category": "shirts"},
        "SKU-2": {"sku": "SKU-2", "name": "Coat", "category": "coats"},
        "SKU-3": {"sku": "SKU-3", "name": "Blouse", "category": "shirts"},
    },
    stores={"ST-1": {"store_id": "ST-1", "region": "iberia", "city": "Madrid"}},
)


def _rating(offset: int, stars: int, time: str, sku: str = "SKU-1") -> dict:
    return {
        "view": "item_ratings", "topic": "shop.ratings", "partition": 0, "offset": offset,
        "sku": sku, "event_id": f"e{offset}", "customer_id": "C-1", "stars": stars,
        "event_time": time,
    }  # fmt: skip


def _seen(topic: str, partition: int, offset: int) -> dict:
    return {"view": "_seen", "topic": topic, "partition": partition, "offset": offset}


RATINGS = [
    _rating(0, 5, "2026-06-01T09:00:01.000000"),
    _rating(1, 3, "2026-06-01T09:00:03.000000"),
    _rating(2, 4, "2026-06-01T09:00:02.000000"),
]


def test_item_ratings_fold_the_same_in_one_batch_or_several() -> None:
    whole = fold_item_ratings(None, RATINGS, CATALOGUE, SETTINGS)
    first = fold_item_ratings(None, RATINGS[2:], CATALOGUE, SETTINGS)
    assert fold_item_ratings(first, RATINGS[:2], CATALOGUE, SETTINGS) == whole
    assert whole["ratings_count"] == 3 and whole["average_stars"] == 4.0
    assert whole["histogram"] == {"1": 0, "2": 0, "3": 1, "4": 1, "5": 1}
    # newest first, cut to views.last_ratings
    assert [r["event_id"] for r in whole["last_ratings"]] == ["e1", "e2"]
    assert whole["name"] == "Shirt" and whole["category"] == "shirts"


def test_sales_count_late_orders_apart_and_sum_cents_exactly() -> None:
    base = {"window_start": "2026-06-01T09:00:00", "window_end": "2026-06-01T09:01:00"}
    orders = [
        {**base, "store_id": "ST-1", "cents": 1010, "units": 1, "late": False},
        {**base, "store_id": "ST-1", "cents": 2020, "units": 2, "late": False},
        {**base, "store_id": "ST-1", "cents": 999, "units": 9, "late": True},
    ]
    row = fold_sales(
        fold_sales(None, orders[:1], CATALOGUE, SETTINGS), orders[1:], CATALOGUE, SETTINGS
    )
    assert (row["revenue_cents"], row["revenue"], row["orders"], row["units"]) == (3030, 30.3, 2, 3)
    assert row["late_orders"] == 1 and row["region"] == "iberia"
    online = fold_sales(None, [{**orders[0], "store_id": "ONLINE"}], CATALOGUE, SETTINGS)
    assert online["region"] == "online"


def test_inventory_is_initial_plus_deliveries_minus_sales() -> None:
    row = fold_inventory(
        None, [{"store_id": "ST-1", "sku": "SKU-1", "initial": 5}], CATALOGUE, SETTINGS
    )
    row = fold_inventory(
        row,
        [
            {"store_id": "ST-1", "sku": "SKU-1", "sold": 4},
            {"store_id": "ST-1", "sku": "SKU-1", "delivered": 1},
        ],
        CATALOGUE,
        SETTINGS,
    )
    assert (row["initial"], row["delivered"], row["sold"], row["on_hand"]) == (5, 1, 4, 2)
    assert row["low_stock"] is True


def test_trending_ranks_the_last_minutes_per_category() -> None:
    activity = [
        {"minute": "2026-06-01T09:00:00", "sku": "SKU-1", "add_to_cart": 9, "ordered_units": 0},
        {"minute": "2026-06-01T09:01:00", "sku": "SKU-3", "add_to_cart": 1, "ordered_units": 1},
        {"minute": "2026-06-01T09:02:00", "sku": "SKU-1", "add_to_cart": 1, "ordered_units": 0},
        {"minute": "2026-06-01T09:02:00", "sku": "SKU-2", "add_to_cart": 0, "ordered_units": 3},
    ]
    ranked = rank_trending(activity, CATALOGUE, SETTINGS)
    # The window is 09:01 and 09:02: SKU-1's nine carts at 09:00 are out of it.
    assert [(r["category"], r["rank"], r["sku"], r["score"]) for r in ranked] == [
        ("coats", 1, "SKU-2", 3.0),
        ("shirts", 1, "SKU-3", 2.0),
    ]
    assert ranked[0]["window_start"] == "2026-06-01T09:01:00"
    assert ranked[0]["window_end"] == "2026-06-01T09:03:00"


def _activity(offset: int, minute: str, sku: str, carts: int, units: int) -> dict:
    return {
        "view": "trending_items", "topic": "shop.clickstream", "partition": 0, "offset": offset,
        "minute": f"2026-06-01T{minute}:00", "sku": sku, "add_to_cart": carts,
        "ordered_units": units,
    }  # fmt: skip


def test_the_store_ranks_trending_as_rank_trending_does_over_the_same_activity(
    tmp_path: Path,
) -> None:
    # The store sums the window per sku in SQL; rank_trending sums the rows in
    # Python. Two folds: the second moves the window past 09:00's carts.
    store = SqliteStore(tmp_path / "views.db")
    first = [_activity(1, "09:00", "SKU-1", 9, 0), _activity(2, "09:00", "SKU-3", 1, 0)]
    second = [
        _activity(3, "09:02", "SKU-3", 1, 1),
        _activity(4, "09:02", "SKU-1", 1, 0),
        _activity(5, "09:02", "SKU-2", 0, 3),
    ]
    applied = []
    for facts in (first, second):
        apply_facts(store, facts, ["trending_items"], CATALOGUE, SETTINGS)
        applied.extend(facts)
        expected = rank_trending(applied, CATALOGUE, SETTINGS)
        assert store.rows("trending_items", order_by=("category", "rank")) == expected
    assert [(r["sku"], r["add_to_cart"], r["ordered_units"]) for r in expected] == [
        ("SKU-2", 0, 3),
        ("SKU-3", 1, 1),
    ]
    # What fell out of the window is pruned from the activity the ranking reads.
    assert {r["minute"] for r in store.rows("trending_activity")} == {"2026-06-01T09:02:00"}


def test_a_replayed_or_half_replayed_batch_changes_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "views.db")
    batch = [*RATINGS, _seen("shop.ratings", 0, 2)]
    assert apply_facts(store, batch, ["item_ratings"], CATALOGUE, SETTINGS) == {"item_ratings": 3}
    once = store.rows("item_ratings")
    assert apply_facts(store, batch, ["item_ratings"], CATALOGUE, SETTINGS) == {"item_ratings": 0}
    # A batch that overlaps what was applied: only the new offset counts.
    later = [RATINGS[2], _rating(3, 1, "2026-06-01T09:00:04.000000"), _seen("shop.ratings", 0, 3)]
    assert apply_facts(store, later, ["item_ratings"], CATALOGUE, SETTINGS) == {"item_ratings": 1}
    (doc,) = store.rows("item_ratings")
    assert doc["ratings_count"] == once[0]["ratings_count"] + 1
    assert store.positions("item_ratings", "shop.ratings") == {0: 3}


def test_a_failed_transaction_leaves_rows_and_positions_as_they_were(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "views.db")
    apply_facts(
        store, [*RATINGS, _seen("shop.ratings", 0, 2)], ["item_ratings"], CATALOGUE, SETTINGS
    )
    before = (store.rows("item_ratings"), store.positions("item_ratings", "shop.ratings"))
    broken = [_rating(3, 9, "2026-06-01T09:00:04.000000"), _seen("shop.ratings", 0, 3)]
    try:  # 9 stars has no histogram bucket: the fold fails inside the transaction
        apply_facts(store, broken, ["item_ratings"], CATALOGUE, SETTINGS)
    except KeyError:
        pass
    else:
        raise AssertionError("the fold should have failed")
    assert (store.rows("item_ratings"), store.positions("item_ratings", "shop.ratings")) == before


def test_initial_stock_is_seeded_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "views.db")
    stock = [{"store_id": "ST-1", "sku": "SKU-1", "on_hand": 5}]
    assert seed_inventory(store, stock, CATALOGUE, SETTINGS) == 1
    assert seed_inventory(store, stock, CATALOGUE, SETTINGS) == 0
    (row,) = store.rows("inventory_positions")
    assert (row["initial"], row["on_hand"], row["low_stock"]) == (5, 5, False)
