"""The serving views as folds: a micro-batch's facts folded into the rows they touch (pure).

The serving path (`jobs.serving_views`) and `views rebuild` both turn events
into *facts* (`views.facts`: one small dict per thing a view counts) and hand
them here. Each fold takes a view row as it stands (or None) and the facts of
its key, and returns the new row. Nothing here reads history: a batch costs
what its own facts cost.

Every fold is commutative and associative over facts (sums, counts, maxima,
the newest N by a total order), so folding the same events in other batches,
or all at once, gives the same rows: that is what lets a rebuild from the
event store equal the live views. Money is summed in integer cents for the
same reason: float sums depend on the order of addition.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from retailstream.config import ViewsSettings

ONLINE = "ONLINE"  # the store_id of orders placed online (no store), as in sales_by_region
STARS = ("1", "2", "3", "4", "5")
MINUTE_FORMAT = "%Y-%m-%dT%H:%M:%S"

Row = dict[str, Any]
Fact = Mapping[str, Any]


@dataclass(frozen=True)
class Catalogue:
    """The reference data folds decorate rows with: sku -> product, store_id -> store."""

    products: Mapping[str, Mapping[str, Any]]
    stores: Mapping[str, Mapping[str, Any]]

    def product(self, sku: str) -> Mapping[str, Any]:
        return self.products.get(sku, {})


# ---------------------------------------------------------------------------
# item_ratings: count, average, 1-5 histogram and the newest ratings per sku


def _rating_order(rating: Mapping[str, Any]) -> tuple[str, str]:
    return (rating["event_time"], rating["event_id"])


def fold_item_ratings(
    row: Row | None, facts: Sequence[Fact], catalogue: Catalogue, settings: ViewsSettings
) -> Row:
    """`row` with the ratings in `facts` (sku, event_id, event_time, customer_id, stars)."""
    sku = facts[0]["sku"]
    histogram = dict(row["histogram"]) if row else dict.fromkeys(STARS, 0)
    count = row["ratings_count"] if row else 0
    stars_total = row["stars_total"] if row else 0
    last = list(row["last_ratings"]) if row else []
    for fact in facts:
        count += 1
        stars_total += fact["stars"]
        histogram[str(fact["stars"])] += 1
        last.append(
            {
                "event_id": fact["event_id"],
                "customer_id": fact["customer_id"],
                "stars": fact["stars"],
                "event_time": fact["event_time"],
            }
        )
    last.sort(key=_rating_order, reverse=True)
    product = catalogue.product(sku)
    return {
        "sku": sku,
        "name": product.get("name"),
        "category": product.get("category"),
        "ratings_count": count,
        "stars_total": stars_total,
        "average_stars": round(stars_total / count, 4),
        "histogram": histogram,
        "last_ratings": last[: settings.last_ratings],
    }


# ---------------------------------------------------------------------------
# sales_by_region: revenue, orders, units per store and event-time window


def fold_sales(
    row: Row | None, facts: Sequence[Fact], catalogue: Catalogue, settings: ViewsSettings
) -> Row:
    """`row` with the orders in `facts` (window_start, window_end, store_id, cents,
    units, late). Late orders are counted apart and left out of the sums."""
    first = facts[0]
    cents = row["revenue_cents"] if row else 0
    orders = row["orders"] if row else 0
    units = row["units"] if row else 0
    late = row["late_orders"] if row else 0
    for fact in facts:
        if fact["late"]:
            late += 1
            continue
        cents += fact["cents"]
        orders += 1
        units += fact["units"]
    store_id = first["store_id"]
    place = catalogue.stores.get(store_id, {})
    region = place.get("region") or ("online" if store_id == ONLINE else None)
    return {
        "window_start": first["window_start"],
        "window_end": first["window_end"],
        "region": region,
        "store_id": store_id,
        "city": place.get("city"),
        "country": place.get("country"),
        "lat": place.get("lat"),
        "lon": place.get("lon"),
        "revenue": cents / 100,
        "revenue_cents": cents,
        "orders": orders,
        "units": units,
        "late_orders": late,
    }


# ---------------------------------------------------------------------------
# inventory_positions: initial + delivered - sold per store and sku


def initial_position(
    store_id: str, sku: str, initial: int, catalogue: Catalogue, settings: ViewsSettings
) -> Row:
    """The row of a (store, sku) before any movement."""
    return fold_inventory(
        None, [{"store_id": store_id, "sku": sku, "initial": initial}], catalogue, settings
    )


def fold_inventory(
    row: Row | None, facts: Sequence[Fact], catalogue: Catalogue, settings: ViewsSettings
) -> Row:
    """`row` with the stock movements in `facts` (store_id, sku, and any of
    initial, delivered, sold)."""
    first = facts[0]
    initial = row["initial"] if row else 0
    delivered = row["delivered"] if row else 0
    sold = row["sold"] if row else 0
    for fact in facts:
        initial += fact.get("initial") or 0
        delivered += fact.get("delivered") or 0
        sold += fact.get("sold") or 0
    on_hand = initial + delivered - sold
    product = catalogue.product(first["sku"])
    return {
        "store_id": first["store_id"],
        "sku": first["sku"],
        "name": product.get("name"),
        "category": product.get("category"),
        "initial": initial,
        "delivered": delivered,
        "sold": sold,
        "on_hand": on_hand,
        "low_stock": on_hand <= settings.low_stock_threshold,
    }


# ---------------------------------------------------------------------------
# trending_items: add-to-cart and ordered units per minute, top K per category


def fold_activity(
    row: Row | None, facts: Sequence[Fact], catalogue: Catalogue, settings: ViewsSettings
) -> Row:
    """A (minute, sku) activity row with the carts and ordered units in `facts`."""
    first = facts[0]
    carts = (row["add_to_cart"] if row else 0) + sum(f.get("add_to_cart") or 0 for f in facts)
    units = (row["ordered_units"] if row else 0) + sum(f.get("ordered_units") or 0 for f in facts)
    return {
        "minute": first["minute"],
        "sku": first["sku"],
        "add_to_cart": carts,
        "ordered_units": units,
    }


def _minute(text: str) -> datetime:
    return datetime.strptime(text, MINUTE_FORMAT)


def trending_window(newest_minute: str, settings: ViewsSettings) -> tuple[str, str]:
    """(first minute kept, window end) of the `trending_minutes` up to `newest_minute`."""
    newest = _minute(newest_minute)
    first = newest - timedelta(minutes=settings.trending_minutes - 1)
    end = newest + timedelta(minutes=1)
    return first.strftime(MINUTE_FORMAT), end.strftime(MINUTE_FORMAT)


def rank_trending(
    activity: Iterable[Mapping[str, Any]], catalogue: Catalogue, settings: ViewsSettings
) -> list[Row]:
    """The top `trending_top` items per category by carts plus units ordered over
    the minutes of `activity` (already cut to the window), with the window."""
    rows = list(activity)
    if not rows:
        return []
    newest = max(r["minute"] for r in rows)
    first, _ = trending_window(newest, settings)
    totals: dict[str, tuple[int, int]] = {}
    for r in rows:
        if r["minute"] >= first:
            carts, units = totals.get(r["sku"], (0, 0))
            totals[r["sku"]] = (carts + r["add_to_cart"], units + r["ordered_units"])
    return rank_item_totals(totals, newest, catalogue, settings)


def rank_item_totals(
    totals: Mapping[str, tuple[int, ...]],
    newest_minute: str,
    catalogue: Catalogue,
    settings: ViewsSettings,
) -> list[Row]:
    """The top `trending_top` items per category from each sku's (carts, units
    ordered) over the trending window that ends with `newest_minute`."""
    first, end = trending_window(newest_minute, settings)
    by_category: dict[str, list[tuple[float, str, int, int]]] = defaultdict(list)
    for sku, (carts, units) in totals.items():
        product = catalogue.products.get(sku)
        score = float(carts + units)
        if product is not None and score > 0:
            by_category[product["category"]].append((score, sku, carts, units))
    ranked = []
    for category, items in sorted(by_category.items()):
        items.sort(key=lambda item: (-item[0], item[1]))
        for rank, (score, sku, carts, units) in enumerate(items[: settings.trending_top], 1):
            ranked.append(
                {
                    "category": category,
                    "rank": rank,
                    "sku": sku,
                    "name": catalogue.products[sku].get("name"),
                    "add_to_cart": carts,
                    "ordered_units": units,
                    "score": score,
                    "window_start": first,
                    "window_end": end,
                }
            )
    return ranked
