from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from retailstream.world import KEY_FIELDS, TOPICS, DefectRates, EventGenerator, World

from .conftest import START, Run

LIFECYCLE = {"created": 0, "departed": 1, "delayed": 2, "delivered": 3}


def test_same_seed_gives_identical_records_and_truth(small_world: World) -> None:
    def run() -> tuple:
        gen = EventGenerator(small_world, seed=9, start=START, sim_seconds_per_event=0.5)
        batches = [gen.next_batch(n) for n in (3_000, 7_000)]
        return [b.records for b in batches], [b.truth_frames() for b in batches]

    (records_a, truth_a), (records_b, truth_b) = run(), run()
    assert records_a == records_b
    for frames_a, frames_b in zip(truth_a, truth_b, strict=True):
        for name in frames_a:
            assert frames_a[name].equals(frames_b[name]), name


def test_different_seed_gives_different_records(small_world: World) -> None:
    a = EventGenerator(small_world, seed=1, start=START).next_batch(2_000)
    b = EventGenerator(small_world, seed=2, start=START).next_batch(2_000)
    assert [r.value for r in a.records] != [r.value for r in b.records]


def test_next_batch_returns_exactly_n_records_numbered_contiguously(small_world: World) -> None:
    gen = EventGenerator(small_world, seed=3, start=START, sim_seconds_per_event=2.0)
    first_seq = 0
    for n in (0, 1, 700, 12_345, 60_000):
        batch = gen.next_batch(n)
        assert len(batch.records) == n
        assert batch.first_seq == first_seq
        for name, rows in vars(batch).items():
            if name in ("records", "first_seq", "emit_times_ms"):
                continue
            assert all(first_seq <= r["record_seq"] < first_seq + n for r in rows), name
        first_seq += n
    assert gen.records_emitted == first_seq


def test_every_topic_appears_with_valid_json_and_its_key(clean_run: Run, contract) -> None:
    counts = Counter(r.topic for r in clean_run.records)
    assert set(counts) == set(TOPICS)
    for record, doc in zip(clean_run.records, clean_run.docs, strict=True):
        assert record.key == str(doc[KEY_FIELDS[record.topic]]).encode()
        assert contract(clean_run.world, record.topic, doc) == [], doc


def test_event_mix_is_realistic(clean_run: Run) -> None:
    counts = Counter(r.topic for r in clean_run.batches[-1].records)
    share = {topic: counts[topic] / len(clean_run.batches[-1].records) for topic in TOPICS}
    assert 0.6 < share["shop.clickstream"] < 0.8
    assert 0.07 < share["shop.orders"] < 0.14
    assert 0.03 < share["shop.ratings"] < 0.08
    assert 0.05 < share["logistics.shipments"] < 0.15
    assert 0.001 < share["logistics.weather"] < 0.05
    assert share["logistics.world_events"] < 0.01


def test_event_ids_are_unique_and_times_never_go_back(clean_run: Run) -> None:
    ids = [doc["event_id"] for doc in clean_run.docs]
    assert len(set(ids)) == len(ids)
    times = [doc["event_time"] for doc in clean_run.docs]
    assert times == sorted(times)
    assert times[0] >= START.strftime("%Y-%m-%dT%H:%M:%S")


def test_store_orders_only_sell_what_the_store_carries(clean_run: Run) -> None:
    carried = set(
        zip(
            clean_run.world.initial_stock["store_id"],
            clean_run.world.initial_stock["sku"],
            strict=True,
        )
    )
    store_orders = [o for o in clean_run.events["shop.orders"] if o["store_id"] is not None]
    assert len(store_orders) > 1_000
    for order in store_orders:
        assert all((order["store_id"], line["sku"]) in carried for line in order["lines"])


def test_shipment_events_follow_the_lifecycle(clean_run: Run) -> None:
    stages: dict[str, list[str]] = defaultdict(list)
    for event in clean_run.events["logistics.shipments"]:
        stages[event["shipment_id"]].append(event["status"])
    delivered = 0
    for statuses in stages.values():
        ranks = [LIFECYCLE[s] for s in statuses]
        assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks), statuses
        assert statuses[0] == "created", statuses
        delivered += statuses[-1] == "delivered"
    assert delivered > 1_000


def test_deliveries_match_the_shipment_truth(clean_run: Run) -> None:
    truth = clean_run.truth("shipment_truth").set_index("shipment_id")
    events = clean_run.events["logistics.shipments"]
    delivered = [e for e in events if e["status"] == "delivered"]
    delayed_notice = {e["shipment_id"] for e in events if e["status"] == "delayed"}
    assert len(delivered) > 1_000
    for event in delivered:
        row = truth.loc[event["shipment_id"]]
        assert event["delay_minutes"] == row["delay_minutes"]
        assert (event["delay_minutes"] > 60) == row["delayed"]
        assert (event["shipment_id"] in delayed_notice) == row["delayed"]
        eta = datetime.fromisoformat(event["eta"])
        arrived = datetime.fromisoformat(event["event_time"])
        assert arrived - eta == pytest.approx(
            timedelta(minutes=event["delay_minutes"]), abs=timedelta(milliseconds=2)
        )


def test_stock_replayed_from_events_never_goes_negative(clean_run: Run) -> None:
    """Initial stock + delivered shipment lines - store order lines, in stream order."""
    stock = {
        (s, k): int(q)
        for s, k, q in clean_run.world.initial_stock[["store_id", "sku", "on_hand"]].itertuples(
            index=False
        )
    }
    sold = 0
    for record, doc in zip(clean_run.records, clean_run.docs, strict=True):
        if record.topic == "shop.orders" and doc["store_id"] is not None:
            for line in doc["lines"]:
                stock[(doc["store_id"], line["sku"])] -= line["quantity"]
                sold += line["quantity"]
                assert stock[(doc["store_id"], line["sku"])] >= 0, doc
        elif record.topic == "logistics.shipments" and doc["status"] == "delivered":
            for line in doc["lines"]:
                stock[(doc["destination_store_id"], line["sku"])] += line["quantity"]
    assert sold > 5_000


def test_stockouts_name_real_store_skus_and_their_orders(clean_run: Run) -> None:
    stockouts = clean_run.truth("stockouts")
    assert len(stockouts) > 100
    carried = clean_run.world.initial_stock.set_index(["store_id", "sku"]).index
    assert stockouts.set_index(["store_id", "sku"]).index.isin(carried).all()
    emitted = {o["order_id"] for o in clean_run.events["shop.orders"]}
    for row in stockouts.itertuples():
        assert isinstance(row.record_seq, int)
        doc = clean_run.docs[row.record_seq]  # the run starts at sequence number 0
        if row.order_id in emitted:
            assert doc["order_id"] == row.order_id
        else:  # whole basket unavailable: tied to the next record in time
            assert isinstance(row.event_time, datetime)
            assert doc["event_time"] >= row.event_time.isoformat()[:23]


def test_truth_rows_point_at_their_records(clean_run: Run) -> None:
    ratings = clean_run.truth("rating_truth")
    assert len(ratings) > 10_000
    for row in ratings.itertuples():
        assert isinstance(row.record_seq, int)
        doc = clean_run.docs[row.record_seq]
        assert (doc["event_id"], doc["customer_id"], doc["sku"], doc["stars"]) == (
            row.event_id,
            row.customer_id,
            row.sku,
            row.stars,
        )
    for row in clean_run.truth("shipment_truth").itertuples():
        assert isinstance(row.record_seq, int)
        doc = clean_run.docs[row.record_seq]
        assert (doc["shipment_id"], doc["status"]) == (row.shipment_id, "created")


def test_weather_reports_every_region_every_ten_minutes(clean_run: Run) -> None:
    observations = [e for e in clean_run.events["logistics.weather"] if e["kind"] == "observation"]
    per_region = Counter(e["region"] for e in observations)
    span = datetime.fromisoformat(observations[-1]["event_time"]) - datetime.fromisoformat(
        observations[0]["event_time"]
    )
    expected = span / timedelta(minutes=10)
    assert len(per_region) == 8
    assert all(abs(n - expected) <= 2 for n in per_region.values())


def test_live_clock_sets_event_times(small_world: World) -> None:
    now = [datetime(2025, 6, 1, 12, 0, tzinfo=UTC)]

    def clock() -> datetime:
        return now[0]

    gen = EventGenerator(
        small_world, seed=4, start=now[0], clock=clock, defect_rates=DefectRates.none()
    )
    gen.next_batch(1_000)
    now[0] += timedelta(seconds=30)
    batch = gen.next_batch(5_000)
    times = [json.loads(r.value)["event_time"] for r in batch.records]
    assert times == sorted(times)
    assert "2025-06-01T12:00:00.000Z" <= times[0] and times[-1] <= "2025-06-01T12:00:30.000Z"
    assert gen.sim_time <= now[0]


def test_invalid_arguments_are_rejected(small_world: World) -> None:
    with pytest.raises(ValueError, match="sim_seconds_per_event"):
        EventGenerator(small_world, seed=1, start=START, sim_seconds_per_event=0)
    with pytest.raises(ValueError, match="non-negative"):
        EventGenerator(small_world, seed=1, start=START).next_batch(-1)


def test_emission_times_follow_the_simulated_clock_and_never_go_back() -> None:
    from datetime import UTC, datetime

    from retailstream.world import DefectRates, EventGenerator, build_world

    start = datetime(2026, 2, 1, tzinfo=UTC)
    rates = DefectRates(**{k: 10 * v for k, v in vars(DefectRates()).items()})
    generator = EventGenerator(
        build_world(2, "small"), 2, start, sim_seconds_per_event=1.0, defect_rates=rates
    )
    batch = generator.next_batch(5000)
    times = batch.emit_times_ms
    assert len(times) == len(batch.records)
    assert times == sorted(times)
    assert times[0] >= start.timestamp() * 1000
    assert times[-1] <= generator.sim_time.timestamp() * 1000 + 1
