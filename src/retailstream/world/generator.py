"""The causal event generator: a simulated retailer emitting Kafka records.

`EventGenerator.next_batch(n)` returns exactly n records in event-time order (apart from
injected defects), with the ground truth that belongs to them. Internally the simulation
advances in *steps* of up to 50,000 shop events. Within a step:

1. Shop-event times are drawn (Poisson arrivals following the weekly traffic curve, or
   spread up to `clock()` in live mode); a step never crosses a month or promotion-week
   boundary, so the demand distribution is constant within it.
2. Clicks, orders and ratings are sampled vectorised from the demand model.
3. One ordered pass interleaves store orders with scheduled records (shipment lifecycle,
   world-event announcements) by time: orders take stock, deliveries add it, low stock
   plans shipments whose records are scheduled in a heap.
4. Weather observations of the step window are added, everything is merged by time,
   defects are injected, and records plus truth rows join a pending buffer from which
   batches are cut. Surplus records of a step simply wait for the next batch.

All randomness comes from independent numpy streams derived from the seed, so the same
(world, seed, start, settings, sequence of next_batch sizes) gives the same records.
"""

from __future__ import annotations

import gc
import heapq
import operator
from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd

from retailstream.world.defects import DefectInjector, DefectRates, InjectionResult
from retailstream.world.demand import (
    DemandModel,
    SessionPool,
    promotion_week_index,
    promotion_week_start,
)
from retailstream.world.records import (
    TOPIC_CLICKSTREAM,
    TOPIC_ORDERS,
    TOPIC_RATINGS,
    TOPIC_SHIPMENTS,
    TOPIC_WEATHER,
    TOPIC_WORLD_EVENTS,
    EventBatch,
    EventIds,
    KafkaRecord,
    encode_clicks,
    encode_order,
    encode_ratings,
    encode_shipment,
    encode_weather,
    encode_world_event,
    make_records,
)
from retailstream.world.reference import World
from retailstream.world.scores import draw_stars, expected_stars, latent_scores
from retailstream.world.shipments import (
    CREATED,
    DELIVERED,
    STATUS,
    Shipment,
    ShipmentPlanner,
)
from retailstream.world.simtime import (
    HOUR,
    epoch_seconds,
    from_operational,
    iso_ms,
    iso_ms_array,
    month_of,
    next_month_start,
    to_datetime,
    to_operational,
)
from retailstream.world.stock import EmittedStock, Inventory
from retailstream.world.weather import CONDITIONS, MAX_TRAFFIC_FACTOR, RegionTimeline, WorldEvent

# Shares of shop events (shipments, weather and world events come on top, from their own
# causes). Tuned so the overall mix is ~70% clicks, ~10% orders, ~5% ratings, ~10%
# shipments in steady state.
CLICK_SHARE = 0.81
ORDER_SHARE = 0.125
RATING_SHARE = 0.065
_SLOT_CUM = np.cumsum([CLICK_SHARE, ORDER_SHARE, RATING_SHARE])
STORE_ORDER_SHARE = 0.6  # of orders, before bad weather sends shoppers online
_LINES_P = np.array([0.55, 0.27, 0.12, 0.06])  # 1..4 lines per order
_QUANTITY_P = np.array([0.88, 0.10, 0.02])  # 1..3 units per line
UNITS_PER_ORDER = float((_LINES_P * np.arange(1, 5)).sum() * (_QUANTITY_P * np.arange(1, 4)).sum())
MEAN_STORE_ACCEPTANCE = 0.8  # E[traffic factor] / MAX_TRAFFIC_FACTOR, for stock sizing
ACTIONS = ("view", "add_to_cart", "remove_from_cart", "wishlist")
CHANNELS = ("store", "web", "app")

MAX_STEP_SLOTS = 50_000
MIN_STEP_SLOTS = 512
PURCHASE_MEMORY = 50_000
# Planning delay + loading + an allowance for lateness, on top of the route lead time.
_REPLENISHMENT_OVERHEAD_SECONDS = (17.5 / 60.0 + 2.0 + 0.5) * HOUR
_INITIAL_SHIPMENT_MAX_LINES = 20


def _emission_times_ms(
    injected: InjectionResult, clean_times: np.ndarray, t_from: float
) -> list[int]:
    """The simulated clock at each output record: the event time of the clean record at
    that position, carried forward over inserted copies and swapped neighbours (running
    maximum), so that it never goes backwards."""
    emitted = np.full(len(injected.records), -np.inf)
    emitted[injected.position_of] = clean_times
    clock = np.maximum.accumulate(np.maximum(emitted, t_from))
    return (clock * 1000.0).astype(np.int64).tolist()


class EventGenerator:
    """Simulates the retailer and emits its events as Kafka records with ground truth.

    Expects a `World`, a seed, the simulated start time (naive = UTC) and the average
    simulated seconds between shop events. `clock`, when given, replaces the simulated
    clock for live mode: each step's events are spread up to `clock()`; keep
    `sim_seconds_per_event` near the real spacing then, because it sizes browsing
    sessions and store stock. `defect_rates=None` means the default ~2% defects;
    `DefectRates.none()` gives a clean stream.
    """

    def __init__(
        self,
        world: World,
        seed: int,
        start: datetime,
        sim_seconds_per_event: float = 0.001,
        defect_rates: DefectRates | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if sim_seconds_per_event <= 0:
            raise ValueError("sim_seconds_per_event must be positive")
        self.world = world
        self.seed = seed
        self.sim_seconds_per_event = float(sim_seconds_per_event)
        self.defect_rates = DefectRates() if defect_rates is None else defect_rates
        self._clock = clock
        self._rng = np.random.default_rng([seed, 11])
        self._ids = EventIds(np.random.default_rng([seed, 12]))
        self._injector = DefectInjector(self.defect_rates, np.random.default_rng([seed, 13]))

        self._t = epoch_seconds(start)
        self._u = to_operational(self._t)
        self._timeline = RegionTimeline(seed, self._t)
        self._timeline.ensure(self._t + 6 * HOUR)
        self._demand = DemandModel(world, seed)
        self._demand.set_epoch(month_of(self._t), promotion_week_index(self._t))
        self._sessions = SessionPool(seed, self.sim_seconds_per_event / CLICK_SHARE)
        self._planner = ShipmentPlanner(world, self._timeline, seed)
        self._inventory = Inventory(world)
        self._emitted_stock = EmittedStock(world.index.assortment_on_hand)
        self._refresh_stock_policy()
        # Scheduled records due before this time come out at it (`skip_to`).
        self._floor = self._t

        self._heap: list[tuple[float, int, Shipment | WorldEvent]] = []
        self._heap_seq = 0
        self._order_counter = 0
        self._purchase_customer = np.zeros(0, dtype=np.int64)
        self._purchase_sku = np.zeros(0, dtype=np.int64)

        self._pending: list[KafkaRecord] = []
        self._pending_times: list[int] = []  # emission time (epoch ms) of each pending record
        self._pending_seq = 0  # sequence number of self._pending[0]
        self._pending_truth: dict[str, list[dict]] = {
            "defects": [],
            "shipment_truth": [],
            "rating_truth": [],
            "stockouts": [],
        }

        index = world.index
        self._sku_ids = index.sku_ids
        self._customer_ids = index.customer_ids
        self._store_ids = index.store_ids.tolist()
        self._region_names = list(world.regions)
        self._region_keys = [r.encode() for r in world.regions]

        self._schedule_world_events()
        self._plan_initial_replenishment()

    # ------------------------------------------------------------------ public API
    @property
    def sim_time(self) -> datetime:
        """Event time of the latest simulated shop event (UTC)."""
        return to_datetime(self._t)

    @property
    def records_emitted(self) -> int:
        """Number of records returned so far; the next record's sequence number."""
        return self._pending_seq

    def stock(self) -> pd.DataFrame:
        """On-hand units per carried (store, sku) as the records returned so far tell it:
        initial stock, minus store sales, plus deliveries (the inventory view's truth)."""
        inv = self._inventory
        return pd.DataFrame(
            {
                "store_id": [self._store_ids[s] for s in inv.key_store.tolist()],
                "sku": self._sku_ids[inv.key_sku].tolist(),
                "on_hand": self._emitted_stock.on_hand,
                "records_emitted": np.int64(self._pending_seq),
                "sim_time": pd.Timestamp(self.sim_time),
            }
        )

    def use_clock(self, clock: Callable[[], datetime] | None, sim_seconds_per_event: float) -> None:
        """Run on (a new) `clock`, None for simulated time, at a new event spacing:
        for a generator resumed from a saved state."""
        if sim_seconds_per_event <= 0:
            raise ValueError("sim_seconds_per_event must be positive")
        self._clock = clock
        if sim_seconds_per_event != self.sim_seconds_per_event:
            self.sim_seconds_per_event = float(sim_seconds_per_event)
            self._refresh_stock_policy()

    def skip_to(self, when: datetime) -> None:
        """Move the clock on to `when` (no-op when it is not later): the shops were
        shut meanwhile. Shipment and world-event records due in between come out at
        `when`, so that a world resumed after a pause tells no stale news."""
        t = epoch_seconds(when)
        if t > self._t:
            self._t = t
            self._u = to_operational(t)
            self._floor = t

    def __getstate__(self) -> dict:
        # The clock is a live callable of the process that ran it: not part of the world.
        state = self.__dict__.copy()
        state["_clock"] = None
        return state

    def next_batch(self, n: int) -> EventBatch:
        """The next n records and the ground-truth rows that belong to them."""
        if n < 0:
            raise ValueError("n must be non-negative")
        # A step allocates hundreds of thousands of small tuples and creates no reference
        # cycles; pausing the cyclic garbage collector avoids rescanning them all the time.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            while len(self._pending) < n:
                self._step(min(max(n - len(self._pending), MIN_STEP_SLOTS), MAX_STEP_SLOTS))
        finally:
            if gc_was_enabled:
                gc.enable()
        records = self._pending[:n]
        del self._pending[:n]
        emit_times_ms = self._pending_times[:n]
        del self._pending_times[:n]
        first = self._pending_seq
        cutoff = first + n
        self._pending_seq = cutoff
        released: dict[str, list[dict]] = {}
        for name, rows in self._pending_truth.items():
            released[name] = [r for r in rows if r["record_seq"] < cutoff]
            self._pending_truth[name] = [r for r in rows if r["record_seq"] >= cutoff]
        for row in released["defects"]:
            row["record_index"] = row["record_seq"] - first
        self._emitted_stock.release(cutoff)
        return EventBatch(records=records, first_seq=first, emit_times_ms=emit_times_ms, **released)

    # ------------------------------------------------------------------ setup helpers
    def _refresh_stock_policy(self) -> None:
        """Size reorder points to the expected store demand of the current month."""
        inv = self._inventory
        store_units_per_second = (
            ORDER_SHARE
            * STORE_ORDER_SHARE
            * MEAN_STORE_ACCEPTANCE
            * UNITS_PER_ORDER
            / self.sim_seconds_per_event
        )
        store_share = self.world.latent.store_traffic[inv.key_store]
        demand = store_units_per_second * store_share * self._demand.expected_store_sku_share()
        lead = self._planner.mean_lead_seconds()[inv.key_store] + _REPLENISHMENT_OVERHEAD_SECONDS
        inv.set_policy(demand, lead)

    def _plan_initial_replenishment(self) -> None:
        """Order stock for keys that start below their reorder point, a store at a time."""
        inv = self._inventory
        keys = inv.keys_needing_replenishment()
        if len(keys) == 0:
            return
        stores = inv.key_store[keys]
        draw = self._planner.draw.next
        for store in np.unique(stores).tolist():
            store_keys = keys[stores == store].tolist()
            for i in range(0, len(store_keys), _INITIAL_SHIPMENT_MAX_LINES):
                lines = []
                for key in store_keys[i : i + _INITIAL_SHIPMENT_MAX_LINES]:
                    qty = inv.shortfall(key)
                    inv.on_order[key] += qty
                    lines.append((int(inv.key_sku[key]), qty, key))
                # Spread the opening wave over the first half hour.
                self._push(self._planner.plan(self._t + draw() * 1500.0, store, lines))

    def _push(self, item: Shipment | WorldEvent) -> None:
        when = item.created_at if isinstance(item, Shipment) else item.announced_at
        self._heap_seq += 1
        heapq.heappush(self._heap, (when, self._heap_seq, item))

    def _push_at(self, when: float, item: Shipment) -> None:
        self._heap_seq += 1
        heapq.heappush(self._heap, (when, self._heap_seq, item))

    def _schedule_world_events(self) -> None:
        for event in self._timeline.take_new_world_events():
            self._push(event)

    # ------------------------------------------------------------------ the step
    def _slot_times(self, k: int) -> np.ndarray:
        """Times of the next k shop events, cut at the next month/promotion-week boundary."""
        if self._clock is None:
            u = self._u + np.cumsum(self._rng.exponential(self.sim_seconds_per_event, k))
            t = from_operational(u)
        else:
            hi = max(epoch_seconds(self._clock()), self._t)
            t = self._t + (hi - self._t) * (np.arange(1, k + 1) / k)
            u = None
        boundary = min(next_month_start(t[0]), promotion_week_start(promotion_week_index(t[0]) + 1))
        cut = max(int(np.searchsorted(t, boundary, side="left")), 1)
        if u is not None:
            self._u = float(u[cut - 1])
        return t[:cut]

    def _step(self, slots: int) -> None:
        rng, demand = self._rng, self._demand
        times = self._slot_times(slots)
        t_from, t_to = self._t, float(times[-1])
        self._timeline.ensure(t_to + 6 * HOUR)
        self._timeline.forget_before(t_from - HOUR)
        self._schedule_world_events()
        month_before = demand.month
        demand.set_epoch(month_of(times[0]), promotion_week_index(times[0]))
        if demand.month != month_before:
            self._refresh_stock_policy()

        kind = np.searchsorted(_SLOT_CUM, rng.random(len(times)) * _SLOT_CUM[-1], side="right")

        groups: list[tuple[np.ndarray, list[KafkaRecord]]] = []
        groups.append(self._clicks(times[kind == 0]))

        orders = self._sample_orders(times[kind == 1])
        sched_times: list[float] = []
        sched_records: list[KafkaRecord] = []
        shipment_rows: list[tuple[int, dict]] = []
        deliveries: list[tuple[int, int, int]] = []
        stockouts = self._run_stock(
            orders, t_to, sched_times, sched_records, shipment_rows, deliveries
        )
        order_times, order_records, order_index_of = self._encode_orders(orders)
        groups.append((order_times, order_records))

        rating_times, rating_records, rating_rows = self._ratings(times[kind == 2])
        groups.append((rating_times, rating_records))
        self._remember_purchases(orders)

        groups.append((np.asarray(sched_times, dtype=np.float64), sched_records))
        groups.append(self._weather(t_from, t_to))

        # Merge all groups by event time (stable: ties keep group order).
        all_times = np.concatenate([g[0] for g in groups])
        all_records: list[KafkaRecord] = [r for g in groups for r in g[1]]
        offsets = np.cumsum([0] + [len(g[1]) for g in groups])
        perm = np.argsort(all_times, kind="stable")
        # itemgetter builds the reordered list in C; it returns a bare item for one index.
        merged = (
            list(operator.itemgetter(*perm)(all_records))
            if len(perm) > 1
            else [all_records[i] for i in perm]
        )
        merged_times = all_times[perm]
        position = np.empty(len(perm), dtype=np.int64)
        position[perm] = np.arange(len(perm))

        injected = self._injector.inject(merged)
        final_position = injected.position_of
        seq0 = self._pending_seq + len(self._pending)
        truth = self._pending_truth

        order_offset, rating_offset, sched_offset = offsets[1], offsets[2], offsets[3]
        for j, row in enumerate(rating_rows):
            row["record_seq"] = seq0 + int(final_position[position[rating_offset + j]])
            truth["rating_truth"].append(row)
        for sched_i, row in shipment_rows:
            row["record_seq"] = seq0 + int(final_position[position[sched_offset + sched_i]])
            truth["shipment_truth"].append(row)
        # A stock-out belongs to its order's record, or (when the whole basket was
        # unavailable and no order was emitted) to the first record at/after its time,
        # which may be the first record of the next step.
        fallback = np.searchsorted(merged_times, [t for t, _, _ in stockouts], side="left")
        for (_, order, row), fallback_pos in zip(stockouts, fallback.tolist(), strict=True):
            emitted = order_index_of.get(order)
            merged_pos = fallback_pos if emitted is None else position[order_offset + emitted]
            if merged_pos < len(merged):
                row["record_seq"] = seq0 + int(final_position[merged_pos])
            else:
                row["record_seq"] = seq0 + len(injected.records)
            truth["stockouts"].append(row)
        for row in injected.defects:
            row["record_seq"] = seq0 + row.pop("position")
            truth["defects"].append(row)
        # Each sale and delivery, with the record that tells it.
        sales, sold_keys, sold_units = self._store_sales(orders, order_index_of)
        delivered = np.asarray(deliveries, dtype=np.int64).reshape(-1, 3)
        self._emitted_stock.add(
            seq0 + final_position[position[np.concatenate([order_offset + sales,
                                                           sched_offset + delivered[:, 0]])]],
            np.concatenate([sold_keys, delivered[:, 1]]),
            np.concatenate([-sold_units, delivered[:, 2]]),
        )  # fmt: skip
        self._pending.extend(injected.records)
        self._pending_times.extend(_emission_times_ms(injected, merged_times, t_from))
        self._t = t_to

    # ------------------------------------------------------------------ clickstream
    def _clicks(self, t: np.ndarray) -> tuple[np.ndarray, list[KafkaRecord]]:
        rng, demand, sessions = self._rng, self._demand, self._sessions
        session = sessions.sessions_at(t, rng)
        customer = sessions.customers(session, demand)
        sku = demand.choose_items(customer, rng, candidates=2)
        # Liked items get carted and wishlisted more: clicks carry the taste signal too.
        liking = 1.0 / (1.0 + np.exp(-2.0 * demand.affinity(customer, sku)))
        p_cart = 0.06 + 0.16 * liking
        p_remove = 0.05
        p_wish = 0.04 + 0.08 * liking
        u = rng.random(len(t))
        action = np.where(
            u < p_cart,
            1,
            np.where(u < p_cart + p_remove, 2, np.where(u < p_cart + p_remove + p_wish, 3, 0)),
        )
        channel = np.where(sessions.is_app(session), 2, 1)
        session_ids = [f"S-{h:016x}" for h in session.tolist()]
        values = encode_clicks(
            self._ids.take(len(t)),
            iso_ms_array(t),
            session_ids,
            self._customer_ids[customer].tolist(),
            self._sku_ids[sku].tolist(),
            [ACTIONS[a] for a in action.tolist()],
            [CHANNELS[c] for c in channel.tolist()],
        )
        records = make_records(TOPIC_CLICKSTREAM, [s.encode() for s in session_ids], values)
        return t, records

    # ------------------------------------------------------------------ orders and stock
    def _sample_orders(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Order headers and lines for order slots at times t (stock not applied yet)."""
        rng, demand = self._rng, self._demand
        n = len(t)
        store = np.full(n, -1, dtype=np.int64)
        channel = np.zeros(n, dtype=np.int64)
        customer = np.zeros(n, dtype=np.int64)

        tries_store = rng.random(n) < STORE_ORDER_SHARE
        idx = np.flatnonzero(tries_store)
        chosen = demand.stores_by_traffic(rng, len(idx))
        region = demand.store_region[chosen]
        factor = self._timeline.store_traffic_factor(region, t[idx])
        visits = rng.random(len(idx)) < factor / MAX_TRAFFIC_FACTOR
        # Storms, strikes and protests keep shoppers at home; they order online instead.
        customer[idx] = demand.customers_in_regions(region, rng)
        store[idx[visits]] = chosen[visits]
        stayed_home = idx[~visits]
        channel[stayed_home] = np.where(rng.random(len(stayed_home)) < SessionPool.APP_SHARE, 2, 1)

        online = np.flatnonzero(~tries_store)
        session = self._sessions.sessions_at(t[online], rng)
        customer[online] = self._sessions.customers(session, demand)
        channel[online] = np.where(self._sessions.is_app(session), 2, 1)

        n_lines = rng.choice(4, size=n, p=_LINES_P) + 1
        line_order = np.repeat(np.arange(n), n_lines)
        line_customer = customer[line_order]
        line_store = store[line_order]
        sku = np.empty(len(line_order), dtype=np.int64)
        in_store = line_store >= 0
        sku[~in_store] = demand.choose_items(line_customer[~in_store], rng, candidates=4)
        sku[in_store] = demand.choose_items(
            line_customer[in_store], rng, candidates=4, store=line_store[in_store]
        )
        # A basket holds each sku once.
        _, first = np.unique(line_order * demand.n_products + sku, return_index=True)
        keep = np.sort(first)
        line_order, sku, line_store = line_order[keep], sku[keep], line_store[keep]
        quantity = rng.choice(3, size=len(keep), p=_QUANTITY_P) + 1
        key = np.full(len(keep), -1, dtype=np.int64)
        key[line_store >= 0] = self._inventory.key_of[
            line_store[line_store >= 0], sku[line_store >= 0]
        ]
        line_start = np.searchsorted(line_order, np.arange(n + 1))
        first_id = self._order_counter + 1
        self._order_counter += n
        return {
            "t": t,
            "store": store,
            "channel": channel,
            "customer": customer,
            "order_number": np.arange(first_id, first_id + n),
            "line_start": line_start,
            "sku": sku,
            "quantity": quantity,
            "unit_price": demand.unit_prices(sku),
            "key": key,
            "sold": np.ones(len(keep), dtype=bool),
        }

    def _run_stock(
        self,
        orders: dict[str, np.ndarray],
        t_to: float,
        sched_times: list[float],
        sched_records: list[KafkaRecord],
        shipment_rows: list[tuple[int, dict]],
        deliveries: list[tuple[int, int, int]],
    ) -> list[tuple[float, int, dict]]:
        """Apply store orders and scheduled records in time order up to t_to.

        Marks unsold lines in orders["sold"], appends due scheduled records (and shipment
        truth rows, and the (record index, key, units) of each delivered line, with their
        index) to the given lists, and returns stock-outs as (time, order index, truth row).
        """
        inv = self._inventory
        on_hand, on_order, reorder = inv.on_hand, inv.on_order, inv.reorder_point
        heap = self._heap
        stockouts: list[tuple[float, int, dict]] = []
        times = orders["t"].tolist()
        stores = orders["store"].tolist()
        line_start = orders["line_start"].tolist()
        keys = orders["key"].tolist()
        quantities = orders["quantity"].tolist()
        skus = orders["sku"].tolist()
        sold = orders["sold"]
        numbers = orders["order_number"].tolist()

        def run_scheduled(until: float) -> None:
            while heap and heap[0][0] <= until:
                when, _, item = heapq.heappop(heap)
                when = max(when, self._floor)
                self._emit_scheduled(
                    when, item, sched_times, sched_records, shipment_rows, deliveries
                )

        for o, store in enumerate(stores):
            if store < 0:
                continue
            t = times[o]
            run_scheduled(t)
            for li in range(line_start[o], line_start[o + 1]):
                k, q = keys[li], quantities[li]
                if on_hand[k] >= q:
                    on_hand[k] -= q
                    if on_hand[k] + on_order[k] <= reorder[k]:
                        self._replenish(t, store, k)
                else:
                    sold[li] = False
                    stockouts.append(
                        (
                            t,
                            o,
                            {
                                "store_id": self._store_ids[store],
                                "sku": self._sku_ids[skus[li]],
                                "event_time": to_datetime(t),
                                "order_id": f"O-{numbers[o]:010d}",
                                "quantity": q,
                            },
                        )
                    )
        run_scheduled(t_to)
        return stockouts

    def _replenish(self, t: float, store: int, key: int) -> None:
        inv = self._inventory
        qty = inv.shortfall(key)
        if qty <= 0:
            return
        inv.on_order[key] += qty
        self._push(self._planner.plan(t, store, [(int(inv.key_sku[key]), qty, key)]))

    def _emit_scheduled(
        self,
        when: float,
        item: Shipment | WorldEvent,
        sched_times: list[float],
        sched_records: list[KafkaRecord],
        shipment_rows: list[tuple[int, dict]],
        deliveries: list[tuple[int, int, int]],
    ) -> None:
        """Emit one due scheduled record; deliveries restock and may trigger new orders."""
        if isinstance(item, WorldEvent):
            value = encode_world_event(
                self._ids.next(),
                iso_ms(when),
                item.world_event_id,
                self._region_names[item.region],
                item.kind,
                item.severity,
                iso_ms(item.starts_at),
                iso_ms(item.ends_at),
            )
            sched_times.append(when)
            sched_records.append(
                KafkaRecord(TOPIC_WORLD_EVENTS, self._region_keys[item.region], value)
            )
            return
        sh, planner = item, self._planner
        status = STATUS[sh.stage]
        value = encode_shipment(
            self._ids.next(),
            iso_ms(when),
            status,
            sh.shipment_id,
            planner.route_ids[sh.route],
            planner.route_origin_ids[sh.route],
            planner.route_store_ids[sh.route],
            planner.route_carrier_ids[sh.route],
            [(self._sku_ids[sku], q) for sku, q, _ in sh.lines],
            iso_ms(sh.eta),
            sh.delay_minutes if sh.stage == DELIVERED else None,
        )
        if sh.stage == CREATED:
            shipment_rows.append((len(sched_records), self._shipment_truth(sh)))
        sched_times.append(when)
        sched_records.append(KafkaRecord(TOPIC_SHIPMENTS, sh.shipment_id.encode(), value))
        if sh.stage == DELIVERED:
            inv = self._inventory
            for _, q, key in sh.lines:
                deliveries.append((len(sched_records) - 1, key, q))
                inv.on_hand[key] += q
                inv.on_order[key] -= q
                if inv.on_hand[key] + inv.on_order[key] <= inv.reorder_point[key]:
                    self._replenish(when, sh.store, key)
        sh.advance()
        next_time = sh.next_stage_time()
        if next_time is not None:
            self._push_at(next_time, sh)

    def _shipment_truth(self, sh: Shipment) -> dict:
        planner = self._planner
        return {
            "shipment_id": sh.shipment_id,
            "route_id": planner.route_ids[sh.route],
            "origin_dc_id": planner.route_origin_ids[sh.route],
            "destination_store_id": planner.route_store_ids[sh.route],
            "carrier_id": planner.route_carrier_ids[sh.route],
            "departed_at": to_datetime(sh.departed_at),
            "eta": to_datetime(sh.eta),
            "origin_weather_severity": sh.origin_weather_severity,
            "destination_weather_severity": sh.destination_weather_severity,
            "world_event_severity": sh.world_event_severity,
            "true_delay_probability": sh.true_probability,
            "delayed": sh.delayed,
            "delay_minutes": sh.delay_minutes,
        }

    def _encode_orders(
        self, orders: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, list[KafkaRecord], dict[int, int]]:
        """Order records for orders with at least one sold line; also maps order index ->
        record index within the returned list."""
        sold_mask = orders["sold"]
        sold = sold_mask.tolist()
        line_start = orders["line_start"].tolist()
        skus = self._sku_ids[orders["sku"]].tolist()
        quantities = orders["quantity"].tolist()
        prices = orders["unit_price"].tolist()
        times = orders["t"]
        lines_sold = (
            np.add.reduceat(sold_mask.astype(np.int64), orders["line_start"][:-1])
            if len(sold_mask)
            else np.zeros(0, dtype=np.int64)
        )
        emitted = np.flatnonzero(lines_sold > 0).tolist()
        iso = iso_ms_array(times[emitted]) if emitted else []
        ids = self._ids.take(len(emitted))
        customers = self._customer_ids[orders["customer"]].tolist()
        stores, channels = orders["store"].tolist(), orders["channel"].tolist()
        numbers = orders["order_number"].tolist()
        records: list[KafkaRecord] = []
        all_sold = bool(sold_mask.all())
        for j, o in enumerate(emitted):
            lo, hi = line_start[o], line_start[o + 1]
            if all_sold:
                lines = list(zip(skus[lo:hi], quantities[lo:hi], prices[lo:hi], strict=True))
            else:
                lines = [(skus[li], quantities[li], prices[li]) for li in range(lo, hi) if sold[li]]
            total = round(sum(q * p for _, q, p in lines), 2)
            order_id = f"O-{numbers[o]:010d}"
            store = stores[o]
            value = encode_order(
                ids[j],
                iso[j] + "Z",
                order_id,
                customers[o],
                None if store < 0 else self._store_ids[store],
                CHANNELS[channels[o]],
                lines,
                total,
            )
            records.append(KafkaRecord(TOPIC_ORDERS, order_id.encode(), value))
        index_of = {o: j for j, o in enumerate(emitted)}
        return times[emitted], records, index_of

    @staticmethod
    def _store_sales(
        orders: dict[str, np.ndarray], index_of: dict[int, int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(order record index, stock key, units) of each line sold in a store."""
        n = len(orders["t"])
        line_order = np.repeat(np.arange(n), np.diff(orders["line_start"]))
        sold = np.flatnonzero(orders["sold"] & (orders["store"][line_order] >= 0))
        record_of = np.full(n, -1, dtype=np.int64)
        if index_of:
            record_of[list(index_of)] = list(index_of.values())
        return record_of[line_order[sold]], orders["key"][sold], orders["quantity"][sold]

    def _remember_purchases(self, orders: dict[str, np.ndarray]) -> None:
        """Keep recent sold lines: ratings are written about things people bought."""
        sold = orders["sold"]
        line_order = np.repeat(np.arange(len(orders["t"])), np.diff(orders["line_start"]))
        customer = orders["customer"][line_order][sold]
        sku = orders["sku"][sold]
        self._purchase_customer = np.concatenate([self._purchase_customer, customer])[
            -PURCHASE_MEMORY:
        ]
        self._purchase_sku = np.concatenate([self._purchase_sku, sku])[-PURCHASE_MEMORY:]

    # ------------------------------------------------------------------ ratings
    def _ratings(self, t: np.ndarray) -> tuple[np.ndarray, list[KafkaRecord], list[dict]]:
        rng, demand, world = self._rng, self._demand, self.world
        n = len(t)
        available = len(self._purchase_customer)
        from_memory = min(n, available)
        # Each remembered purchase is rated at most once.
        picked = (
            rng.choice(available, size=from_memory, replace=False)
            if from_memory
            else np.zeros(0, dtype=np.int64)
        )
        customer = np.empty(n, dtype=np.int64)
        sku = np.empty(n, dtype=np.int64)
        customer[:from_memory] = self._purchase_customer[picked]
        sku[:from_memory] = self._purchase_sku[picked]
        if from_memory:
            keep = np.ones(available, dtype=bool)
            keep[picked] = False
            self._purchase_customer = self._purchase_customer[keep]
            self._purchase_sku = self._purchase_sku[keep]
        if from_memory < n:  # cold start: nothing bought yet
            rest = n - from_memory
            customer[from_memory:] = demand.customers_by_activity(rng.random(rest))
            sku[from_memory:] = demand.choose_items(customer[from_memory:], rng, candidates=4)
        # Shuffle so that memory-based and cold-start ratings interleave in time.
        order = rng.permutation(n)
        customer, sku = customer[order], sku[order]

        mu = latent_scores(world, customer, sku)
        stars = draw_stars(mu, world.latent.rating_noise_sd, rng)
        true_score = expected_stars(mu, world.latent.rating_noise_sd)
        event_ids = self._ids.take(n)
        customer_ids = self._customer_ids[customer].tolist()
        sku_ids = self._sku_ids[sku].tolist()
        stars_list = stars.tolist()
        values = encode_ratings(event_ids, iso_ms_array(t), customer_ids, sku_ids, stars_list)
        records = make_records(TOPIC_RATINGS, [s.encode() for s in sku_ids], values)
        rows = [
            {
                "event_id": e,
                "customer_id": c,
                "sku": s,
                "stars": st,
                "true_score": ts,
                "event_time": to_datetime(tt),
            }
            for e, c, s, st, ts, tt in zip(
                event_ids,
                customer_ids,
                sku_ids,
                stars_list,
                true_score.tolist(),
                t.tolist(),
                strict=True,
            )
        ]
        return t, records, rows

    # ------------------------------------------------------------------ weather
    def _weather(self, t_from: float, t_to: float) -> tuple[np.ndarray, list[KafkaRecord]]:
        tl = self._timeline
        times: list[float] = []
        records: list[KafkaRecord] = []
        for when, region, bucket, alert in tl.observations_between(t_from, t_to):
            value = encode_weather(
                self._ids.next(),
                iso_ms(when),
                self._region_names[region],
                "alert" if alert else "observation",
                CONDITIONS[tl.condition[region, bucket]],
                int(tl.severity[region, bucket]),
                float(tl.temperature[region, bucket]),
                float(tl.wind[region, bucket]),
            )
            times.append(when)
            records.append(KafkaRecord(TOPIC_WEATHER, self._region_keys[region], value))
        return np.asarray(times, dtype=np.float64), records
