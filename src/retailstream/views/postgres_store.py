"""The serving store on PostgreSQL: the same tables, documents and positions as SQLite's.

Each view is a table with typed key columns and a `doc` (jsonb) holding the
whole row; `positions` and `seen_events` are as in `views.store`. The API reads
with a role that may only read (`reader`); the serving path writes with one that
owns the tables (`writer`), which creates them when they are missing.

Unlike SQLite's single writer, several writers may fold at once: the serving
path's tasks each commit their own Kafka partitions' slice (`serving_tasks`).
So a transaction that reads rows to fold into them locks them first, in key
order (`PostgresBatch.get_many`), creating the missing ones as placeholders
(a NULL doc, replaced before the same transaction commits), so two slices that
touch one item fold one after the other and neither update is lost.
trending_items, re-ranked as a whole, is guarded by a transaction lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import psycopg

from retailstream.views.store import (
    IN_TRANSACTION,
    VIEW_TABLES,
    Coordinates,
    InTransaction,
    SeenRecord,
    TransactionWrites,
    ViewTable,
    WatermarkBase,
    WholeViewWrites,
    checked_filter,
    first_within_batch,
    from_json,
    key_value,
    to_json,
    view_table,
)

T = TypeVar("T")
# Batch watermarks kept behind the newest (a batch run again is the last one or so).
KEPT_BATCHES = 100
# Key and indexed columns that are not text (bools are stored as 0/1, as in SQLite).
_COLUMN_TYPES = {"rank": "bigint", "low_stock": "bigint", "doc": "jsonb"}
# A transaction-level advisory lock around trending_items' re-ranking.
_RERANK_LOCK = 0x7472656E64  # "trend"


def _type(column: str) -> str:
    return _COLUMN_TYPES.get(column, "text")


def _quoted(columns: Iterable[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _unnest(columns: Sequence[str]) -> str:
    """`unnest(%s::text[], ...)`: one array parameter per column (a bulk read or write
    in one statement, whatever the number of rows)."""
    return "unnest(" + ", ".join(f"%s::{_type(c)}[]" for c in columns) + ")"


def _columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Row tuples as one list per column (what `_unnest` takes)."""
    return [[row[i] for row in rows] for i in range(width)]


def _holds_nul(where: Mapping[str, Any]) -> bool:
    """Whether a key value holds NUL, which PostgreSQL text cannot store: such a key
    matches no row (and PostgreSQL would refuse the query rather than say so)."""
    return any(isinstance(v, str) and "\x00" in v for v in where.values())


def schema_statements() -> list[str]:
    """The tables and indexes of the store (idempotent)."""
    statements = []
    for table in VIEW_TABLES.values():
        columns = ", ".join(f'"{c}" {_type(c)}' for c in (*table.key, *table.indexed, "doc"))
        statements.append(
            f'CREATE TABLE IF NOT EXISTS "{table.name}" ({columns}, '
            f"PRIMARY KEY ({_quoted(table.key)}))"
        )
        statements += [
            f'CREATE INDEX IF NOT EXISTS "{table.name}_{c}" ON "{table.name}" ("{c}")'
            for c in table.indexed
        ]
    statements += [
        "CREATE TABLE IF NOT EXISTS positions (view text, topic text, partition integer, "
        '"offset" bigint NOT NULL, PRIMARY KEY (view, topic, partition))',
        "CREATE TABLE IF NOT EXISTS seen_events (topic text, dedup_key text, "
        'partition integer NOT NULL, "offset" bigint NOT NULL, kafka_ms bigint NOT NULL, '
        "PRIMARY KEY (topic, dedup_key))",
        "CREATE INDEX IF NOT EXISTS seen_events_kafka_ms ON seen_events (kafka_ms)",
        # Each micro-batch's watermark base, fixed when the batch first runs: its slices
        # commit one by one, and a batch run again must deduplicate as it did first.
        "CREATE TABLE IF NOT EXISTS batch_watermarks (query text, batch_id bigint, "
        "newest_ms bigint, PRIMARY KEY (query, batch_id))",
    ]
    return statements


class PostgresStore(WholeViewWrites):
    """`ServingStore` on a PostgreSQL database. Safe to share between threads (a
    connection per thread); `writer`: create the tables when missing."""

    def __init__(self, dsn: str, writer: bool = True, connect_timeout_s: int = 10) -> None:
        self.dsn = dsn
        self._timeout_s = connect_timeout_s
        self._local = threading.local()
        if writer:
            with self._transaction() as db:
                # Two writers starting at once would race on CREATE ... IF NOT EXISTS.
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_RERANK_LOCK + 1,))
                for statement in schema_statements():
                    db.execute(statement)

    def __repr__(self) -> str:
        # Never the connection string: it holds a password.
        return f"PostgresStore({psycopg.conninfo.conninfo_to_dict(self.dsn).get('dbname')!r})"

    def _db(self) -> psycopg.Connection:
        """This thread's connection (autocommit: reads take no transaction), opened
        again when the server dropped it."""
        db: psycopg.Connection | None = getattr(self._local, "db", None)
        if db is None or db.closed or db.broken:
            db = psycopg.connect(self.dsn, autocommit=True, connect_timeout=self._timeout_s)
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        db = self._db()
        with db.transaction():
            yield db

    def close(self) -> None:
        """Close this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @staticmethod
    def _insert(db: psycopg.Connection, table: ViewTable, rows: Iterable[Mapping]) -> int:
        columns = table.key + table.indexed
        values = [(*(key_value(row[c]) for c in columns), to_json(dict(row))) for row in rows]
        if not values:
            return 0
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in (*table.indexed, "doc"))
        db.execute(
            f'INSERT INTO "{table.name}" ({_quoted((*columns, "doc"))}) '
            f"SELECT * FROM {_unnest((*columns, 'doc'))} "
            f"ON CONFLICT ({_quoted(table.key)}) DO UPDATE SET {updates}",
            _columns_of(values, len(columns) + 1),
        )
        return len(values)

    def rows(
        self, view: str, where: Mapping[str, Any] | None = None, order_by: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """The docs of the rows whose key/indexed columns equal `where`, in `order_by` order."""
        table, where = checked_filter(view, where, order_by)
        if _holds_nul(where):
            return []
        sql = f'SELECT doc::text FROM "{table.name}" WHERE doc IS NOT NULL'
        for column in where:
            sql += f' AND "{column}" = %s'
        if order_by:
            sql += " ORDER BY " + _quoted(order_by)
        params = [key_value(v) for v in where.values()]
        found = self._read(lambda db: db.execute(sql, params).fetchall())
        return [from_json(doc) for (doc,) in found]

    def get_each(
        self, lookups: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[dict[str, Any] | None]:
        """The row of each (view, key) look-up (None where there is none), in one round
        trip: a scalar subquery per look-up (the API's item look-up is two of them)."""
        parts, params = [], []
        for view, key in lookups:
            table, where = checked_filter(view, key, ())
            if _holds_nul(where):
                parts.append("NULL::text")
                continue
            matches = "".join(f' AND "{c}" = %s' for c in where)
            parts.append(f'(SELECT doc::text FROM "{table.name}" WHERE doc IS NOT NULL{matches})')
            params += [key_value(v) for v in where.values()]
        row = self._read(lambda db: db.execute(f"SELECT {', '.join(parts)}", params).fetchone())
        return [None if doc is None else from_json(doc) for doc in (row or [None] * len(parts))]

    def advance(self, view: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Record that `view` includes `topic` up to these offsets (never moves back)."""
        with self._transaction() as db:
            _advance(db, view, topic, offsets)

    def positions(self, view: str, topic: str) -> dict[int, int]:
        return self._read(lambda db: _positions(db, view, topic))

    def _read(self, read: Callable[[psycopg.Connection], T]) -> T:
        """`read(connection)`, once more on a new connection when the server dropped
        this one (a restart): the first read after it would fail otherwise."""
        try:
            return read(self._db())
        except psycopg.OperationalError:
            db = getattr(self._local, "db", None)
            if db is None or not (db.closed or db.broken):
                raise
            return read(self._db())

    def batch_watermark(self, query: str, batch_id: int) -> int | None:
        """The watermark base of `query`'s micro-batch `batch_id`: the newest Kafka time
        remembered when the batch first ran (None: none), the same when it runs again."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO batch_watermarks SELECT %s, %s, max(kafka_ms) FROM seen_events "
                "ON CONFLICT DO NOTHING",
                (query, batch_id),
            )
            db.execute(
                "DELETE FROM batch_watermarks WHERE query = %s AND batch_id < %s",
                (query, batch_id - KEPT_BATCHES),
            )
            row = db.execute(
                "SELECT newest_ms FROM batch_watermarks WHERE query = %s AND batch_id = %s",
                (query, batch_id),
            ).fetchone()
        return row[0] if row else None

    def forget_batches(self, query: str) -> None:
        """Drop `query`'s batch watermarks (its checkpoint is new: batch ids start again)."""
        with self._transaction() as db:
            db.execute("DELETE FROM batch_watermarks WHERE query = %s", (query,))

    @contextlib.contextmanager
    def batch(self) -> Iterator[PostgresBatch]:
        """One transaction for several reads and writes: all of them commit, or none."""
        with self._transaction() as db:
            yield PostgresBatch(self, db)


def _advance(db: psycopg.Connection, view: str, topic: str, offsets: Mapping[int, int]) -> None:
    if not offsets:
        return
    db.execute(
        'INSERT INTO positions (view, topic, partition, "offset") '
        "SELECT %s, %s, p, o FROM unnest(%s::integer[], %s::bigint[]) AS given(p, o) "
        'ON CONFLICT (view, topic, partition) DO UPDATE SET "offset" = '
        'greatest(positions."offset", excluded."offset")',
        (view, topic, [int(p) for p in offsets], [int(o) for o in offsets.values()]),
    )


def _positions(db: psycopg.Connection, view: str, topic: str) -> dict[int, int]:
    cursor = db.execute(
        'SELECT partition, "offset" FROM positions WHERE view = %s AND topic = %s', (view, topic)
    )
    return {int(p): int(o) for p, o in cursor.fetchall()}


class PostgresBatch(TransactionWrites):
    """The reads and writes of one PostgreSQL transaction (`PostgresStore.batch`): the
    same operations as SQLite's `StoreBatch`, safe beside other writers."""

    def get_many(self, view: str, keys: Iterable[tuple[Any, ...]]) -> dict[tuple[Any, ...], dict]:
        """The docs of the rows with these keys, locked until the transaction ends (absent
        keys are left out). Missing rows are created as placeholders first, and all are
        locked in key order: another writer folding the same keys waits, and two never
        wait for each other."""
        table = view_table(view)
        wanted = sorted({tuple(key_value(v) for v in key) for key in keys})
        if not wanted:
            return {}
        arrays = _columns_of(wanted, len(table.key))
        key = _quoted(table.key)
        self._db.execute(
            f'INSERT INTO "{table.name}" ({key}) SELECT * FROM {_unnest(table.key)} AS w({key}) '
            f"ORDER BY {key} ON CONFLICT DO NOTHING",
            arrays,
        )
        matches = " AND ".join(f'stored."{c}" = w."{c}"' for c in table.key)
        stored = ", ".join(f'stored."{c}"' for c in table.key)
        cursor = self._db.execute(
            f'SELECT {stored}, stored.doc::text FROM "{table.name}" AS stored '
            f"JOIN {_unnest(table.key)} AS w({key}) ON {matches} "
            f"ORDER BY {stored} FOR UPDATE OF stored",
            arrays,
        )
        return {tuple(key): from_json(doc) for *key, doc in cursor.fetchall() if doc is not None}

    def delete_before(self, view: str, column: str, value: Any) -> None:
        table = self._keyed_by(view, column)
        self._db.execute(f'DELETE FROM "{table.name}" WHERE "{column}" < %s', (key_value(value),))

    def largest(self, view: str, column: str) -> Any:
        table = self._keyed_by(view, column)
        if view == "trending_activity":
            # Re-ranking reads the window then replaces trending_items: one writer at a time.
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_RERANK_LOCK,))
        row = self._db.execute(f'SELECT max("{column}") FROM "{table.name}"').fetchone()
        return row[0] if row else None

    def sums(self, view: str, group_by: str, fields: tuple[str, ...]) -> dict[Any, tuple[int, ...]]:
        table = self._keyed_by(view, group_by)
        sums = ", ".join("coalesce(sum((doc->>%s)::bigint), 0)" for _ in fields)
        cursor = self._db.execute(
            f'SELECT "{group_by}", {sums} FROM "{table.name}" WHERE doc IS NOT NULL '
            f'GROUP BY "{group_by}"',
            list(fields),
        )
        return {group: tuple(int(total) for total in totals) for group, *totals in cursor}

    def count(self, view: str) -> int:
        table = view_table(view)
        row = self._db.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()
        return int(row[0]) if row else 0

    def positions(self, view: str, topic: str) -> dict[int, int]:
        return _positions(self._db, view, topic)

    def advance(self, view: str, topic: str, offsets: Mapping[int, int]) -> None:
        _advance(self._db, view, topic, offsets)

    def newest_seen_ms(self) -> int | None:
        row = self._db.execute("SELECT max(kafka_ms) FROM seen_events").fetchone()
        return row[0] if row else None

    def first_records(
        self,
        records: Sequence[SeenRecord],
        delay_ms: int,
        newest_ms: WatermarkBase = IN_TRANSACTION,
    ) -> set[Coordinates]:
        """`StoreBatch.first_records` (read it for the rule), safe beside other writers:
        each id is claimed by inserting it, and an id another writer claims at the same
        time makes this insert wait for that writer's commit, then skip."""
        newest = self.newest_seen_ms() if isinstance(newest_ms, InTransaction) else newest_ms
        watermark = None if newest is None else newest - delay_ms
        first, skipped = first_within_batch(records, watermark)
        if first:
            # Sorted, so that two writers claim shared ids in the same order.
            claims = [
                (r.topic, r.dedup_key, r.partition, r.offset, r.kafka_ms)
                for _, r in sorted(first.items())
            ]
            self._db.execute(
                "INSERT INTO seen_events SELECT * FROM unnest(%s::text[], %s::text[], "
                "%s::integer[], %s::bigint[], %s::bigint[]) ORDER BY 1, 2 ON CONFLICT DO NOTHING",
                _columns_of(claims, 5),
            )
            stored = self._db.execute(
                'SELECT s.topic, s.dedup_key, s.partition, s."offset" FROM seen_events AS s '
                "JOIN unnest(%s::text[], %s::text[]) AS w(topic, dedup_key) "
                "USING (topic, dedup_key)",
                _columns_of(claims, 2),
            )
            for topic, key, partition, offset in stored.fetchall():
                if (topic, partition, offset) != first[topic, key].place:
                    skipped.add(first[topic, key].place)
        if watermark is not None:
            self._db.execute("DELETE FROM seen_events WHERE kafka_ms < %s", (watermark - delay_ms,))
        return skipped
