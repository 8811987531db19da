"""The API's item look-up (a product and its ratings document) as the event loop awaits it.

On SQLite the look-up is two primary-key reads of a local file, done on the loop:
they cost less than a hop to a thread would. On PostgreSQL it is a round trip,
which the loop awaits, gathering the look-ups of concurrent requests into the
next one (`BatchedKeyReads`).
"""

from __future__ import annotations

from typing import Any

from retailstream.serve import queries
from retailstream.views.store import ServingStore

ItemAndRatings = tuple[dict[str, Any] | None, dict[str, Any] | None]


class ItemLookups:
    """`item_and_ratings(sku)` of `store`, awaited; `aclose()` ends what it opened."""

    def __init__(self, store: ServingStore) -> None:
        from retailstream.views.postgres_batched import BatchedKeyReads
        from retailstream.views.postgres_store import PostgresStore

        self.store = store
        self._batched = (
            BatchedKeyReads(store.dsn, queries.ITEM_VIEWS)
            if isinstance(store, PostgresStore)
            else None
        )

    async def item_and_ratings(self, sku: str) -> ItemAndRatings:
        """As `queries.item_and_ratings`: (None, None) for an unknown sku."""
        if self._batched is None:
            return queries.item_and_ratings(self.store, sku)
        item, doc = await self._batched.get(sku)
        return queries.with_ratings(item, doc)

    async def aclose(self) -> None:
        if self._batched is not None:
            await self._batched.aclose()
