"""Opening the configured serving stores: SQLite's file, or PostgreSQL with the role
each side needs (the serving path writes, the API only reads)."""

from __future__ import annotations

import sqlite3

import psycopg

from retailstream.config import Settings, StoreKind
from retailstream.views.store import ServingStore, WritableStore, open_store

# What a store raises when it cannot answer (the API's 503, health's "down").
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)


def serving_store(settings: Settings, kind: StoreKind) -> WritableStore:
    """The store of `kind` as the serving path writes it (creating its tables)."""
    if kind == "sqlite":
        return open_store(settings.views.store_path)
    from retailstream.postgres_server import writer_dsn
    from retailstream.views.postgres_store import PostgresStore

    return PostgresStore(writer_dsn(settings))


def api_store(settings: Settings) -> ServingStore:
    """The store the API reads (`Settings.api_store`), with PostgreSQL's read-only role."""
    if settings.api_store == "sqlite":
        return open_store(settings.views.store_path)
    from retailstream.postgres_server import reader_dsn
    from retailstream.views.postgres_store import PostgresStore

    return PostgresStore(reader_dsn(settings), writer=False)
