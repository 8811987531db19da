"""The query side: answers built from the serving store's views, never from Spark.

Each function reads the rows a view holds (as the gold job wrote them) and
shapes one API answer: look-ups by key, and the small aggregations the
dashboard needs (totals per region and per store, top-N lists). They take a
`ServingStore`, so any store implementation serves the same answers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from retailstream.views.store import ServingStore

STARS = ("1", "2", "3", "4", "5")
# What an item look-up reads, by sku: the catalogue entry, then the ratings document.
ITEM_VIEWS = ("products", "item_ratings")
# A store's id in sales_by_region for orders placed online (no location).
ONLINE = "ONLINE"
_STORE_FIELDS = ("store_id", "city", "region", "country", "lat", "lon")


def _money(value: float) -> float:
    """Sums of prices in floating point: round to the cent so answers compare cleanly."""
    return round(float(value), 2)


def _totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, float | int]:
    revenue, orders, units = 0.0, 0, 0
    for row in rows:
        revenue += float(row.get("revenue") or 0.0)
        orders += int(row.get("orders") or 0)
        units += int(row.get("units") or 0)
    return {"revenue": _money(revenue), "orders": orders, "units": units}


def product(store: ServingStore, sku: str) -> dict[str, Any] | None:
    """The catalogue entry of `sku`; None means the sku is unknown."""
    return store.get("products", sku=sku)


def known_store(store: ServingStore, store_id: str) -> dict[str, Any] | None:
    return store.get("stores", store_id=store_id)


def empty_ratings(item: Mapping[str, Any]) -> dict[str, Any]:
    """The item_ratings document of a product nobody has rated yet."""
    return {
        "sku": item["sku"],
        "name": item.get("name"),
        "category": item.get("category"),
        "ratings_count": 0,
        "average_stars": None,
        "histogram": dict.fromkeys(STARS, 0),
        "last_ratings": [],
    }


def item_ratings(store: ServingStore, sku: str) -> dict[str, Any] | None:
    """The item's ratings document (a zero one when unrated); None for an unknown sku."""
    item = product(store, sku)
    return None if item is None else ratings_of(store, item)


def item_and_ratings(
    store: ServingStore, sku: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The catalogue entry of `sku` (None: unknown) and its ratings document (a zero one
    when unrated), from one call to the store (a network store: one round trip)."""
    item, doc = store.get_each([(view, {"sku": sku}) for view in ITEM_VIEWS])
    return with_ratings(item, doc)


def with_ratings(
    item: dict[str, Any] | None, doc: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(catalogue entry, ratings document) as the API answers them from the two rows
    read: none for an unknown sku, a zero document for an unrated one."""
    if item is None:
        return None, None
    return item, doc or empty_ratings(item)


def ratings_of(store: ServingStore, item: Mapping[str, Any]) -> dict[str, Any]:
    """The ratings document of catalogue entry `item` (a zero one when unrated)."""
    return store.get("item_ratings", sku=item["sku"]) or empty_ratings(item)


def ratings_overview(store: ServingStore, limit: int = 5, min_ratings: int = 3) -> dict[str, Any]:
    """The item_ratings read model at a glance: the best rated items (by average stars,
    among those with at least `min_ratings`; more ratings first on a tie) and the
    newest ratings of all items, newest first."""
    items = store.rows("item_ratings")
    rated = [i for i in items if int(i["ratings_count"]) >= min_ratings]
    rated.sort(key=lambda i: (-float(i["average_stars"]), -int(i["ratings_count"]), i["sku"]))
    newest = [
        {**rating, "sku": item["sku"], "name": item.get("name")}
        for item in items
        for rating in item.get("last_ratings") or []
    ]
    newest.sort(key=lambda r: (str(r["event_time"]), r["event_id"]), reverse=True)
    best = [
        {k: item.get(k) for k in ("sku", "name", "category", "ratings_count", "average_stars")}
        for item in rated[:limit]
    ]
    return {
        "rated_items": len(items),
        "ratings": sum(int(i["ratings_count"]) for i in items),
        "best_rated": best,
        "newest": newest[:limit],
    }


def sales_by_region(store: ServingStore, windows: int = 60) -> dict[str, Any]:
    """Totals per region over every window, and per region a series of its last `windows` windows.

    Regions come ordered by revenue, highest first; a region's series holds
    every one of the last `windows` windows (zeros where it sold nothing), so
    the series of all regions line up on one time axis.
    """
    rows = store.rows("sales_by_region")
    starts = sorted({row["window_start"] for row in rows})[-windows:] if windows > 0 else []
    ends = {row["window_start"]: row["window_end"] for row in rows}
    by_region: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_region[row["region"]].append(row)
    regions: list[dict[str, Any]] = []
    for region, region_rows in by_region.items():
        per_window: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for entry in region_rows:
            per_window[entry["window_start"]].append(entry)
        series = [
            {"window_start": s, "window_end": ends[s], **_totals(per_window.get(s, ()))}
            for s in starts
        ]
        regions.append({"region": region, **_totals(region_rows), "series": series})
    regions.sort(key=lambda r: (-r["revenue"], r["region"]))
    return {
        "total": _totals(rows),
        "windows": [{"window_start": s, "window_end": ends[s]} for s in starts],
        "regions": regions,
    }


def sales_by_store(store: ServingStore) -> dict[str, Any]:
    """Every store with its location and sales totals (the map), plus online sales.

    Stores of the catalogue that sold nothing yet are listed with zeros, so the
    map shows the whole estate from the start. `latest_*` is the store's most
    recent window, the one still filling up.
    """
    rows = store.rows("sales_by_region")
    by_store: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_store[row["store_id"]].append(row)
    places = {s["store_id"]: s for s in store.rows("stores", order_by=("store_id",))}
    for store_id in sorted(set(by_store) - set(places)):
        first = by_store[store_id][0]
        places[store_id] = {field: first.get(field) for field in _STORE_FIELDS}
    answer: list[dict[str, Any]] = []
    for store_id, place in places.items():
        sold = by_store.get(store_id, [])
        latest = max(sold, key=lambda r: r["window_start"], default=None)
        answer.append(
            {
                **{field: place.get(field) for field in _STORE_FIELDS},
                **_totals(sold),
                "latest_window_start": latest and latest["window_start"],
                "latest_window_revenue": _money(latest["revenue"]) if latest else 0.0,
            }
        )
    answer.sort(key=lambda s: (-s["revenue"], s["store_id"]))
    return {"total": _totals(rows), "stores": answer}


def trending(store: ServingStore, category: str | None = None, limit: int = 10) -> dict[str, Any]:
    """The top `limit` items of each category (or of one), by rank, with the window they cover."""
    where = {"category": category} if category else None
    rows = [
        row
        for row in store.rows("trending_items", where=where, order_by=("category", "rank"))
        if int(row["rank"]) <= limit
    ]
    window = max(rows, key=lambda r: str(r.get("window_end")), default={})
    return {
        "categories": sorted({row["category"] for row in rows}),
        "window_start": window.get("window_start"),
        "window_end": window.get("window_end"),
        "items": rows,
    }


def inventory(
    store: ServingStore, store_id: str, low_stock_only: bool = False
) -> dict[str, Any] | None:
    """One store's stock positions by sku; None for an unknown store."""
    place = known_store(store, store_id)
    if place is None:
        return None
    where: dict[str, Any] = {"store_id": store_id}
    if low_stock_only:
        where["low_stock"] = True
    items = store.rows("inventory_positions", where=where, order_by=("sku",))
    low = sum(1 for item in items if item.get("low_stock"))
    return {"store": place, "count": len(items), "low_stock_count": low, "items": items}


def low_stock_alerts(store: ServingStore, limit: int = 50) -> dict[str, Any]:
    """Positions at or below the low-stock threshold, emptiest first (all stores)."""
    items = store.rows("inventory_positions", where={"low_stock": True})
    items.sort(key=lambda i: (int(i.get("on_hand") or 0), i["store_id"], i["sku"]))
    return {"count": len(items), "items": items[:limit]}


def recommendations(store: ServingStore, customer_id: str) -> dict[str, Any] | None:
    """The champion's list for a customer it knows; else the popular items of their
    home region; None for an unknown customer."""
    listed = store.get("recommendations", customer_id=customer_id)
    if listed is not None:
        return {**listed, "source": "model"}
    customer = store.get("customers", customer_id=customer_id)
    if customer is None:
        return None
    region = customer.get("home_region")
    popular = store.get("popular_by_region", region=region)
    if popular is None:  # no recommender trained yet
        return {"customer_id": customer_id, "source": "none", "region": region, "items": []}
    for item in popular["items"]:
        item.setdefault("score", item.get("hits"))
    return {
        "customer_id": customer_id,
        "source": "popular_in_region",
        "model_version": popular.get("model_version"),
        "region": region,
        "items": popular["items"],
    }


def disruption_alerts(store: ServingStore, limit: int = 50) -> dict[str, Any]:
    """Departures the disruption model expects to be late, most likely first."""
    items = store.rows("disruption_alerts")
    items.sort(key=lambda i: (-float(i.get("probability") or 0.0), i["shipment_id"]))
    return {"count": len(items), "items": items[:limit]}
