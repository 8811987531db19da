"""Publishing generated events to Kafka at a steady rate, with their ground truth.

The generator hands out batches of records; this loop produces them with an
idempotent producer, paces itself to the requested rate, and keeps each batch's ground
truth until the records it describes are acknowledged, so that defect rows can
carry the Kafka partition and offset of their record. Ground truth is written
in few large files: one per table per minute of producing, or per million rows,
and at the end.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from confluent_kafka import KafkaError, Message, Producer

from retailstream.errors import UserError
from retailstream.io.truth import TruthWriter
from retailstream.world import TRUTH_SCHEMAS, EventBatch, EventGenerator, truth_frame

# Acknowledged batches' ground truth is collected this often (seconds), and at the end.
TRUTH_FLUSH_S = 5.0
# A ground-truth file is written per table once it would hold this many rows or its
# oldest row waited this long (and at the end): few large files, still readable mid-run.
TRUTH_ROWS_PER_FILE = 1_000_000
TRUTH_FILE_S = 60.0


@dataclass
class PublishReport:
    events: int = 0
    seconds: float = 0.0
    per_topic: dict[str, int] = field(default_factory=dict)
    truth_rows: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class _DeliveryTracker:
    """Collects delivery failures of every record, and the (partition, offset)
    Kafka assigned to each defective one.

    Every record gets a delivery callback: a record Kafka refused must make the
    run fail, not be counted as published.
    """

    def __init__(self) -> None:
        self.located: dict[int, tuple[int, int]] = {}
        self.failed: list[str] = []

    def check(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed.append(f"{msg.topic()}: {err}")

    def callback(self, seq: int) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.check(err, msg)
            else:
                self.located[seq] = delivered_at(msg)

        return on_delivery


def delivered_at(msg: Message) -> tuple[int, int]:
    """(partition, offset) of a record Kafka acknowledged: both are set once it is."""
    partition, offset = msg.partition(), msg.offset()
    assert partition is not None and offset is not None, "an acknowledged record has both"
    return partition, offset


def _produce(client: Producer, topic: str, key: bytes, value: bytes, **kwargs: Any) -> None:
    while True:
        try:
            client.produce(topic, value=value, key=key, **kwargs)
            return
        except BufferError:
            # The local queue is full: let the producer deliver, then retry.
            client.poll(0.05)


class _TruthBuffer:
    """Ground-truth rows of acknowledged batches, written per table in large files."""

    def __init__(self, writer: TruthWriter) -> None:
        self.writer = writer
        self.rows: dict[str, list[dict]] = {}
        self.since: dict[str, float] = {}

    def add(self, batch: EventBatch, located: dict[int, tuple[int, int]]) -> None:
        for row in batch.defects:
            row["partition"], row["offset"] = located.get(int(row["record_seq"]), (-1, -1))
        now = time.monotonic()
        for table in TRUTH_SCHEMAS:
            rows = getattr(batch, table)
            if rows:
                self.rows.setdefault(table, []).extend(rows)
                self.since.setdefault(table, now)

    def write(self, final: bool) -> None:
        now = time.monotonic()
        for table in list(self.rows):
            rows = self.rows[table]
            if final or len(rows) >= TRUTH_ROWS_PER_FILE or now - self.since[table] >= TRUTH_FILE_S:
                self.writer.append({table: _frame(table, rows)})
                del self.rows[table], self.since[table]


def _frame(table: str, rows: list[dict]) -> pd.DataFrame:
    frame = truth_frame(table, rows)
    if table == "defects":  # where Kafka put each defective record
        frame["partition"] = pd.Series([r["partition"] for r in rows], dtype="int64")
        frame["offset"] = pd.Series([r["offset"] for r in rows], dtype="int64")
    return frame


def publish(
    generator: EventGenerator,
    client: Producer,
    truth: TruthWriter,
    rate: float | None,
    max_events: int | None,
    max_seconds: float | None,
    batch_size: int,
    on_progress: Callable[[int], None] = lambda n: None,
    stop: Callable[[], bool] = lambda: False,
    simulated_timestamps: bool = False,
) -> PublishReport:
    """Produce events until `max_events`, `max_seconds` or `stop()`, at `rate` events/s (None: flat out).

    `simulated_timestamps`: give each record its emission time on the simulated
    clock as Kafka timestamp, as if it had been published then (a backfill of
    past days); otherwise Kafka stamps it now.

    Returns what was published. On Ctrl-C everything generated so far is
    still flushed to Kafka and its ground truth written, then the interrupt
    propagates.
    """
    if max_events is None and max_seconds is None:
        raise UserError("say how much to produce: --events N or --duration D")
    report = PublishReport()
    deliveries = _DeliveryTracker()
    pending: list[EventBatch] = []
    truth_rows = _TruthBuffer(truth)
    started = time.monotonic()
    last_truth = started
    if rate is not None:
        batch_size = max(1, min(batch_size, int(rate / 20) or 1))

    def flush_truth(final: bool) -> None:
        remaining = client.flush(60 if final else 0)
        if remaining and final:
            raise UserError(f"{remaining} records were not acknowledged by Kafka within 60s")
        if deliveries.failed:
            raise UserError(
                f"Kafka refused {len(deliveries.failed)} records, the first: {deliveries.failed[0]}"
            )
        kept: list[EventBatch] = []
        for batch in pending:
            seqs = [row["record_seq"] for row in batch.defects]
            if not final and any(s not in deliveries.located for s in seqs):
                kept.append(batch)
            else:
                truth_rows.add(batch, deliveries.located)
        pending[:] = kept
        truth_rows.write(final)

    def send(batch: EventBatch) -> None:
        """Produce one batch: the hot loop of a flat-out run, so no wrapper per record."""
        defect_at = {row["record_index"]: row["record_seq"] for row in batch.defects}
        produce, check = client.produce, deliveries.check
        records = batch.records
        stamps = batch.emit_times_ms if simulated_timestamps else [0] * len(records)  # 0: now
        for index, ((topic, key, value), stamp) in enumerate(zip(records, stamps, strict=True)):
            on_delivery = deliveries.callback(defect_at[index]) if index in defect_at else check
            try:
                produce(topic, value, key, on_delivery=on_delivery, timestamp=stamp)
            except BufferError:
                _produce(client, topic, key, value, on_delivery=on_delivery, timestamp=stamp)
        for topic, count in Counter(r.topic for r in records).items():
            report.per_topic[topic] = report.per_topic.get(topic, 0) + count
        report.events += len(records)
        pending.append(batch)
        client.poll(0)
        on_progress(len(records))

    try:
        while True:
            elapsed = time.monotonic() - started
            if (max_seconds is not None and elapsed >= max_seconds) or stop():
                break
            want = batch_size
            if max_events is not None:
                want = min(want, max_events - report.events)
                if want <= 0:
                    break
            send(generator.next_batch(want))
            now = time.monotonic()
            if now - last_truth >= TRUTH_FLUSH_S:
                flush_truth(final=False)
                last_truth = now
            if rate is not None:
                ahead = report.events / rate - (now - started)
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        flush_truth(final=True)
        report.seconds = time.monotonic() - started
        report.truth_rows = dict(truth.rows_written)
    return report
