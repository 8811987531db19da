"""The generator's stock ground truth, and a world saved and resumed."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from datetime import UTC, datetime, timedelta

from retailstream.world import DefectRates, EventGenerator, KafkaRecord, build_world

START = datetime(2026, 6, 1, tzinfo=UTC)


def _generator() -> EventGenerator:
    return EventGenerator(build_world(5, "small"), 5, START, 4.0, DefectRates.none())


def _stock_told_by(records: list[KafkaRecord], initial: dict[tuple[str, str], int]) -> Counter:
    """Initial stock, minus the store sales and plus the deliveries the records tell."""
    stock = Counter(initial)
    for record in records:
        event = json.loads(record.value)
        if record.topic == "shop.orders" and event["store_id"]:
            for line in event["lines"]:
                stock[event["store_id"], line["sku"]] -= line["quantity"]
        elif record.topic == "logistics.shipments" and event["status"] == "delivered":
            for line in event["lines"]:
                stock[event["destination_store_id"], line["sku"]] += line["quantity"]
    return stock


def _by_key(frame) -> dict[tuple[str, str], int]:  # noqa: ANN001
    return {(r.store_id, r.sku): int(r.on_hand) for r in frame.itertuples()}


def test_the_stock_truth_is_what_the_released_records_tell() -> None:
    generator = _generator()
    initial = _by_key(generator.stock())
    records: list[KafkaRecord] = []
    # Uneven batches: each leaves part of a simulated step pending.
    for n in (7_001, 13, 25_000, 3_333):
        records += generator.next_batch(n).records
        told = _stock_told_by(records, initial)
        assert _by_key(generator.stock()) == dict(told)
    sold = sum(initial.values()) - sum(told.values())
    assert sold != 0, "the records moved stock"
    assert any(r.topic == "logistics.shipments" and b"delivered" in r.value for r in records)
    assert min(told.values()) >= 0


def test_a_saved_world_continues_as_if_it_had_never_stopped() -> None:
    straight, saved = _generator(), _generator()
    assert straight.next_batch(9_000).records == saved.next_batch(9_000).records
    resumed = pickle.loads(pickle.dumps(saved))
    assert resumed.next_batch(9_000).records == straight.next_batch(9_000).records
    assert _by_key(resumed.stock()) == _by_key(straight.stock())


def test_a_world_resumed_after_a_pause_tells_its_overdue_news_when_it_resumes() -> None:
    generator = _generator()
    initial = _by_key(generator.stock())
    records = generator.next_batch(5_000).records
    paused_at = generator.sim_time
    later = paused_at + timedelta(days=3)
    generator.skip_to(later)
    after = generator.next_batch(20_000).records
    times = [datetime.fromisoformat(json.loads(r.value)["event_time"]) for r in after]
    # Records of the step before the pause, then nothing until the world resumes.
    assert all(t <= paused_at or t >= later for t in times)
    news = [t for r, t in zip(after, times, strict=True) if r.topic == "logistics.shipments"]
    overdue = [t for t in news if abs(t - later) < timedelta(milliseconds=1)]
    assert overdue, "shipment news due during the pause comes out when the world resumes"
    assert _by_key(generator.stock()) == dict(_stock_told_by(records + after, initial))
