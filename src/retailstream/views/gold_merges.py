"""How a gold view takes a micro-batch: its rows' deltas MERGEd into the stored rows (pure).

The gold query (`jobs.build_views`) computes a view's rows from the batch's
own facts only (`views.definitions`), then MERGEs them by key: a key seen
before gets the stored row combined with the batch's, a new key is inserted.
Each view here says how two rows of the same key combine. Every combination
is a sum, a histogram sum or the newest N of a merged list, so combining
batch by batch gives what computing from all facts at once gives: that is
what lets `views rebuild-gold` equal the stream.

`prune_on` names a key column that grows with time (a window's start): the
MERGE condition also bounds it below by the batch's smallest value, so Delta
skips the files of older windows and a batch's cost does not grow with the
number of windows stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column

from retailstream.config import ViewsSettings


@dataclass(frozen=True)
class GoldMerge:
    """`updates`: column -> SQL expression over `t` (the stored row) and `s` (the batch's)."""

    key: tuple[str, ...]
    updates: dict[str, str | Column]
    prune_on: str | None = None


def _sum(*columns: str) -> dict[str, str | Column]:
    return {c: f"t.`{c}` + s.`{c}`" for c in columns}


def _from_batch(*columns: str) -> dict[str, str]:
    return {c: f"s.`{c}`" for c in columns}


# The newest first, as `definitions.item_ratings` sorts them (event_ids are unique after
# deduplication, so (event_time, event_id) is a total order).
_NEWEST_FIRST = (
    "(l, r) -> CASE WHEN l.event_time > r.event_time THEN -1 "
    "WHEN l.event_time < r.event_time THEN 1 "
    "WHEN l.event_id > r.event_id THEN -1 WHEN l.event_id < r.event_id THEN 1 ELSE 0 END"
)


def item_ratings(settings: ViewsSettings) -> GoldMerge:
    histogram = (
        "map_zip_with(t.histogram, s.histogram, (k, a, b) -> coalesce(a, 0) + coalesce(b, 0))"
    )
    count = "t.ratings_count + s.ratings_count"
    # The exact sum of stars is in the histogram: the average is recomputed from it,
    # never averaged from two averages.
    stars = f"aggregate(map_entries({histogram}), 0L, (total, e) -> total + cast(e.key AS BIGINT) * e.value)"
    return GoldMerge(
        ("sku",),
        {
            **_from_batch("name", "category"),
            "ratings_count": count,
            "average_stars": f"round({stars} / ({count}), 4)",
            "histogram": histogram,
            "last_ratings": (
                f"slice(array_sort(concat(t.last_ratings, s.last_ratings), {_NEWEST_FIRST}), "
                f"1, {settings.last_ratings})"
            ),
        },
    )


def sales_by_region() -> GoldMerge:
    return GoldMerge(
        ("window_start", "store_id"),
        {
            **_from_batch("window_end", "region", "city", "country", "lat", "lon"),
            "revenue": "round(t.revenue + s.revenue, 2)",
            **_sum("orders", "units", "late_orders"),
        },
        prune_on="window_start",
    )


def inventory_positions(settings: ViewsSettings) -> GoldMerge:
    # The batch's row of a stored key carries that key's initial stock again: only its
    # movements are added. A key never stored is inserted whole, initial stock included.
    on_hand = "t.on_hand + s.delivered - s.sold"
    return GoldMerge(
        ("store_id", "sku"),
        {
            **_sum("delivered", "sold"),
            "on_hand": on_hand,
            "low_stock": f"({on_hand}) <= {settings.low_stock_threshold}",
        },
    )


def trending_activity() -> GoldMerge:
    """The per-minute activity trending_items is ranked from (`gold/trending_activity`)."""
    return GoldMerge(("minute", "sku"), _sum("add_to_cart", "ordered_units"), prune_on="minute")


def keyed_merges(settings: ViewsSettings) -> dict[str, GoldMerge]:
    """The MERGE of each keyed gold view (trending_items is re-ranked, not merged)."""
    return {
        "item_ratings": item_ratings(settings),
        "sales_by_region": sales_by_region(),
        "inventory_positions": inventory_positions(settings),
    }
