"""The serving store: the query side of CQRS, where the API reads the gold views.

Each gold micro-batch upserts the rows it changed here, right after its Delta
write; the API answers key lookups from it without touching Spark. SQLite (WAL
journal: one writer, readers never blocked) is the embedded default; another
database can take its place by implementing `ServingStore`.

Every view is a table with typed key columns and a JSON `doc` holding the
whole row, so the API can return a row as the view wrote it and filter on keys.
`positions` records, per view and Kafka topic-partition, the highest bronze
offset a view has included: the API compares a consistency token (the offset
a command was written at) with it for read-your-writes.

Writes are idempotent: an upsert replaces by key, `replace` swaps a whole view
in one transaction, and a position only moves forward.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson


@dataclass(frozen=True)
class ViewTable:
    """A view's shape in the store: its key columns (the upsert key) and indexed columns."""

    name: str
    key: tuple[str, ...]
    indexed: tuple[str, ...] = ()


VIEW_TABLES = {
    t.name: t
    for t in (
        ViewTable("item_ratings", ("sku",), ("category",)),
        ViewTable("sales_by_region", ("window_start", "store_id"), ("region",)),
        ViewTable("trending_items", ("category", "rank")),
        ViewTable("inventory_positions", ("store_id", "sku"), ("low_stock",)),
        # What trending_items is ranked from: carts and units ordered per minute and sku,
        # kept for the trending window only (the serving path prunes older minutes).
        ViewTable("trending_activity", ("minute", "sku")),
        # The catalogue the API checks commands and lookups against (from `world init`).
        ViewTable("products", ("sku",), ("category",)),
        ViewTable("stores", ("store_id",), ("region",)),
        ViewTable("customers", ("customer_id",), ("home_region",)),
        # The recommender champion's lists (`train recommender`), and what is
        # popular per region for customers it does not know.
        ViewTable("recommendations", ("customer_id",)),
        ViewTable("popular_by_region", ("region",)),
        # Departures the disruption champion expects to be late (`score_shipments`).
        ViewTable("disruption_alerts", ("shipment_id",), ("destination_store_id",)),
    )
}


# A Kafka record's place: (topic, partition, offset).
Coordinates = tuple[str, int, int]


@dataclass(frozen=True)
class SeenRecord:
    """A record as deduplication sees it: where it is, its event's key, its Kafka time."""

    topic: str
    partition: int
    offset: int
    dedup_key: str
    kafka_ms: int

    @property
    def topic_key(self) -> tuple[str, str]:
        return (self.topic, self.dedup_key)

    @property
    def place(self) -> Coordinates:
        return (self.topic, self.partition, self.offset)


class InTransaction:
    """A watermark's base read in the fold's own transaction (`first_records`)."""


IN_TRANSACTION = InTransaction()
# The newest Kafka time of the batches before a fold's: known (None when there was
# none), or read in the fold's transaction.
WatermarkBase = int | None | InTransaction


class ServingStore(Protocol):
    """What the gold job writes and the API reads."""

    def upsert(self, view: str, rows: Iterable[Mapping[str, Any]]) -> int: ...

    def replace(self, view: str, rows: Iterable[Mapping[str, Any]]) -> int: ...

    def get(self, view: str, **key: Any) -> dict[str, Any] | None: ...

    def get_each(
        self, lookups: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[dict[str, Any] | None]: ...

    def rows(
        self, view: str, where: Mapping[str, Any] | None = None, order_by: Sequence[str] = ()
    ) -> list[dict[str, Any]]: ...

    def advance(self, view: str, topic: str, offsets: Mapping[int, int]) -> None: ...

    def positions(self, view: str, topic: str) -> dict[int, int]: ...


class StoreTransaction(Protocol):
    """The reads and writes of one store transaction: what the serving path folds a
    batch with (`views.serving.apply_facts`). SQLite's `StoreBatch` documents each."""

    def get_many(
        self, view: str, keys: Iterable[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], dict]: ...

    def put(self, view: str, rows: Iterable[Mapping[str, Any]]) -> int: ...

    def replace(self, view: str, rows: Iterable[Mapping[str, Any]]) -> int: ...

    def delete_before(self, view: str, column: str, value: Any) -> None: ...

    def largest(self, view: str, column: str) -> Any: ...

    def sums(
        self, view: str, group_by: str, fields: tuple[str, ...]
    ) -> dict[Any, tuple[int, ...]]: ...

    def count(self, view: str) -> int: ...

    def positions(self, view: str, topic: str) -> dict[int, int]: ...

    def advance(self, view: str, topic: str, offsets: Mapping[int, int]) -> None: ...

    def first_records(
        self, records: Sequence[SeenRecord], delay_ms: int, newest_ms: WatermarkBase = ...
    ) -> set[Coordinates]: ...


class WritableStore(ServingStore, Protocol):
    """A serving store the serving path can fold into, a transaction at a time."""

    def batch(self) -> contextlib.AbstractContextManager[StoreTransaction]: ...


def _json_default(value: object) -> object:
    """What orjson leaves to us: subclasses (pandas' Timestamp, numpy's float64)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    for kind in (float, int, str):
        if isinstance(value, kind):
            return kind(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(value: object) -> str:
    """JSON of a view row: timestamps as ISO 8601 text (as `isoformat` writes them).

    orjson, because every fold writes each row it touches: it is several times
    faster than `json` here, and reads and writes the same documents."""
    return orjson.dumps(value, default=_json_default).decode()


def from_json(doc: str | bytes) -> Any:
    """A stored document as Python values. Stores written before orjson may hold
    NaN, which only `json` reads (orjson writes it as null)."""
    try:
        return orjson.loads(doc)
    except orjson.JSONDecodeError:
        return json.loads(doc)


def key_value(value: object) -> object:
    """A key column value as SQLite stores it (timestamps as ISO text, like the doc)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def view_table(view: str) -> ViewTable:
    """The store table of `view`; a KeyError naming the views for an unknown one."""
    try:
        return VIEW_TABLES[view]
    except KeyError:
        raise KeyError(f"unknown view {view!r}; views: {', '.join(VIEW_TABLES)}") from None


def checked_filter(
    view: str, where: Mapping[str, Any] | None, order_by: Sequence[str]
) -> tuple[ViewTable, dict[str, Any]]:
    """`view`'s table and `where` as a dict, both checked: only key and indexed columns
    may filter or order (they are the ones with columns; the rest is in the doc)."""
    table = view_table(view)
    allowed = set(table.key + table.indexed)
    where = dict(where or {})
    unknown = sorted((set(where) | set(order_by)) - allowed)
    if unknown:
        raise KeyError(f"{view} can only be filtered or ordered by {sorted(allowed)}")
    return table, where


class WholeViewWrites:
    """`upsert`, `replace` and `get` of a store, from its `_transaction`, `_insert` and
    `rows` (the same for every database)."""

    def _transaction(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _insert(self, db: Any, table: ViewTable, rows: Iterable[Mapping]) -> int:
        raise NotImplementedError

    def rows(
        self, view: str, where: Mapping[str, Any] | None = None, order_by: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        raise NotImplementedError

    def upsert(self, view: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert or replace `rows` by the view's key; returns how many were written."""
        table = view_table(view)
        with self._transaction() as db:
            return self._insert(db, table, rows)

    def replace(self, view: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Make `rows` the whole view, atomically (readers see the old or the new one)."""
        table = view_table(view)
        with self._transaction() as db:
            db.execute(f'DELETE FROM "{table.name}"')
            return self._insert(db, table, rows)

    def get(self, view: str, **key: Any) -> dict[str, Any] | None:
        found = self.rows(view, where=key)
        return found[0] if found else None

    def get_each(
        self, lookups: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[dict[str, Any] | None]:
        """The row of each (view, key) look-up (None where there is none); a store over
        a network answers them in one round trip."""
        return [self.get(view, **key) for view, key in lookups]


class SqliteStore(WholeViewWrites):
    """`ServingStore` on one SQLite file (WAL). Safe to share between threads."""

    def __init__(self, path: Path, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._timeout_s = timeout_s
        self._db().execute("PRAGMA journal_mode=WAL")  # not allowed inside a transaction
        with self._transaction() as db:
            for table in VIEW_TABLES.values():
                columns = ", ".join(f'"{c}"' for c in table.key + table.indexed)
                db.execute(
                    f'CREATE TABLE IF NOT EXISTS "{table.name}" ({columns}, doc TEXT NOT NULL, '
                    f"PRIMARY KEY ({', '.join(repr(c) for c in table.key)}))"
                )
                for column in table.indexed:
                    db.execute(
                        f'CREATE INDEX IF NOT EXISTS "{table.name}_{column}" '
                        f'ON "{table.name}" ("{column}")'
                    )
            db.execute(
                "CREATE TABLE IF NOT EXISTS positions (view TEXT, topic TEXT, partition INTEGER, "
                '"offset" INTEGER NOT NULL, PRIMARY KEY (view, topic, partition))'
            )
            # The serving path's deduplication state: the first record of each event
            # id within the lateness bound, kept beside the views it guards so that
            # both commit in one transaction (`StoreBatch.first_records`).
            db.execute(
                "CREATE TABLE IF NOT EXISTS seen_events (topic TEXT, dedup_key TEXT, "
                'partition INTEGER NOT NULL, "offset" INTEGER NOT NULL, kafka_ms INTEGER NOT NULL, '
                "PRIMARY KEY (topic, dedup_key)) WITHOUT ROWID"
            )
            db.execute("CREATE INDEX IF NOT EXISTS seen_events_kafka_ms ON seen_events (kafka_ms)")

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections must stay on their thread)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db())

    def _insert(self, db: sqlite3.Connection, table: ViewTable, rows: Iterable[Mapping]) -> int:
        columns = table.key + table.indexed
        names = ", ".join(f'"{c}"' for c in (*columns, "doc"))
        marks = ", ".join("?" for _ in range(len(columns) + 1))
        values = [(*(key_value(row[c]) for c in columns), to_json(dict(row))) for row in rows]
        db.executemany(f'INSERT OR REPLACE INTO "{table.name}" ({names}) VALUES ({marks})', values)
        return len(values)

    def rows(
        self, view: str, where: Mapping[str, Any] | None = None, order_by: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """The docs of the rows whose key/indexed columns equal `where`, in `order_by` order."""
        table, where = checked_filter(view, where, order_by)
        sql = f'SELECT doc FROM "{table.name}"'
        if where:
            sql += " WHERE " + " AND ".join(f'"{c}" = ?' for c in where)
        if order_by:
            sql += " ORDER BY " + ", ".join(f'"{c}"' for c in order_by)
        cursor = self._db().execute(sql, [key_value(v) for v in where.values()])
        return [from_json(doc) for (doc,) in cursor.fetchall()]

    def advance(self, view: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Record that `view` includes `topic` up to these offsets (never moves back)."""
        with self._transaction() as db:
            self._advance(db, view, topic, offsets)

    @staticmethod
    def _advance(db: sqlite3.Connection, view: str, topic: str, offsets: Mapping[int, int]) -> None:
        db.executemany(
            "INSERT INTO positions VALUES (?, ?, ?, ?) ON CONFLICT (view, topic, partition) "
            'DO UPDATE SET "offset" = max("offset", excluded."offset")',
            [(view, topic, int(p), int(o)) for p, o in offsets.items()],
        )

    def positions(self, view: str, topic: str) -> dict[int, int]:
        return self._positions(self._db(), view, topic)

    @staticmethod
    def _positions(db: sqlite3.Connection, view: str, topic: str) -> dict[int, int]:
        cursor = db.execute(
            'SELECT partition, "offset" FROM positions WHERE view = ? AND topic = ?', (view, topic)
        )
        return {int(p): int(o) for p, o in cursor.fetchall()}

    @contextlib.contextmanager
    def batch(self) -> Iterator[StoreBatch]:
        """One transaction for several reads and writes: all of them commit, or none."""
        with self._transaction() as db:
            yield StoreBatch(self, db)


class TransactionWrites:
    """`put`, `replace` and the key check of a store transaction over `db`, a
    connection inside it (the same for every database)."""

    def __init__(self, store: WholeViewWrites, db: Any) -> None:
        self._store = store
        self._db = db

    def _keyed_by(self, view: str, column: str) -> ViewTable:
        """The view's table, which must have `column` among its key columns."""
        table = view_table(view)
        if column not in table.key:
            raise KeyError(f"{view} has no key column {column!r}")
        return table

    def put(self, view: str, rows: Iterable[Mapping[str, Any]]) -> int:
        return self._store._insert(self._db, view_table(view), rows)

    def replace(self, view: str, rows: Iterable[Mapping[str, Any]]) -> int:
        table = view_table(view)
        self._db.execute(f'DELETE FROM "{table.name}"')
        return self._store._insert(self._db, table, rows)


class StoreBatch(TransactionWrites):
    """The reads and writes of one serving-store transaction (`SqliteStore.batch`).

    The serving path folds a micro-batch into the rows it touches and moves
    the views' positions in one of these, so the rows and the offsets they
    include commit together or not at all.
    """

    def get_many(self, view: str, keys: Iterable[tuple[Any, ...]]) -> dict[tuple[Any, ...], dict]:
        """The docs of the rows with these keys (by key tuple); absent keys are left out."""
        table = view_table(view)
        wanted = [tuple(key_value(v) for v in key) for key in keys]
        rows = _rows_by_keys(self._db, table.name, table.key, ("doc",), wanted)
        return {tuple(key): from_json(doc) for *key, doc in rows}

    def delete_before(self, view: str, column: str, value: Any) -> None:
        """Delete the rows whose key column `column` is below `value`."""
        table = self._keyed_by(view, column)
        self._db.execute(f'DELETE FROM "{table.name}" WHERE "{column}" < ?', (key_value(value),))

    def largest(self, view: str, column: str) -> Any:
        """The largest value of key column `column` (None when the view is empty)."""
        table = self._keyed_by(view, column)
        return self._db.execute(f'SELECT max("{column}") FROM "{table.name}"').fetchone()[0]

    def sums(self, view: str, group_by: str, fields: tuple[str, ...]) -> dict[Any, tuple[int, ...]]:
        """Per value of key column `group_by`, the sums of the rows' integer `fields`
        (absent ones count 0), computed in SQLite from the stored docs."""
        table = self._keyed_by(view, group_by)
        sums = ", ".join("coalesce(sum(json_extract(doc, ?)), 0)" for _ in fields)
        cursor = self._db.execute(
            f'SELECT "{group_by}", {sums} FROM "{table.name}" GROUP BY "{group_by}"',
            [f"$.{field}" for field in fields],
        )
        return {group: tuple(int(total) for total in totals) for group, *totals in cursor}

    def count(self, view: str) -> int:
        table = view_table(view)
        return int(self._db.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0])

    def positions(self, view: str, topic: str) -> dict[int, int]:
        return SqliteStore._positions(self._db, view, topic)

    def advance(self, view: str, topic: str, offsets: Mapping[int, int]) -> None:
        SqliteStore._advance(self._db, view, topic, offsets)

    def newest_seen_ms(self) -> int | None:
        """The newest Kafka time among the event ids remembered (None: none)."""
        return self._db.execute("SELECT max(kafka_ms) FROM seen_events").fetchone()[0]

    def first_records(
        self,
        records: Sequence[SeenRecord],
        delay_ms: int,
        newest_ms: WatermarkBase = IN_TRANSACTION,
    ) -> set[Coordinates]:
        """Deduplicate `records` (in Kafka order) against the event ids seen before;
        return the coordinates of those to skip: repeats of an id already kept, and
        records that arrived later than the watermark.

        The same rule as Spark's `dropDuplicatesWithinWatermark` on the Kafka
        timestamp (`transforms.parse.drop_duplicate_events`, which refine runs):
        the watermark is the newest Kafka time of the batches before, less
        `delay_ms`; an id is remembered until the watermark passes its time by
        `delay_ms`. A record kept once stays kept when its batch is replayed
        (its id is stored with its coordinates), so a replay changes nothing.

        `newest_ms`: that newest Kafka time, when the caller knows it (a batch
        folded in slices: every slice takes the batch's watermark, whatever the
        slices before it committed); by default it is read here.
        """
        newest = self.newest_seen_ms() if isinstance(newest_ms, InTransaction) else newest_ms
        watermark = None if newest is None else newest - delay_ms
        first, skipped = first_within_batch(records, watermark)
        stored = _rows_by_keys(
            self._db, "seen_events", ("topic", "dedup_key"), ("partition", "offset"), list(first)
        )
        for topic, key, partition, offset in stored:
            if (topic, partition, offset) != first[topic, key].place:
                skipped.add(first[topic, key].place)
        self._db.executemany(
            "INSERT OR IGNORE INTO seen_events VALUES (?, ?, ?, ?, ?)",
            [
                (r.topic, r.dedup_key, r.partition, r.offset, r.kafka_ms)
                for r in records
                if r.place not in skipped
            ],
        )
        if watermark is not None:
            self._db.execute("DELETE FROM seen_events WHERE kafka_ms < ?", (watermark - delay_ms,))
        return skipped


def first_within_batch(
    records: Sequence[SeenRecord], watermark: int | None
) -> tuple[dict[tuple[str, str], SeenRecord], set[Coordinates]]:
    """The first record of each event id among `records` (by (topic, id)), and the
    places of those to skip: later copies, and records behind `watermark`."""
    first: dict[tuple[str, str], SeenRecord] = {}
    skipped: set[Coordinates] = set()
    for record in records:
        if watermark is not None and record.kafka_ms < watermark:
            skipped.add(record.place)
        elif first.setdefault(record.topic_key, record).place != record.place:
            skipped.add(record.place)
    return first, skipped


def _rows_by_keys(
    db: sqlite3.Connection,
    table: str,
    key: tuple[str, ...],
    columns: tuple[str, ...],
    keys: Sequence[tuple[Any, ...]],
) -> list[tuple[Any, ...]]:
    """The key and `columns` of the rows of `table` whose `key` columns equal one of `keys`.

    The wanted keys are a VALUES list joined to the table, wanted first (CROSS JOIN
    fixes that order): one primary-key search per key. SQLite plans the shorter
    `(a, b) IN (VALUES ...)` as a scan of the whole table, whose cost grows with
    everything the table holds (391 ms against 8.5 ms for 2,000 keys among 720,000).
    """
    keys = list(dict.fromkeys(keys))  # a key asked twice would be joined twice
    wanted = ", ".join(f"k{i}" for i in range(len(key)))
    matches = " AND ".join(f'stored."{c}" = wanted.k{i}' for i, c in enumerate(key))
    selected = ", ".join(f'stored."{c}"' for c in (*key, *columns))
    found: list[tuple[Any, ...]] = []
    # SQLite allows 32766 host parameters a statement; chunks stay well below.
    chunk = max(1, 2000 // len(key))
    for start in range(0, len(keys), chunk):
        part = keys[start : start + chunk]
        marks = ", ".join("(" + ", ".join("?" * len(key)) + ")" for _ in part)
        cursor = db.execute(
            f"WITH wanted({wanted}) AS (VALUES {marks}) SELECT {selected} "
            f'FROM wanted CROSS JOIN "{table}" AS stored ON {matches}',
            [v for k in part for v in k],
        )
        found.extend(cursor.fetchall())
    return found


class _Transaction:
    """`with` = one IMMEDIATE transaction on an autocommit connection (commit or roll back)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def open_store(path: Path) -> SqliteStore:
    """The configured serving store (`settings.views.sqlite_path`)."""
    return SqliteStore(path)
