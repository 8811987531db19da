"""Publishing generated events to Kafka at a steady rate, with their ground truth.

The generator hands out batches of records; this loop produces them with an
idempotent producer, paces itself to the requested rate, and keeps each
batch's ground truth until the records it describes are acknowledged, so
that defect rows can carry the Kafka partition and offset of their record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from confluent_kafka import KafkaError, Message, Producer

from retailstream.errors import UserError
from retailstream.io.truth import TruthWriter
from retailstream.world import EventBatch, EventGenerator

# Ground truth is written at least this often (seconds), and at the end.
TRUTH_FLUSH_S = 5.0


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
                continue
            frames = batch.truth_frames()
            defects = frames["defects"]
            if not defects.empty:
                where = [deliveries.located.get(int(s), (-1, -1)) for s in defects["record_seq"]]
                defects["partition"] = pd.Series([p for p, _ in where], dtype="int64")
                defects["offset"] = pd.Series([o for _, o in where], dtype="int64")
            truth.append(frames)
        pending[:] = kept

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
            batch = generator.next_batch(want)
            defect_at = {row["record_index"]: row["record_seq"] for row in batch.defects}
            for index, (topic, key, value) in enumerate(batch.records):
                on_delivery = (
                    deliveries.callback(defect_at[index])
                    if index in defect_at
                    else deliveries.check
                )
                if simulated_timestamps:
                    _produce(client, topic, key, value, on_delivery=on_delivery,
                             timestamp=batch.emit_times_ms[index])  # fmt: skip
                else:
                    _produce(client, topic, key, value, on_delivery=on_delivery)
                report.per_topic[topic] = report.per_topic.get(topic, 0) + 1
            report.events += len(batch.records)
            pending.append(batch)
            client.poll(0)
            on_progress(len(batch.records))
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
