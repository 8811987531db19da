"""Replenishment shipments: planning, the true delay model and the lifecycle timeline.

A shipment is fully decided when it is planned: route, departure, ETA, whether it will be
late and by how much. Its lifecycle records (created -> departed -> [delayed] -> delivered)
are then emitted when the simulated clock reaches each moment.

The delay model is the ground truth a shipment-delay classifier tries to recover:
P(delivered more than 60 minutes after ETA) = sigmoid(logit) with

    logit = -3.1 + 0.42 * origin weather severity at departure
                 + 0.55 * destination weather severity at departure
                 + 0.45 * max severity of world events active in either region at departure
                 + 6.0  * (1 - carrier reliability)
                 + 0.0015 * route distance in km

Every input is observable from the event streams and reference tables (weather and
world-event topics, routes, carriers), so a model can reach the Bayes-optimal score that
`scores.best_achievable_scores` reports from `shipment_truth`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from retailstream.world.reference import World
from retailstream.world.simtime import HOUR
from retailstream.world.weather import RegionTimeline

LATE_THRESHOLD_MINUTES = 60

DELAY_INTERCEPT = -3.1
DELAY_COEF_ORIGIN_WEATHER = 0.42
DELAY_COEF_DESTINATION_WEATHER = 0.55
DELAY_COEF_WORLD_EVENT = 0.45
DELAY_COEF_UNRELIABILITY = 6.0
DELAY_COEF_DISTANCE_KM = 0.0015

CREATED, DEPARTED, DELAYED, DELIVERED = range(4)
STATUS = ("created", "departed", "delayed", "delivered")


def delay_probability(
    origin_weather_severity: float,
    destination_weather_severity: float,
    world_event_severity: float,
    carrier_reliability: float,
    distance_km: float,
) -> float:
    """True probability that a shipment arrives more than 60 minutes after its ETA.

    Expects severities on the 0..5 scale of the weather and world-event topics (0 when no
    world event is active), reliability in 0..1 and distance in km; returns a probability.
    """
    logit = (
        DELAY_INTERCEPT
        + DELAY_COEF_ORIGIN_WEATHER * origin_weather_severity
        + DELAY_COEF_DESTINATION_WEATHER * destination_weather_severity
        + DELAY_COEF_WORLD_EVENT * world_event_severity
        + DELAY_COEF_UNRELIABILITY * (1.0 - carrier_reliability)
        + DELAY_COEF_DISTANCE_KM * distance_km
    )
    return 1.0 / (1.0 + math.exp(-logit))


@dataclass(slots=True)
class Shipment:
    """One replenishment shipment; `lines` holds (sku position, quantity, stock key)."""

    shipment_id: str
    route: int
    store: int
    lines: list[tuple[int, int, int]]
    created_at: float
    departed_at: float
    eta: float
    delivered_at: float
    delay_minutes: int
    delayed: bool
    true_probability: float
    origin_weather_severity: int
    destination_weather_severity: int
    world_event_severity: int
    stage: int = CREATED

    def next_stage_time(self) -> float | None:
        """When the next lifecycle record is due, or None after delivery."""
        if self.stage == DEPARTED:
            return self.departed_at
        if self.stage == DELAYED:
            # The moment it is known to be more than an hour late.
            return self.eta + LATE_THRESHOLD_MINUTES * 60.0 + 1.0
        if self.stage == DELIVERED:
            return self.delivered_at
        return None

    def advance(self) -> None:
        """Move to the next stage; the delayed notice exists only for late shipments."""
        if self.stage == CREATED:
            self.stage = DEPARTED
        elif self.stage == DEPARTED:
            self.stage = DELAYED if self.delayed else DELIVERED
        elif self.stage == DELAYED:
            self.stage = DELIVERED
        else:
            self.stage = DELIVERED + 1


class UniformPool:
    """Uniform draws handed out one at a time, drawn from numpy in blocks (fast in loops)."""

    def __init__(self, rng: np.random.Generator, block: int = 8192) -> None:
        self._rng = rng
        self._block = block
        self._values: list[float] = []
        self._i = 0

    def next(self) -> float:
        if self._i >= len(self._values):
            self._values = self._rng.random(self._block).tolist()
            self._i = 0
        value = self._values[self._i]
        self._i += 1
        return value


class ShipmentPlanner:
    """Turns a replenishment need into a fully planned `Shipment`."""

    PRIMARY_ROUTE_SHARE = 0.85

    def __init__(self, world: World, timeline: RegionTimeline, seed: int) -> None:
        self.world = world
        self.timeline = timeline
        self.draw = UniformPool(np.random.default_rng([seed, 301]))
        index = world.index
        self.counter = 0
        n_stores = len(world.stores)
        self.primary_routes: list[list[int]] = [[] for _ in range(n_stores)]
        self.backup_routes: list[list[int]] = [[] for _ in range(n_stores)]
        for r, (s, primary) in enumerate(
            zip(index.route_store.tolist(), index.route_is_primary.tolist(), strict=True)
        ):
            (self.primary_routes if primary else self.backup_routes)[s].append(r)
        self.route_origin_region = index.dc_region[index.route_origin].tolist()
        self.route_dest_region = index.store_region[index.route_store].tolist()
        self.route_reliability = index.carrier_reliability[index.route_carrier].tolist()
        self.route_distance = index.route_distance_km.tolist()
        self.route_lead_seconds = (index.route_lead_time_hours * HOUR).tolist()
        self.route_ids = index.route_ids.tolist()
        self.route_origin_ids = index.dc_ids[index.route_origin].tolist()
        self.route_store_ids = index.store_ids[index.route_store].tolist()
        self.route_carrier_ids = index.carrier_ids[index.route_carrier].tolist()

    def mean_lead_seconds(self) -> np.ndarray:
        """Average route lead time per store over its primary routes, in seconds."""
        return np.array(
            [
                np.mean([self.route_lead_seconds[r] for r in routes])
                for routes in self.primary_routes
            ]
        )

    def plan(self, need_time: float, store: int, lines: list[tuple[int, int, int]]) -> Shipment:
        """Plan a shipment to `store` for a need noticed at epoch seconds `need_time`.

        The DC picks it within 5-30 minutes, loads it for 1-3 hours, and it then travels
        the route's lead time; the outcome is drawn from `delay_probability` using the
        conditions at departure. The timeline must already cover need_time + 4 hours.
        """
        u = self.draw.next
        backups = self.backup_routes[store]
        pool = (
            self.primary_routes[store]
            if (not backups or u() < self.PRIMARY_ROUTE_SHARE)
            else backups
        )
        route = pool[min(int(u() * len(pool)), len(pool) - 1)]

        created = need_time + 300.0 + u() * 1500.0
        departed = created + HOUR + u() * 2.0 * HOUR
        eta = departed + self.route_lead_seconds[route]
        o_region, d_region = self.route_origin_region[route], self.route_dest_region[route]
        tl = self.timeline
        o_sev = tl.weather_severity_at(o_region, departed)
        d_sev = tl.weather_severity_at(d_region, departed)
        e_sev = max(
            tl.event_severity_at(o_region, departed), tl.event_severity_at(d_region, departed)
        )
        p = delay_probability(
            o_sev, d_sev, e_sev, self.route_reliability[route], self.route_distance[route]
        )
        delayed = u() < p
        if delayed:
            # Late deliveries: at least an hour past ETA, long tail up to two days.
            delay = LATE_THRESHOLD_MINUTES + 1 + min(int(-150.0 * math.log(1.0 - u())), 2880)
        else:
            # On-time deliveries scatter around the ETA, early ones included.
            gauss = math.sqrt(-2.0 * math.log(1.0 - u())) * math.cos(2.0 * math.pi * u())
            delay = max(-90, min(LATE_THRESHOLD_MINUTES, round(-8.0 + 18.0 * gauss)))
        self.counter += 1
        return Shipment(
            shipment_id=f"SH-{self.counter:09d}",
            route=route,
            store=store,
            lines=lines,
            created_at=created,
            departed_at=departed,
            eta=eta,
            delivered_at=eta + 60.0 * delay,
            delay_minutes=int(delay),
            delayed=delayed,
            true_probability=p,
            origin_weather_severity=o_sev,
            destination_weather_severity=d_sev,
            world_event_severity=e_sev,
        )
