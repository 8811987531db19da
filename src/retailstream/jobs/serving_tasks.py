"""The serving path's writes to PostgreSQL from the tasks that read the records.

On SQLite the driver folds each micro-batch (one file, one writer). PostgreSQL
takes many writers, so there the facts never reach the driver: each task folds
its own slice, the records of one Kafka partition in this batch, into the store
in one transaction, together with the views' positions of that partition
(`views.serving.apply_facts`). The positions are the replay marker: a retried
task, or a batch re-run after a crash, finds its offsets applied and changes
nothing. Slices of one partition run one batch after another, so the positions
only move forward. The work spreads over the executors as the Kafka partitions
do, on a laptop or a cluster.

Two slices that touch one row (ratings of one item in two partitions) fold one
after the other: the store locks the rows it folds into (`PostgresBatch`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
from pyspark import Broadcast
from pyspark.sql import DataFrame

from retailstream.config import ViewsSettings
from retailstream.errors import UserError
from retailstream.views.folds import Catalogue
from retailstream.views.postgres_store import PostgresStore
from retailstream.views.serving import apply_facts

# What each task reports: the facts it applied per view, and where it ran.
APPLIED_SCHEMA = "view string, applied long, host string, pid long"
# A fold that lost a lock race (deadlock, serialization) is run again this often.
LOCK_RETRIES = 5
# The longest wait between two attempts to reach a store that is down.
MAX_BACKOFF_S = 2.0
# A Python worker keeps its connection from one batch to the next.
_STORES: dict[str, PostgresStore] = {}


class StoreUnavailable(Exception):
    """The store could not be reached; the batch is tried again when it answers."""


def _store(dsn: str) -> PostgresStore:
    store = _STORES.get(dsn)
    if store is None:
        store = _STORES[dsn] = PostgresStore(dsn, writer=False)
    return store


@dataclass(frozen=True)
class SliceFold:
    """Folds one task's slice of a micro-batch's facts (`mapInArrow`). Pickled to the
    executors: the store's connection string, and the catalogue as a broadcast."""

    dsn: str
    views: tuple[str, ...]
    catalogue: Broadcast[Catalogue]
    settings: ViewsSettings
    dedup_delay_ms: int
    # The batch's deduplication watermark base (`PostgresStore.batch_watermark`): each
    # slice deduplicates against the batch's watermark, whatever the others committed.
    newest_ms: int | None = None

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        facts = [row for batch in batches for row in batch.to_pylist()]
        applied = self.fold(facts) if facts else {}
        where = {"host": socket.gethostname(), "pid": os.getpid()}
        yield pa.RecordBatch.from_pylist(
            [{"view": view, "applied": count, **where} for view, count in applied.items()]
            or [{"view": None, "applied": 0, **where}],
            schema=pa.schema(
                [
                    ("view", pa.string()),
                    ("applied", pa.int64()),
                    ("host", pa.string()),
                    ("pid", pa.int64()),
                ]
            ),  # fmt: skip
        )

    def fold(self, facts: list[dict[str, Any]]) -> dict[str, int]:
        """Fold `facts` in one transaction, again after a lost lock race."""
        for attempt in range(LOCK_RETRIES):
            try:
                return apply_facts(
                    _store(self.dsn),
                    facts,
                    self.views,
                    self.catalogue.value,
                    self.settings,
                    self.dedup_delay_ms,
                    newest_ms=self.newest_ms,
                )
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == LOCK_RETRIES - 1:
                    raise
            except psycopg.OperationalError as error:
                _STORES.pop(self.dsn, None)
                raise StoreUnavailable(
                    f"the postgres serving store is unreachable: {error}"
                ) from None
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class SliceReport:
    """What a micro-batch's tasks did: facts applied per view, and the processes that
    folded them (`host:pid` of each task's Python worker)."""

    applied: dict[str, int]
    workers: frozenset[str]


def fold_in_tasks(batch: DataFrame, fold: SliceFold) -> SliceReport:
    """Fold every task's slice of `batch` where it was read; only counts come back."""
    applied: dict[str, int] = {}
    workers = set()
    for row in batch.mapInArrow(fold, APPLIED_SCHEMA).collect():
        workers.add(f"{row.host}:{row.pid}")
        if row.view is not None:
            applied[row.view] = applied.get(row.view, 0) + row.applied
    return SliceReport(applied, frozenset(workers))


class StoreOutage:
    """Runs a store write again until the store answers, waiting longer each time (at
    most `MAX_BACKOFF_S`) and saying so once per outage, until `stopping` is set:
    then the write fails, and the batch is run again by the next start."""

    def __init__(self, name: str, stopping: threading.Event, report: Callable[[str], None]) -> None:
        self.name = name
        self.stopping = stopping
        self.report = report
        self.down_since: float | None = None

    def run(self, write: Callable[[], Any]) -> Any:
        wait_s = 0.25
        while True:
            try:
                done = write()
            except Exception as error:
                # The driver's own reads fail with psycopg's error; a task's StoreUnavailable
                # arrives inside Spark's.
                unreachable = isinstance(error, psycopg.OperationalError)
                if not unreachable and StoreUnavailable.__name__ not in str(error):
                    raise
                if self.down_since is None:
                    self.down_since = time.monotonic()
                    self.report(
                        f"serving: the {self.name} store is unreachable; retrying until it answers"
                    )
            else:
                if self.down_since is not None:
                    down_s = time.monotonic() - self.down_since
                    self.report(
                        f"serving: the {self.name} store answers again after {down_s:.0f} s"
                    )
                    self.down_since = None
                return done
            if self.stopping.wait(wait_s):
                raise UserError(f"stopped while the {self.name} store was unreachable")
            wait_s = min(wait_s * 2, MAX_BACKOFF_S)
