"""Key look-ups of many concurrent requests in one PostgreSQL round trip (the API's item look-up).

A worker of the API serves one request at a time on its event loop. A look-up
that blocks the loop for its round trip leaves the worker idle while
PostgreSQL works, and costs a round trip (two wake-ups of each process, a
statement to execute) per request. `BatchedKeyReads` awaits the round trip
instead and gathers the look-ups that arrive meanwhile: when the answer comes,
every key asked since goes in the next statement. Alone, a look-up costs what
it did before; under load one round trip answers every request the worker
took in meanwhile, so the worker's own CPU bounds the rate, not round trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg

from retailstream.views.store import from_json, view_table


def batch_sql(views: Sequence[str]) -> str:
    """One statement reading the docs of `views` (each keyed by one column) for the
    keys in its parameter `keys`: rows of (view's index, key, doc)."""
    parts = []
    for n, view in enumerate(views):
        table = view_table(view)
        if len(table.key) != 1:
            raise ValueError(f"{view} has a key of {len(table.key)} columns, not one")
        column = table.key[0]
        parts.append(
            f'SELECT {n}, "{column}"::text, doc::text FROM "{table.name}" '
            f'WHERE "{column}" = ANY(%(keys)s) AND doc IS NOT NULL'
        )
    return " UNION ALL ".join(parts)


class BatchedKeyReads:
    """The docs of several views under one key, for the requests of one event loop,
    many keys per round trip; `get` answers as `ServingStore.get_each` would.

    Store errors reach every look-up of the failed statement (the caller answers
    them as it answers any store error). A connection the server dropped is
    opened again once per statement, as `PostgresStore` does."""

    def __init__(self, dsn: str, views: Sequence[str], connect_timeout_s: int = 10) -> None:
        self.dsn = dsn
        self.views = tuple(views)
        self._sql = batch_sql(self.views)
        self._timeout_s = connect_timeout_s
        self._db: psycopg.AsyncConnection | None = None
        self._waiting: dict[str, list[asyncio.Future[list[dict[str, Any] | None]]]] = {}
        self._reading: asyncio.Task[None] | None = None
        self.statements = 0  # how many round trips answered the look-ups so far

    def __repr__(self) -> str:
        # Never the connection string: it holds a password.
        return f"BatchedKeyReads({self.views})"

    async def get(self, key: str) -> list[dict[str, Any] | None]:
        """The doc of `key` in each view (None where there is none)."""
        if "\x00" in key:  # PostgreSQL text cannot hold it: no row has such a key
            return [None] * len(self.views)
        answer = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(answer)
        if self._reading is None:  # kept: the loop holds only a weak reference to a task
            self._reading = asyncio.create_task(self._read_while_waiting())
        return await answer

    async def aclose(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _read_while_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    found = await self._read(list(batch))
                except Exception as exc:  # every waiter gets it; none waits forever
                    for answers in batch.values():
                        for answer in answers:
                            if not answer.done():
                                answer.set_exception(exc)
                    continue
                for key, answers in batch.items():
                    docs = found.get(key) or [None] * len(self.views)
                    for answer in answers:
                        if not answer.done():  # its request may have been cancelled
                            answer.set_result(docs)
        finally:
            self._reading = None

    async def _read(self, keys: list[str]) -> dict[str, list[dict[str, Any] | None]]:
        try:
            rows = await self._fetch(keys)
        except psycopg.OperationalError:
            if self._db is None or not (self._db.closed or self._db.broken):
                raise
            rows = await self._fetch(keys)
        found: dict[str, list[dict[str, Any] | None]] = {}
        for view, key, doc in rows:
            found.setdefault(key, [None] * len(self.views))[view] = from_json(doc)
        return found

    async def _fetch(self, keys: list[str]) -> list[tuple[int, str, str]]:
        if self._db is None or self._db.closed or self._db.broken:
            self._db = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=self._timeout_s
            )
        self.statements += 1
        cursor = await self._db.execute(self._sql, {"keys": keys})
        return await cursor.fetchall()
