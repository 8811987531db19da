"""The PostgreSQL serving store under the serving path's per-task writes: slices of one
batch fold at once into the same rows and event ids, and end where SQLite's single
writer ends; a replayed slice changes nothing; every slice of a batch deduplicates
against the batch's watermark, whatever the slices before it committed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from retailstream.config import ViewsSettings
from retailstream.postgres_server import LocalPostgres
from retailstream.views.folds import Catalogue
from retailstream.views.postgres_store import PostgresStore
from retailstream.views.serving import apply_facts
from retailstream.views.store import SqliteStore, WritableStore
from support import fresh_postgres_store, keyed_rows

TOPIC = "shop.ratings"
HOUR_MS = 3_600_000
SETTINGS = ViewsSettings(last_ratings=5)
SKUS = ("SKU-1", "SKU-2", "SKU-3")
CATALOGUE = Catalogue(
    products={sku: {"sku": sku, "name": sku, "category": "shirts"} for sku in SKUS}, stores={}
)


def _rating(partition: int, offset: int, event_id: str, kafka_ms: int) -> list[dict[str, Any]]:
    where = {"topic": TOPIC, "partition": partition, "offset": offset}
    return [
        {
            "view": "item_ratings", **where, "sku": SKUS[offset % 3], "event_id": event_id,
            "customer_id": f"C-{offset}", "stars": 1 + offset % 5,
            "event_time": f"2026-06-01T09:{offset // 60 % 60:02d}:{offset % 60:02d}",
        },
        {"view": "_seen", **where, "dedup_key": event_id, "kafka_ms": kafka_ms},
    ]  # fmt: skip


def _slices(partitions: int, batches: int, per_batch: int) -> list[list[list[dict]]]:
    """Per batch, per partition, the facts of its records. Every 7th record repeats an
    event id of another partition (a producer's retry), so slices race to claim it."""
    out = []
    for b in range(batches):
        batch = []
        for p in range(partitions):
            facts = []
            for i in range(per_batch):
                offset = b * per_batch + i
                shared = offset % 7 == 0
                event_id = f"e-{offset}" if shared else f"e-{p}-{offset}"
                facts += _rating(p, offset, event_id, 1_000 * offset)
            batch.append(facts)
        out.append(batch)
    return out


def _fold(store: WritableStore, facts: list[dict], newest_ms: int | None = None) -> dict:
    if isinstance(store, SqliteStore):
        return apply_facts(store, facts, ("item_ratings",), CATALOGUE, SETTINGS, HOUR_MS)
    return apply_facts(
        store, facts, ("item_ratings",), CATALOGUE, SETTINGS, HOUR_MS, newest_ms=newest_ms
    )


@pytest.fixture
def postgres(postgres_server: LocalPostgres) -> PostgresStore:
    store = fresh_postgres_store(postgres_server)
    assert isinstance(store, PostgresStore)
    return store


def test_slices_folded_at_once_end_where_one_writer_ends(
    postgres: PostgresStore, tmp_path: Path
) -> None:
    batches = _slices(partitions=4, batches=6, per_batch=40)
    for batch_id, batch in enumerate(batches):
        base = postgres.batch_watermark("test", batch_id)
        # Each slice on its own thread and connection, as tasks on executors.
        stores = [PostgresStore(postgres.dsn, writer=False) for _ in batch]
        threads = [
            threading.Thread(target=_fold, args=(store, facts, base))
            for store, facts in zip(stores, batch, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    sqlite = SqliteStore(tmp_path / "views.db")
    for batch in batches:
        _fold(sqlite, [fact for facts in batch for fact in facts])
    rows = keyed_rows(postgres, "item_ratings")
    assert rows == keyed_rows(sqlite, "item_ratings")
    # Every record counted once: the ids shared by partitions count one each.
    records = sum(len(facts) // 2 for batch in batches for facts in batch)
    shared = sum(1 for offset in range(6 * 40) if offset % 7 == 0)
    assert sum(r["ratings_count"] for r in rows.values()) == records - 3 * shared
    assert postgres.positions("item_ratings", TOPIC) == {p: 6 * 40 - 1 for p in range(4)}


def test_a_replayed_slice_changes_nothing(postgres: PostgresStore) -> None:
    (batch,) = _slices(partitions=2, batches=1, per_batch=30)
    for facts in batch:
        _fold(postgres, facts)
    before = keyed_rows(postgres, "item_ratings")
    assert _fold(postgres, batch[1]) == {"item_ratings": 0}
    assert keyed_rows(postgres, "item_ratings") == before


def test_every_slice_takes_the_batchs_watermark(postgres: PostgresStore) -> None:
    # The first batch's slices: partition 0 holds an hour and a half of Kafka time,
    # partition 1 only its first minutes. Folded one after the other with the batch's
    # watermark (none yet), partition 1 keeps its records; with a watermark read from
    # what partition 0 committed, they would be dropped as late.
    early = [f for i in range(5) for f in _rating(1, i, f"p1-{i}", 60_000 * i)]
    late = [f for i in range(5) for f in _rating(0, i, f"p0-{i}", 30 * 60_000 * (i + 1))]
    base = postgres.batch_watermark("test", 0)
    assert base is None
    assert _fold(postgres, late, base) == {"item_ratings": 5}
    assert postgres.batch_watermark("test", 0) is None, "fixed when the batch first ran"
    assert _fold(postgres, early, base) == {"item_ratings": 5}
    # The next batch's watermark comes from all of the first: now partition 1's old
    # times are behind it.
    next_base = postgres.batch_watermark("test", 1)
    assert next_base == 30 * 60_000 * 5
    stale = _rating(1, 9, "p1-9", 60_000)
    assert _fold(postgres, stale, next_base) == {"item_ratings": 0}
