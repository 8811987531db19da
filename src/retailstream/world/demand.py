"""Who shops, what they look at and what they buy: the vectorised demand model.

Item choice is a small discrete-choice model: draw a few candidate items from the base
demand distribution (popularity x season-of-year x promotion boost), then the customer
picks the candidate with the highest utility (taste match u.v + item quality + Gumbel
noise). That keeps every draw O(candidates) instead of O(catalogue), yet what people buy
and click genuinely reflects their hidden tastes, seasons and promotions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retailstream.world.reference import World
from retailstream.world.simtime import WEEK, WEEK_ORIGIN

_U53 = float(1 << 53)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array: a fast, bijective, well-mixed hash."""
    z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash_unit(h: np.ndarray) -> np.ndarray:
    """Map uint64 hashes to floats uniform in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) / _U53


@dataclass(frozen=True)
class PromotionWeek:
    """Skus on promotion during one week (Monday to Monday, local time) and their discount."""

    week: int
    discount: np.ndarray  # (products,) fraction off the list price, 0 when not promoted


def promotion_week_index(t: float) -> int:
    """Index of the promotion week containing epoch seconds t."""
    return int((t - WEEK_ORIGIN) // WEEK)


def promotion_week_start(week: int) -> float:
    """Epoch seconds at which promotion week `week` starts."""
    return WEEK_ORIGIN + week * WEEK


def promotions_for_week(seed: int, n_products: int, week: int) -> PromotionWeek:
    """The promotion plan of a week: about 4% of skus, 20-50% off. Pure function of
    (seed, week), so any part of the pipeline can recompute it."""
    rng = np.random.default_rng([seed, 201, week])
    promoted = rng.random(n_products) < 0.04
    discount = np.where(promoted, rng.choice([0.2, 0.3, 0.4, 0.5], n_products), 0.0)
    return PromotionWeek(week=week, discount=discount)


# Demand multiplier of a promoted sku: 20% off doubles demand, 50% off makes it 3.5x.
PROMOTION_ELASTICITY = 5.0


class DemandModel:
    """Samples customers, stores and items for shop events; holds no mutable sim state
    other than the current (month, promotion week) demand distribution."""

    def __init__(self, world: World, seed: int) -> None:
        self.world = world
        self.seed = seed
        latent, index = world.latent, world.index
        self.n_products = len(world.products)
        self.n_customers = len(world.customers)
        self.n_stores = len(world.stores)
        self.customer_factors = latent.customer_factors
        self.item_factors = latent.item_factors
        self.item_bias = latent.item_bias

        activity = latent.customer_activity
        self.activity_cum = np.cumsum(activity)
        # Customers grouped by home region, for "a customer living near this store".
        self.by_region = np.argsort(index.customer_region, kind="stable")
        region_counts = np.bincount(index.customer_region, minlength=len(world.regions))
        self.region_end = np.cumsum(region_counts)
        self.region_start = self.region_end - region_counts
        grouped_cum = np.cumsum(activity[self.by_region])
        self.grouped_cum = np.concatenate([[0.0], grouped_cum])

        self.store_cum = np.cumsum(latent.store_traffic)
        self.store_region = index.store_region
        ptr = index.assortment_ptr
        self.assortment_ptr = ptr
        self.assortment_sku = index.assortment_sku
        self.assortment_count = np.diff(ptr)
        self.carried = np.zeros((self.n_stores, self.n_products), dtype=bool)
        self.carried[
            np.repeat(np.arange(self.n_stores), self.assortment_count), self.assortment_sku
        ] = True

        self.month = -1
        self.promotions = PromotionWeek(week=-1, discount=np.zeros(self.n_products))
        self.weights = np.zeros(self.n_products)
        self.weights_cum = np.zeros(self.n_products)

    # ------------------------------------------------------------------ epoch
    def set_epoch(self, month: int, week: int) -> bool:
        """Switch the demand distribution to calendar month 0..11 and promotion week.

        Returns True when anything changed.
        """
        if month == self.month and week == self.promotions.week:
            return False
        if week != self.promotions.week:
            self.promotions = promotions_for_week(self.seed, self.n_products, week)
        self.month = month
        latent = self.world.latent
        self.weights = (
            latent.popularity
            * latent.seasonal_weights[:, month]
            * (1.0 + PROMOTION_ELASTICITY * self.promotions.discount)
        )
        self.weights_cum = np.cumsum(self.weights)
        return True

    def unit_prices(self, sku: np.ndarray) -> np.ndarray:
        """Selling price of each sku this week (list price minus any promotion), 2 decimals."""
        list_price = self.world.index.product_price[sku]
        return np.round(list_price * (1.0 - self.promotions.discount[sku]), 2)

    # ------------------------------------------------------------------ people and places
    def customers_by_activity(self, u: np.ndarray) -> np.ndarray:
        """Customers drawn proportionally to shopping activity, from uniforms u in [0, 1)."""
        idx = np.searchsorted(self.activity_cum, u * self.activity_cum[-1], side="right")
        return np.minimum(idx, self.n_customers - 1)

    def customers_in_regions(self, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One activity-weighted customer living in each given region."""
        lo = self.grouped_cum[self.region_start[region]]
        hi = self.grouped_cum[self.region_end[region]]
        target = lo + rng.random(len(region)) * (hi - lo)
        pos = np.searchsorted(self.grouped_cum, target, side="right") - 1
        pos = np.clip(pos, self.region_start[region], self.region_end[region] - 1)
        return self.by_region[pos]

    def stores_by_traffic(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Stores drawn proportionally to their footfall."""
        idx = np.searchsorted(self.store_cum, rng.random(n) * self.store_cum[-1], side="right")
        return np.minimum(idx, self.n_stores - 1)

    # ------------------------------------------------------------------ items
    def base_draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Skus from the base demand distribution (no taste), any shape."""
        total = self.weights_cum[-1]
        idx = np.searchsorted(self.weights_cum, rng.random(shape) * total, side="right")
        return np.minimum(idx, self.n_products - 1)

    def affinity(self, customer: np.ndarray, sku: np.ndarray) -> np.ndarray:
        """Hidden taste match u.v of customer/sku pairs (same shape arrays)."""
        return np.einsum("nk,nk->n", self.customer_factors[customer], self.item_factors[sku])

    def choose_items(
        self,
        customer: np.ndarray,
        rng: np.random.Generator,
        candidates: int,
        store: np.ndarray | None = None,
    ) -> np.ndarray:
        """One sku per customer: the best of `candidates` base draws by taste and quality.

        With `store` given, only skus that store carries are eligible; if no candidate is
        carried, a uniformly random sku of the store's assortment is taken instead.
        """
        n = len(customer)
        cand = self.base_draw(rng, (n, candidates))
        utility = np.einsum("nk,nck->nc", self.customer_factors[customer], self.item_factors[cand])
        utility += 0.5 * self.item_bias[cand] + rng.gumbel(0.0, 0.6, (n, candidates))
        if store is None:
            return cand[np.arange(n), np.argmax(utility, axis=1)]
        carried = self.carried[store[:, None], cand]
        utility = np.where(carried, utility, -np.inf)
        best = cand[np.arange(n), np.argmax(utility, axis=1)]
        none_carried = ~carried.any(axis=1)
        if none_carried.any():
            s = store[none_carried]
            pick = self.assortment_ptr[s] + (rng.random(len(s)) * self.assortment_count[s]).astype(
                np.int64
            )
            best[none_carried] = self.assortment_sku[pick]
        return best

    def expected_store_sku_share(self) -> np.ndarray:
        """Approximate share of a store's unit sales going to each carried sku, aligned with
        `assortment_sku` (base demand restricted to the assortment, taste ignored)."""
        w = self.weights[self.assortment_sku]
        store_of = np.repeat(np.arange(self.n_stores), self.assortment_count)
        totals = np.bincount(store_of, weights=w, minlength=self.n_stores)
        return w / totals[store_of]


class SessionPool:
    """Stateless browsing sessions: slot j holds a session that is replaced every
    `duration` simulated seconds (with a per-slot phase), so a session's id, customer and
    channel are pure hash functions of (slot, generation). The pool is sized so that a
    session sees about `events_per_session` clickstream events on average.
    """

    APP_SHARE = 0.55

    def __init__(
        self,
        seed: int,
        click_seconds_per_event: float,
        duration: float = 600.0,
        events_per_session: float = 8.0,
    ) -> None:
        self.duration = duration
        self.size = int(max(4, round(duration / (click_seconds_per_event * events_per_session))))
        self.salt = np.uint64(splitmix64(np.array([seed * 7919 + 17], dtype=np.uint64))[0])

    def sessions_at(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A session key (uint64) per event time: a random slot's current session."""
        slot = rng.integers(0, self.size, len(t)).astype(np.uint64)
        phase = hash_unit(splitmix64(slot ^ self.salt))
        generation = np.floor(np.asarray(t) / self.duration + phase).astype(np.uint64)
        return splitmix64(((slot << np.uint64(32)) | generation) ^ self.salt)

    def customers(self, session: np.ndarray, demand: DemandModel) -> np.ndarray:
        """The customer browsing in each session."""
        return demand.customers_by_activity(hash_unit(splitmix64(session ^ np.uint64(0xC0FFEE))))

    def is_app(self, session: np.ndarray) -> np.ndarray:
        """True where the session is in the mobile app rather than on the web."""
        return hash_unit(splitmix64(session ^ np.uint64(0xA99))) < self.APP_SHARE
