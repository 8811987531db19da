"""Publishing generated events to Kafka at a steady rate, with their ground truth.

The generator hands out batches of records (flat out, from a child process
that runs ahead: `batch_sources`); this loop produces them with an idempotent
producer, paces itself to the requested rate, and keeps each batch's ground
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
from retailstream.kafka.batch_sources import (
    BatchesAhead,
    InlineBatches,
    WireBatch,
    can_run_ahead,
)
from retailstream.world import EventGenerator, truth_frame

# Acknowledged batches' ground truth is collected this often (seconds), and at the end.
TRUTH_FLUSH_S = 5.0
# A ground-truth file is written per table once it would hold this many rows or its
# oldest row waited this long (and at the end): few large files, still readable mid-run.
TRUTH_ROWS_PER_FILE = 1_000_000
TRUTH_FILE_S = 60.0
# Flat out, the generator runs in a child process from this many events on: below,
# starting the child (about a second) costs more than it saves.
AHEAD_MIN_EVENTS = 200_000


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

    def add(self, batch: WireBatch, located: dict[int, tuple[int, int]]) -> None:
        for row in batch.truth["defects"]:
            row["partition"], row["offset"] = located.get(int(row["record_seq"]), (-1, -1))
        now = time.monotonic()
        for table, rows in batch.truth.items():
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
    ahead: bool | None = None,
) -> PublishReport:
    """Produce events until `max_events`, `max_seconds` or `stop()`, at `rate` events/s (None: flat out).

    `simulated_timestamps`: give each record its emission time on the simulated
    clock as Kafka timestamp, as if it had been published then (a backfill of
    past days); otherwise Kafka stamps it now.

    `ahead`: generate in a child process while producing here; by default when
    producing flat out at least AHEAD_MIN_EVENTS events (or for a duration).
    A stop then also produces the few batches already generated. `generator`
    ends in the state after the last record produced either way.

    Returns what was published. On Ctrl-C everything generated so far is
    still flushed to Kafka and its ground truth written, then the interrupt
    propagates.
    """
    if max_events is None and max_seconds is None:
        raise UserError("say how much to produce: --events N or --duration D")
    report = PublishReport()
    deliveries = _DeliveryTracker()
    pending: list[WireBatch] = []
    truth_rows = _TruthBuffer(truth)
    started = time.monotonic()
    last_truth = started
    if rate is not None:
        batch_size = max(1, min(batch_size, int(rate / 20) or 1))
    if ahead is None:
        ahead = rate is None and (max_events is None or max_events >= AHEAD_MIN_EVENTS)
    source = (
        BatchesAhead(generator) if ahead and can_run_ahead(generator) else InlineBatches(generator)
    )

    def flush_truth(final: bool) -> None:
        remaining = client.flush(60 if final else 0)
        if remaining and final:
            raise UserError(f"{remaining} records were not acknowledged by Kafka within 60s")
        if deliveries.failed:
            raise UserError(
                f"Kafka refused {len(deliveries.failed)} records, the first: {deliveries.failed[0]}"
            )
        kept: list[WireBatch] = []
        for batch in pending:
            seqs = [row["record_seq"] for row in batch.truth["defects"]]
            if not final and any(s not in deliveries.located for s in seqs):
                kept.append(batch)
            else:
                truth_rows.add(batch, deliveries.located)
        pending[:] = kept
        truth_rows.write(final)

    def send(batch: WireBatch) -> None:
        """Produce one batch; the hot loop of a flat-out run."""
        defect_at = {row["record_index"]: row["record_seq"] for row in batch.truth["defects"]}
        produce, check = client.produce, deliveries.check
        stamps = batch.emit_times_ms if simulated_timestamps else [0] * len(batch)  # 0: Kafka's now
        records = zip(batch.topics, batch.keys, batch.values, stamps, strict=True)
        for index, (topic, key, value, stamp) in enumerate(records):
            on_delivery = deliveries.callback(defect_at[index]) if index in defect_at else check
            try:
                produce(topic, value, key, on_delivery=on_delivery, timestamp=stamp)
            except BufferError:
                _produce(client, topic, key, value, on_delivery=on_delivery, timestamp=stamp)
        for topic, count in Counter(batch.topics).items():
            report.per_topic[topic] = report.per_topic.get(topic, 0) + count
        report.events += len(batch)
        pending.append(batch)
        client.poll(0)
        on_progress(len(batch))

    def run() -> None:
        nonlocal last_truth
        asked = 0
        while True:
            elapsed = time.monotonic() - started
            if (max_seconds is not None and elapsed >= max_seconds) or stop():
                return
            # Keep the source's batches coming, never asking past max_events.
            while source.in_flight < source.depth:
                want = batch_size if max_events is None else min(batch_size, max_events - asked)
                if want <= 0:
                    break
                source.ask(want)
                asked += want
            if not source.in_flight:
                return
            send(source.take())
            now = time.monotonic()
            if now - last_truth >= TRUTH_FLUSH_S:
                flush_truth(final=False)
                last_truth = now
            if rate is not None:
                ahead_s = report.events / rate - (now - started)
                if ahead_s > 0:
                    time.sleep(ahead_s)

    try:
        try:
            run()
        except KeyboardInterrupt:
            for batch in source.close():  # made already: produced, so Kafka matches the world
                send(batch)
            raise
        except BaseException:
            source.abandon()
            raise
        for batch in source.close():
            send(batch)
    finally:
        flush_truth(final=True)
        report.seconds = time.monotonic() - started
        report.truth_rows = dict(truth.rows_written)
    return report
