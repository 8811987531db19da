"""The API's batched PostgreSQL look-ups: the same answers as one look-up at a time,
fewer round trips than requests under concurrency, and errors that reach every waiter."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from retailstream.postgres_server import READER_ROLE, LocalPostgres
from retailstream.serve.queries import ITEM_VIEWS
from retailstream.views.postgres_batched import BatchedKeyReads, batch_sql
from support import fresh_postgres_store, postgres_reader

SKUS = [f"SKU-{n:03d}" for n in range(40)]


def _fill(server: LocalPostgres) -> None:
    store = fresh_postgres_store(server)
    store.replace("products", [{"sku": s, "name": s, "category": "shirts"} for s in SKUS])
    rated = [{"sku": s, "category": "shirts", "ratings_count": n} for n, s in enumerate(SKUS)]
    with store.batch() as tx:
        tx.put("item_ratings", rated[::2])  # every other product is rated


def test_many_concurrent_lookups_answer_as_get_each_in_fewer_round_trips(
    postgres_server: LocalPostgres,
) -> None:
    _fill(postgres_server)
    asked = [*SKUS, *SKUS[:10], "SKU-unknown", "SKU-\x00nul"]
    reader = postgres_reader(postgres_server)
    expected = [reader.get_each([(v, {"sku": sku}) for v in ITEM_VIEWS]) for sku in asked]
    reads = BatchedKeyReads(postgres_server.conninfo(READER_ROLE), ITEM_VIEWS)

    async def ask_all() -> list[list[dict | None]]:
        try:
            return await asyncio.gather(*(reads.get(sku) for sku in asked))
        finally:
            await reads.aclose()

    answers = asyncio.run(ask_all())
    assert answers == expected
    assert [a[1] is not None for a in answers[:4]] == [True, False, True, False]
    assert answers[-2] == [None, None] and answers[-1] == [None, None]
    # Asked in one turn of the loop, before the reading task first ran: one statement.
    assert reads.statements == 1


def test_a_dropped_connection_is_opened_again_and_a_refused_one_reaches_every_waiter(
    postgres_server: LocalPostgres,
) -> None:
    _fill(postgres_server)
    dsn = postgres_server.conninfo(READER_ROLE)
    reads = BatchedKeyReads(dsn, ITEM_VIEWS)

    async def dropped_then_asked() -> list[list[dict | None]]:
        await reads.get(SKUS[0])  # connected
        assert reads._db is not None
        with psycopg.connect(dsn, autocommit=True) as other:  # as a server restart would
            other.execute("SELECT pg_terminate_backend(%s)", (reads._db.info.backend_pid,))
        try:
            return await asyncio.gather(*(reads.get(s) for s in SKUS[:5]))
        finally:
            await reads.aclose()

    again = asyncio.run(dropped_then_asked())
    assert [a[0]["sku"] for a in again] == SKUS[:5]  # type: ignore[index]
    assert reads.statements == 3  # the first look-up, the five's that failed, its retry

    wrong = BatchedKeyReads(dsn.replace("password=", "password=x"), ITEM_VIEWS)

    async def refused() -> list[object]:
        return await asyncio.gather(*(wrong.get(s) for s in SKUS[:3]), return_exceptions=True)

    errors = asyncio.run(refused())
    assert len(errors) == 3 and all(isinstance(e, psycopg.OperationalError) for e in errors)
    assert wrong._reading is None  # nothing left waiting


def test_only_single_column_keys_batch() -> None:
    assert batch_sql(["products"]).count("ANY(%(keys)s)") == 1
    with pytest.raises(ValueError, match="sales_by_region has a key of 2 columns"):
        batch_sql(["sales_by_region"])
