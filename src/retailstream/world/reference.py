"""Reference data (dimensions) of the simulated retailer, built deterministically from a seed.

`build_world(seed, scale)` returns a `World`: the tables a data platform would load as
dimensions (products, stores, distribution centres, customers, carriers, routes, initial
stock) plus the hidden state the event generator simulates from (taste vectors, biases,
popularity, seasonal demand). The hidden state is what makes the events learnable; it is
never exported as a table, but tests and "best achievable score" helpers may read it.

Every table uses plain column types only: str (object), int64, float64, bool and
datetime64[ns, UTC], so it converts to Delta/Spark without surprises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from retailstream.world import catalog
from retailstream.world.geo import haversine_km

Scale = Literal["small", "demo", "large"]

LATENT_DIM = 8
RATING_GLOBAL_MEAN = 3.55
RATING_NOISE_SD = 0.7


@dataclass(frozen=True)
class ScaleSpec:
    """Sizes of one world scale."""

    products: int
    stores: int
    customers: int
    assortment_fraction: float  # share of the catalogue an average store carries
    secondary_dcs: bool


SCALES: dict[str, ScaleSpec] = {
    "small": ScaleSpec(
        products=200, stores=20, customers=2_000, assortment_fraction=0.6, secondary_dcs=False
    ),
    "demo": ScaleSpec(
        products=2_000, stores=60, customers=20_000, assortment_fraction=0.25, secondary_dcs=True
    ),
    "large": ScaleSpec(
        products=20_000, stores=300, customers=100_000, assortment_fraction=0.06, secondary_dcs=True
    ),
}

# Months (0 = January) when a season's products sell best, and the shoulder months.
_SEASON_PEAK: dict[str, tuple[int, ...]] = {
    "spring": (2, 3, 4),
    "summer": (5, 6, 7),
    "autumn": (8, 9, 10),
    "winter": (11, 0, 1),
}
_SEASON_SHOULDER: dict[str, tuple[int, ...]] = {
    "spring": (1, 5),
    "summer": (4, 8),
    "autumn": (7, 11),
    "winter": (10, 2),
}
_CATEGORY_SHARE = {
    "dresses": 0.12,
    "tops": 0.14,
    "shirts": 0.08,
    "trousers": 0.1,
    "jeans": 0.07,
    "knitwear": 0.1,
    "outerwear": 0.07,
    "swimwear": 0.04,
    "shoes": 0.1,
    "accessories": 0.11,
    "bags": 0.07,
}
_COLOURS = (
    "Black",
    "White",
    "Ecru",
    "Navy",
    "Camel",
    "Sage",
    "Olive",
    "Burgundy",
    "Charcoal",
    "Sand",
    "Rust",
    "Sky Blue",
    "Blush",
    "Cream",
    "Khaki",
    "Cobalt",
    "Chocolate",
    "Lilac",
)
_SEGMENT_SHARE = (0.4, 0.32, 0.2, 0.08)
_SEGMENT_ACTIVITY = (0.35, 1.0, 2.2, 2.6)
# Customers sign up before any plausible simulation start, so no customer appears to act
# before they exist.
_SIGNUP_FROM = np.datetime64("2016-01-01T00:00:00", "s")
_SIGNUP_TO = np.datetime64("2023-12-31T23:59:59", "s")


@dataclass(frozen=True, eq=False)
class LatentState:
    """Hidden causes the generator simulates from; never exported as tables.

    Arrays are indexed by the row position of the matching table (product i is row i of
    `World.products`, customer j row j of `World.customers`, store s row s of `World.stores`).
    """

    global_mean: float
    rating_noise_sd: float
    customer_factors: np.ndarray  # (customers, LATENT_DIM) taste vectors
    item_factors: np.ndarray  # (products, LATENT_DIM)
    customer_bias: np.ndarray  # (customers,) how generous a rater is
    item_bias: np.ndarray  # (products,) intrinsic quality
    popularity: np.ndarray  # (products,) Zipf-like base demand share, sums to 1
    seasonal_weights: np.ndarray  # (products, 12) demand multiplier per calendar month
    customer_activity: np.ndarray  # (customers,) relative shopping frequency
    store_traffic: np.ndarray  # (stores,) relative footfall, sums to 1


@dataclass(frozen=True, eq=False)
class WorldIndex:
    """Integer-coded copies of the tables, shaped for fast vectorised simulation."""

    sku_ids: np.ndarray  # object array of str, by product position
    customer_ids: np.ndarray
    store_ids: np.ndarray
    dc_ids: np.ndarray
    carrier_ids: np.ndarray
    route_ids: np.ndarray
    product_price: np.ndarray  # float64
    product_category: np.ndarray  # int64 index into catalog.CATEGORIES
    product_season: np.ndarray  # int64 index into catalog.SEASONS
    product_case_pack: np.ndarray  # int64 replenishment lot size
    store_region: np.ndarray  # int64 index into catalog.REGIONS
    dc_region: np.ndarray
    customer_region: np.ndarray
    carrier_reliability: np.ndarray
    route_origin: np.ndarray  # dc position
    route_store: np.ndarray  # store position
    route_carrier: np.ndarray  # carrier position
    route_distance_km: np.ndarray
    route_lead_time_hours: np.ndarray
    route_is_primary: np.ndarray  # bool: from the store's nearest DC
    assortment_ptr: np.ndarray  # (stores + 1,) CSR offsets into assortment_sku
    assortment_sku: np.ndarray  # product positions, sorted within each store
    assortment_on_hand: np.ndarray  # initial stock aligned with assortment_sku


@dataclass(frozen=True, eq=False)
class World:
    """The retailer's reference data plus the hidden state behind its events."""

    seed: int
    scale: str
    products: pd.DataFrame
    stores: pd.DataFrame
    distribution_centres: pd.DataFrame
    customers: pd.DataFrame
    carriers: pd.DataFrame
    routes: pd.DataFrame
    initial_stock: pd.DataFrame
    latent: LatentState
    index: WorldIndex

    @property
    def regions(self) -> tuple[str, ...]:
        """Region names; `index.*_region` arrays are positions in this tuple."""
        return catalog.REGIONS

    def tables(self) -> dict[str, pd.DataFrame]:
        """The exportable dimension tables by name (what goes to Delta), hidden state excluded."""
        return {
            "products": self.products,
            "stores": self.stores,
            "distribution_centres": self.distribution_centres,
            "customers": self.customers,
            "carriers": self.carriers,
            "routes": self.routes,
            "initial_stock": self.initial_stock,
        }


def build_world(seed: int, scale: Scale = "small") -> World:
    """Build the reference data and hidden state of a retailer.

    Expects a non-negative integer seed and one of "small", "demo", "large". The same
    (seed, scale) always yields identical tables and hidden arrays. Sizes: small 200
    products / 20 stores / 2,000 customers; demo 2,000 / 60 / 20,000; large 20,000 / 300 /
    100,000. Everything is vectorised, so even "large" builds in a few seconds.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {sorted(SCALES)}")
    if seed < 0:
        raise ValueError("seed must be a non-negative integer")
    spec = SCALES[scale]

    # One independent stream per table, so e.g. a change to product generation does not
    # reshuffle the customers of an existing seed.
    def stream(salt: int) -> np.random.Generator:
        return np.random.default_rng([seed, salt])

    products, prod = _build_products(spec, stream(1))
    stores, store_region, store_traffic = _build_stores(spec, stream(2))
    dcs, dc_region = _build_distribution_centres(spec)
    carriers = _build_carriers()
    customers, cust = _build_customers(spec, store_region, store_traffic, stream(3))
    routes, route = _build_routes(stores, store_region, dcs, dc_region, carriers, stream(4))
    stock, assortment = _build_initial_stock(spec, stores, products, prod, store_traffic, stream(5))

    latent = LatentState(
        global_mean=RATING_GLOBAL_MEAN,
        rating_noise_sd=RATING_NOISE_SD,
        customer_factors=cust["factors"],
        item_factors=prod["factors"],
        customer_bias=cust["bias"],
        item_bias=prod["bias"],
        popularity=prod["popularity"],
        seasonal_weights=prod["seasonal"],
        customer_activity=cust["activity"],
        store_traffic=store_traffic,
    )
    index = WorldIndex(
        sku_ids=products["sku"].to_numpy(dtype=object),
        customer_ids=customers["customer_id"].to_numpy(dtype=object),
        store_ids=stores["store_id"].to_numpy(dtype=object),
        dc_ids=dcs["dc_id"].to_numpy(dtype=object),
        carrier_ids=carriers["carrier_id"].to_numpy(dtype=object),
        route_ids=routes["route_id"].to_numpy(dtype=object),
        product_price=products["price"].to_numpy(dtype=np.float64),
        product_category=prod["category"],
        product_season=prod["season"],
        product_case_pack=prod["case_pack"],
        store_region=store_region,
        dc_region=dc_region,
        customer_region=cust["region"],
        carrier_reliability=carriers["reliability"].to_numpy(dtype=np.float64),
        route_origin=route["origin"],
        route_store=route["store"],
        route_carrier=route["carrier"],
        route_distance_km=routes["distance_km"].to_numpy(dtype=np.float64),
        route_lead_time_hours=routes["lead_time_hours"].to_numpy(dtype=np.float64),
        route_is_primary=route["primary"],
        assortment_ptr=assortment["ptr"],
        assortment_sku=assortment["sku"],
        assortment_on_hand=assortment["on_hand"],
    )
    return World(
        seed=seed,
        scale=scale,
        products=products,
        stores=stores,
        distribution_centres=dcs,
        customers=customers,
        carriers=carriers,
        routes=routes,
        initial_stock=stock,
        latent=latent,
        index=index,
    )


def _ids(prefix: str, count: int, width: int) -> np.ndarray:
    """Zero-padded identifiers "PREFIX-000001" .. as an object array of str."""
    numbers = np.char.zfill(np.arange(1, count + 1).astype("U"), width)
    return np.char.add(prefix + "-", numbers).astype(object)


def _build_products(spec: ScaleSpec, rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    n = spec.products
    cats = catalog.CATEGORIES
    share = np.array([_CATEGORY_SHARE[c.name] for c in cats])
    category = rng.choice(len(cats), size=n, p=share / share.sum())

    season = np.empty(n, dtype=np.int64)
    material = np.empty(n, dtype=np.int64)
    style = np.empty(n, dtype=np.int64)
    noun = np.empty(n, dtype=np.int64)
    price = np.empty(n, dtype=np.float64)
    case_pack = np.empty(n, dtype=np.int64)
    for c, cat in enumerate(cats):  # a loop over ~11 categories, vectorised within each
        mask = category == c
        m = int(mask.sum())
        season_p = np.array([cat.seasons[s] for s in catalog.SEASONS])
        season[mask] = rng.choice(len(catalog.SEASONS), size=m, p=season_p / season_p.sum())
        material[mask] = rng.integers(0, len(cat.materials), m)
        style[mask] = rng.integers(0, len(cat.styles), m)
        noun[mask] = rng.integers(0, len(cat.nouns), m)
        # Prices skew towards the low end of the band, like a real catalogue.
        position = rng.beta(1.8, 3.2, m)
        raw = cat.price_low * (cat.price_high / cat.price_low) ** position
        ending = np.where(rng.random(m) < 0.5, 0.95, 0.99)
        price[mask] = np.round(np.floor(raw) + ending, 2)
        case_pack[mask] = cat.case_pack

    colour = rng.integers(0, len(_COLOURS), n)
    with_colour = rng.random(n) < 0.55
    names = [
        (f"{_COLOURS[co]} " if wc else "")
        + f"{cats[c].materials[ma]} {cats[c].styles[st]} {cats[c].nouns[no]}"
        for c, ma, st, no, co, wc in zip(
            category.tolist(),
            material.tolist(),
            style.tolist(),
            noun.tolist(),
            colour.tolist(),
            with_colour.tolist(),
            strict=True,
        )
    ]
    brand = rng.integers(0, len(catalog.BRANDS), n)

    # Taste space: items of a category share a centroid, so customers who like one dress
    # tend to like other dresses. Variances are chosen so that u.v has variance ~0.5.
    centroid_sd, item_sd = 0.35, 0.35
    centroids = rng.normal(0.0, centroid_sd, (len(cats), LATENT_DIM))
    factors = centroids[category] + rng.normal(0.0, item_sd, (n, LATENT_DIM))
    brand_bias = rng.normal(0.0, 0.15, len(catalog.BRANDS))
    bias = rng.normal(0.0, 0.4, n) + brand_bias[brand]

    # Zipf-like popularity, correlated with quality: good items are bought more.
    popularity_score = 0.6 * bias / 0.4 + rng.normal(0.0, 1.0, n)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-popularity_score, kind="stable")] = np.arange(n)
    popularity = 1.0 / (rank + 8.0) ** 1.05
    popularity /= popularity.sum()

    seasonal = _seasonal_weights(season, rng)

    products = pd.DataFrame(
        {
            "sku": _ids("SKU", n, 6),
            "name": pd.Series(names, dtype=object),
            "category": np.array([c.name for c in cats], dtype=object)[category],
            "season": np.array(catalog.SEASONS, dtype=object)[season],
            "brand": np.array(catalog.BRANDS, dtype=object)[brand],
            "price": price,
        }
    )
    hidden = {
        "category": category.astype(np.int64),
        "season": season,
        "case_pack": case_pack,
        "factors": factors,
        "bias": bias,
        "popularity": popularity,
        "seasonal": seasonal,
    }
    return products, hidden


def _seasonal_weights(season: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Demand multiplier per product and calendar month: high in season, low out of it."""
    base = np.ones((len(catalog.SEASONS), 12))
    for s, name in enumerate(catalog.SEASONS):
        if name == "all":
            continue
        base[s, :] = 0.2
        base[s, list(_SEASON_SHOULDER[name])] = 1.0
        base[s, list(_SEASON_PEAK[name])] = 2.6
    # Products differ in how seasonal they are (a linen shirt more than a cotton one).
    amplitude = rng.uniform(0.7, 1.25, len(season))[:, None]
    weights = 1.0 + amplitude * (base[season] - 1.0)
    return np.clip(weights, 0.05, None)


def _build_stores(
    spec: ScaleSpec, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    regions = catalog.REGIONS
    cities: list[tuple[int, catalog.City]] = [
        (r, city) for r, name in enumerate(regions) for city in catalog.CITIES_BY_REGION[name]
    ]
    size = np.array([c.size for _, c in cities])
    flagships = [
        i for i, (r, c) in enumerate(cities) if c is catalog.CITIES_BY_REGION[regions[r]][0]
    ]
    n_flag = min(spec.stores, len(flagships))
    rest = rng.choice(len(cities), size=spec.stores - n_flag, p=size / size.sum())
    city_idx = np.concatenate([np.array(flagships[:n_flag], dtype=np.int64), rest])
    # Group stores by region and city so ids read naturally (ST-0001.. are Iberian).
    city_idx = np.sort(city_idx, kind="stable")

    lat = np.array([cities[i][1].lat for i in city_idx])
    lon = np.array([cities[i][1].lon for i in city_idx])
    # Second and later stores in a city sit in other neighbourhoods, a few km away.
    repeat = np.concatenate([[False], city_idx[1:] == city_idx[:-1]])
    lat = np.round(np.where(repeat, lat + rng.normal(0, 0.025, len(lat)), lat), 5)
    lon = np.round(np.where(repeat, lon + rng.normal(0, 0.035, len(lon)), lon), 5)

    region = np.array([cities[i][0] for i in city_idx], dtype=np.int64)
    traffic = rng.lognormal(0.0, 0.35, spec.stores) * (1.0 + 0.2 * np.log1p(size[city_idx]))
    traffic /= traffic.sum()

    stores = pd.DataFrame(
        {
            "store_id": _ids("ST", spec.stores, 4),
            "city": np.array([cities[i][1].name for i in city_idx], dtype=object),
            "region": np.array(regions, dtype=object)[region],
            "country": np.array([cities[i][1].country for i in city_idx], dtype=object),
            "lat": lat.astype(np.float64),
            "lon": lon.astype(np.float64),
        }
    )
    return stores, region, traffic


def _build_distribution_centres(spec: ScaleSpec) -> tuple[pd.DataFrame, np.ndarray]:
    sites = [s for s in catalog.DC_SITES if s.primary or spec.secondary_dcs]
    region = np.array([catalog.REGIONS.index(s.region) for s in sites], dtype=np.int64)
    dcs = pd.DataFrame(
        {
            "dc_id": _ids("DC", len(sites), 2),
            "city": pd.Series([s.city for s in sites], dtype=object),
            "region": pd.Series([s.region for s in sites], dtype=object),
            "lat": np.array([s.lat for s in sites], dtype=np.float64),
            "lon": np.array([s.lon for s in sites], dtype=np.float64),
        }
    )
    return dcs, region


def _build_carriers() -> pd.DataFrame:
    carriers = catalog.CARRIERS
    return pd.DataFrame(
        {
            "carrier_id": _ids("CR", len(carriers), 2),
            "name": pd.Series([c.name for c in carriers], dtype=object),
            "reliability": np.array([c.reliability for c in carriers], dtype=np.float64),
        }
    )


def _build_customers(
    spec: ScaleSpec,
    store_region: np.ndarray,
    store_traffic: np.ndarray,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, dict]:
    n = spec.customers
    n_regions = len(catalog.REGIONS)
    # Customers live where the stores are, plus an online-only baseline in every region.
    region_weight = np.bincount(store_region, weights=store_traffic, minlength=n_regions)
    region_weight = 0.85 * region_weight / region_weight.sum() + 0.15 / n_regions
    region = rng.choice(n_regions, size=n, p=region_weight)
    segment = rng.choice(len(catalog.CUSTOMER_SEGMENTS), size=n, p=_SEGMENT_SHARE)
    activity = rng.lognormal(0.0, 0.8, n) * np.array(_SEGMENT_ACTIVITY)[segment]

    span = int((_SIGNUP_TO - _SIGNUP_FROM).astype(np.int64))
    signup_s = _SIGNUP_FROM.astype(np.int64) + rng.integers(0, span, n)
    signup = pd.to_datetime(signup_s, unit="s", utc=True).astype("datetime64[ns, UTC]")

    segment_centroids = rng.normal(0.0, 0.3, (len(catalog.CUSTOMER_SEGMENTS), LATENT_DIM))
    factors = segment_centroids[segment] + rng.normal(0.0, 0.4, (n, LATENT_DIM))
    bias = rng.normal(0.0, 0.35, n)

    customers = pd.DataFrame(
        {
            "customer_id": _ids("C", n, 7),
            "home_region": np.array(catalog.REGIONS, dtype=object)[region],
            "segment": np.array(catalog.CUSTOMER_SEGMENTS, dtype=object)[segment],
            "signup_date": signup,
        }
    )
    hidden = {
        "region": region.astype(np.int64),
        "activity": activity,
        "factors": factors,
        "bias": bias,
    }
    return customers, hidden


def _build_routes(
    stores: pd.DataFrame,
    store_region: np.ndarray,
    dcs: pd.DataFrame,
    dc_region: np.ndarray,
    carriers: pd.DataFrame,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, dict]:
    """Two carriers from the nearest DC of the store's region, plus one backup route from a
    second DC of that region when there is one."""
    dist = haversine_km(
        stores["lat"].to_numpy()[:, None],
        stores["lon"].to_numpy()[:, None],
        dcs["lat"].to_numpy()[None, :],
        dcs["lon"].to_numpy()[None, :],
    )
    same_region = store_region[:, None] == dc_region[None, :]
    ranked = np.argsort(np.where(same_region, dist, np.inf), axis=1, kind="stable")
    n_stores, n_carriers = len(stores), len(carriers)
    has_backup = same_region.sum(axis=1) >= 2

    origin, store, carrier, primary = [], [], [], []
    for s in range(n_stores):  # a few hundred stores at most
        pair = rng.choice(n_carriers, size=2, replace=False)
        for c in pair:
            origin.append(ranked[s, 0])
            store.append(s)
            carrier.append(c)
            primary.append(True)
        if has_backup[s]:
            origin.append(ranked[s, 1])
            store.append(s)
            carrier.append(rng.integers(0, n_carriers))
            primary.append(False)
    origin_a = np.array(origin, dtype=np.int64)
    store_a = np.array(store, dtype=np.int64)
    carrier_a = np.array(carrier, dtype=np.int64)
    distance = np.round(dist[store_a, origin_a], 1)
    speed = np.array([c.speed_kph for c in catalog.CARRIERS])[carrier_a]
    # Loading and unloading take time whatever the distance.
    handling = rng.uniform(0.75, 2.0, len(origin_a))
    lead_time = np.round(handling + distance / speed, 2)

    routes = pd.DataFrame(
        {
            "route_id": _ids("RT", len(origin_a), 5),
            "origin_dc_id": dcs["dc_id"].to_numpy(dtype=object)[origin_a],
            "destination_store_id": stores["store_id"].to_numpy(dtype=object)[store_a],
            "carrier_id": carriers["carrier_id"].to_numpy(dtype=object)[carrier_a],
            "distance_km": distance.astype(np.float64),
            "lead_time_hours": lead_time.astype(np.float64),
        }
    )
    hidden = {
        "origin": origin_a,
        "store": store_a,
        "carrier": carrier_a,
        "primary": np.array(primary, dtype=bool),
    }
    return routes, hidden


def _build_initial_stock(
    spec: ScaleSpec,
    stores: pd.DataFrame,
    products: pd.DataFrame,
    prod: dict,
    store_traffic: np.ndarray,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, dict]:
    """Each store carries a popularity-biased subset of the catalogue (bigger stores carry
    more), stocked with a few units per sku as fashion stores do."""
    n_products, n_stores = len(products), len(stores)
    relative_size = store_traffic / store_traffic.mean()
    count = np.clip(
        np.round(spec.assortment_fraction * n_products * (0.6 + 0.4 * relative_size)),
        min(20, n_products),
        n_products,
    ).astype(np.int64)
    log_pref = 0.5 * np.log(prod["popularity"])
    skus = []
    for s in range(n_stores):  # Gumbel top-k = weighted sampling without replacement
        keys = log_pref + rng.gumbel(size=n_products)
        chosen = np.argpartition(-keys, count[s] - 1)[: count[s]]
        skus.append(np.sort(chosen))
    ptr = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
    sku = np.concatenate(skus).astype(np.int64)
    store = np.repeat(np.arange(n_stores), count)

    relative_pop = prod["popularity"][sku] / prod["popularity"].mean()
    expected = np.clip(2.0 + 2.5 * np.sqrt(relative_pop), 2.0, 12.0)
    on_hand = (rng.poisson(expected) + 1).astype(np.int64)

    stock = pd.DataFrame(
        {
            "store_id": stores["store_id"].to_numpy(dtype=object)[store],
            "sku": products["sku"].to_numpy(dtype=object)[sku],
            "on_hand": on_hand,
        }
    )
    return stock, {"ptr": ptr, "sku": sku, "on_hand": on_hand}
