"""Folding a batch of facts into the serving store: one transaction, exactly once by offsets.

`apply_facts` is what the serving path does with each micro-batch and what
`views rebuild` does with each slice of the event store. Inside one store
transaction, per view, it:

1. drops the facts of records the view has already applied (offset at or
   below the view's stored position of that Kafka partition): a batch
   replayed after a crash, whole or in part, changes nothing; the serving
   path also drops repeated event ids here, against the ids the store has
   seen (`StoreBatch.first_records`), so its Spark query keeps no state;
2. reads the rows the remaining facts touch, folds the facts in
   (`views.folds`) and writes the rows back;
3. moves the view's positions to the highest offsets the batch has read.

So rows and offsets commit together, and the work done is that of the
batch's own facts: nothing is read by scanning history. trending_items is
re-ranked from its per-minute activity, which is cut to the trending window.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from retailstream.config import ViewsSettings
from retailstream.schemas import CONTRACTS_BY_TABLE
from retailstream.views.facts import SEEN, VIEW_SOURCES
from retailstream.views.folds import (
    Catalogue,
    Fact,
    Row,
    fold_activity,
    fold_inventory,
    fold_item_ratings,
    fold_sales,
    initial_position,
    rank_item_totals,
    trending_window,
)
from retailstream.views.store import (
    IN_TRANSACTION,
    SeenRecord,
    StoreTransaction,
    WatermarkBase,
    WritableStore,
)

# The positions of the facts topic's messages the real-time path's folder has
# folded (kept beside the views' own, in the same store transactions).
HANDOVER = "_handover"

Fold = Callable[[Row | None, Sequence[Fact], Catalogue, ViewsSettings], Row]


@dataclass(frozen=True)
class KeyedFold:
    """Where a view's facts land: the store table, its key, and the fold."""

    table: str
    key: tuple[str, ...]
    fold: Fold


KEYED_FOLDS = {
    "item_ratings": KeyedFold("item_ratings", ("sku",), fold_item_ratings),
    "sales_by_region": KeyedFold("sales_by_region", ("window_start", "store_id"), fold_sales),
    "inventory_positions": KeyedFold("inventory_positions", ("store_id", "sku"), fold_inventory),
    "trending_items": KeyedFold("trending_activity", ("minute", "sku"), fold_activity),
}


def view_topics(view: str) -> tuple[str, ...]:
    """The Kafka topics a serving view is folded from."""
    return tuple(CONTRACTS_BY_TABLE[t].topic for t in VIEW_SOURCES[view])


def _fold_keyed(
    tx: StoreTransaction, spec: KeyedFold, facts: Sequence[Fact], fold_args: tuple
) -> None:
    by_key: dict[tuple[Any, ...], list[Fact]] = defaultdict(list)
    for fact in facts:
        by_key[tuple(fact[k] for k in spec.key)].append(fact)
    current = tx.get_many(spec.table, by_key)
    tx.put(
        spec.table,
        [spec.fold(current.get(key), group, *fold_args) for key, group in by_key.items()],
    )


def _rerank_trending(tx: StoreTransaction, catalogue: Catalogue, settings: ViewsSettings) -> None:
    """Cut trending_activity to the window and rank trending_items from it. The
    store sums the window per sku (in SQL, not by decoding each activity row):
    this runs on every fold, and the window holds thousands of rows."""
    newest = tx.largest("trending_activity", "minute")
    if newest is None:
        return
    first, _ = trending_window(newest, settings)
    tx.delete_before("trending_activity", "minute", first)
    totals = tx.sums("trending_activity", "sku", ("add_to_cart", "ordered_units"))
    tx.replace("trending_items", rank_item_totals(totals, newest, catalogue, settings))


def apply_facts(
    store: WritableStore,
    facts: Iterable[Fact],
    views: Sequence[str],
    catalogue: Catalogue,
    settings: ViewsSettings,
    dedup_delay_ms: int | None = None,
    handed_over: tuple[str, Mapping[int, int]] | None = None,
    newest_ms: WatermarkBase = IN_TRANSACTION,
) -> dict[str, int]:
    """Fold `facts` (rows of `views.facts`, `_seen` ones included) into `views`, in
    one transaction; return how many facts each view applied (replays: 0).

    `dedup_delay_ms`: deduplicate the records by event id against the store's
    seen ids, with this lateness bound (the live serving path); None when the
    facts are of distinct events already (a rebuild deduplicates in Spark).
    `handed_over`: (topic, offsets by partition) of the facts topic messages
    these facts came in, recorded as `HANDOVER`'s positions in the same
    transaction (the real-time path's folder resumes after them).
    `newest_ms`: the deduplication watermark's base, when the facts are a slice of a
    batch (`StoreTransaction.first_records`)."""
    by_view: dict[str, list[Fact]] = defaultdict(list)
    seen: dict[str, dict[int, int]] = defaultdict(dict)
    records: list[Fact] = []
    for fact in facts:
        if fact["view"] == SEEN:
            records.append(fact)
            partitions = seen[fact["topic"]]
            partitions[fact["partition"]] = max(
                fact["offset"], partitions.get(fact["partition"], -1)
            )
        else:
            by_view[fact["view"]].append(fact)
    applied: dict[str, int] = {}
    with store.batch() as tx:
        if dedup_delay_ms is not None:
            skipped = tx.first_records(_in_kafka_order(records), dedup_delay_ms, newest_ms)
            if skipped:
                for view, view_facts in by_view.items():
                    by_view[view] = [f for f in view_facts if _place(f) not in skipped]
        for view in views:
            topics = view_topics(view)
            done = {topic: tx.positions(view, topic) for topic in topics}
            fresh = [
                f
                for f in by_view.get(view, ())
                if f["offset"] > done[f["topic"]].get(f["partition"], -1)
            ]
            applied[view] = len(fresh)
            if fresh:
                _fold_keyed(tx, KEYED_FOLDS[view], fresh, (catalogue, settings))
                if view == "trending_items":
                    _rerank_trending(tx, catalogue, settings)
            for topic in topics:
                if seen.get(topic):
                    tx.advance(view, topic, seen[topic])
        if handed_over is not None:
            tx.advance(HANDOVER, *handed_over)
    return applied


def _place(fact: Fact) -> tuple[str, int, int]:
    return (fact["topic"], fact["partition"], fact["offset"])


def _in_kafka_order(records: Iterable[Fact]) -> list[SeenRecord]:
    """The `_seen` facts as deduplication reads them, in Kafka order per partition
    (the first copy read is the one kept, as a rebuild keeps it)."""
    return [
        SeenRecord(f["topic"], f["partition"], f["offset"], f["dedup_key"], f["kafka_ms"])
        for f in sorted(records, key=_place)
    ]


def seed_inventory(
    store: WritableStore,
    initial_stock: Iterable[Mapping[str, Any]],
    catalogue: Catalogue,
    settings: ViewsSettings,
) -> int:
    """Give every (store, sku) of the initial stock its row, once (a view that has
    rows or positions already is left alone); return how many rows were written."""
    with store.batch() as tx:
        started = tx.count("inventory_positions") > 0 or any(
            tx.positions("inventory_positions", topic)
            for topic in view_topics("inventory_positions")
        )
        if started:
            return 0
        return tx.put(
            "inventory_positions",
            [
                initial_position(s["store_id"], s["sku"], int(s["on_hand"]), catalogue, settings)
                for s in initial_stock
            ],
        )
