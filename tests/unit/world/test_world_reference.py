from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from retailstream.world import World, build_world
from retailstream.world.catalog import CATEGORIES, REGIONS
from retailstream.world.geo import haversine_km

PLAIN_DTYPES = {"object", "int64", "float64", "bool", "datetime64[ns, UTC]"}


def test_same_seed_and_scale_build_identical_tables() -> None:
    first, second = build_world(3, "small"), build_world(3, "small")
    for name, table in first.tables().items():
        pd.testing.assert_frame_equal(table, second.tables()[name], obj=name)
    np.testing.assert_array_equal(first.latent.item_factors, second.latent.item_factors)
    np.testing.assert_array_equal(first.latent.customer_bias, second.latent.customer_bias)


def test_different_seeds_build_different_worlds() -> None:
    first, second = build_world(3, "small"), build_world(4, "small")
    assert not first.products["name"].equals(second.products["name"])
    assert not first.customers["home_region"].equals(second.customers["home_region"])
    assert not np.allclose(first.latent.item_factors, second.latent.item_factors)


@pytest.mark.parametrize(
    ("scale", "products", "stores", "customers"),
    [("small", 200, 20, 2_000), ("demo", 2_000, 60, 20_000)],
)
def test_scales_have_their_documented_sizes(
    scale: str, products: int, stores: int, customers: int
) -> None:
    world = build_world(1, scale)  # type: ignore[arg-type]
    assert (len(world.products), len(world.stores), len(world.customers)) == (
        products,
        stores,
        customers,
    )


def test_large_world_has_the_promised_sizes() -> None:
    world = build_world(1, "large")
    assert len(world.products) >= 20_000
    assert len(world.stores) >= 300
    assert len(world.customers) >= 100_000
    assert len(world.initial_stock) > 100_000


def test_unknown_scale_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown scale"):
        build_world(1, "huge")  # type: ignore[arg-type]


def test_tables_use_plain_column_types(small_world: World) -> None:
    for name, table in small_world.tables().items():
        for column, dtype in table.dtypes.items():
            assert str(dtype) in PLAIN_DTYPES, f"{name}.{column} is {dtype}"
        for column in table.select_dtypes(include="object").columns:
            assert table[column].map(lambda v: isinstance(v, str)).all(), f"{name}.{column}"


def test_identifiers_are_unique_and_well_formed(small_world: World) -> None:
    patterns = {
        ("products", "sku"): r"SKU-\d{6}",
        ("stores", "store_id"): r"ST-\d{4}",
        ("distribution_centres", "dc_id"): r"DC-\d{2}",
        ("customers", "customer_id"): r"C-\d{7}",
        ("carriers", "carrier_id"): r"CR-\d{2}",
        ("routes", "route_id"): r"RT-\d{5}",
    }
    tables = small_world.tables()
    for (table, column), pattern in patterns.items():
        ids = tables[table][column]
        assert ids.is_unique, f"{table}.{column} has duplicates"
        assert ids.str.fullmatch(pattern).all(), f"{table}.{column} does not match {pattern}"


def test_every_region_has_stores_and_a_distribution_centre(small_world: World) -> None:
    assert set(small_world.stores["region"]) == set(REGIONS)
    assert set(small_world.distribution_centres["region"]) == set(REGIONS)
    assert small_world.stores["lat"].between(35, 62).all()
    assert small_world.stores["lon"].between(-10, 25).all()


def test_routes_join_the_tables_and_measure_haversine_distance(small_world: World) -> None:
    routes = small_world.routes.merge(
        small_world.distribution_centres, left_on="origin_dc_id", right_on="dc_id", how="inner"
    ).merge(small_world.stores, left_on="destination_store_id", right_on="store_id", how="inner")
    assert len(routes) == len(small_world.routes)
    assert set(routes["carrier_id"]) <= set(small_world.carriers["carrier_id"])
    expected = haversine_km(routes["lat_x"], routes["lon_x"], routes["lat_y"], routes["lon_y"])
    np.testing.assert_allclose(routes["distance_km"], expected, atol=0.06)
    assert (routes["lead_time_hours"] > routes["distance_km"] / 100).all()
    assert small_world.carriers["reliability"].between(0, 1).all()
    # Every store can be supplied.
    assert set(small_world.stores["store_id"]) == set(routes["destination_store_id"])


def test_prices_are_within_their_category_band(small_world: World) -> None:
    products = small_world.products
    bands = {c.name: (c.price_low, c.price_high + 1) for c in CATEGORIES}
    low = products["category"].map(lambda c: bands[c][0])
    high = products["category"].map(lambda c: bands[c][1])
    assert products["price"].between(low, high).all()
    assert (products["price"] == products["price"].round(2)).all()
    assert set(products["season"]) <= {"spring", "summer", "autumn", "winter", "all"}


def test_product_names_read_like_fashion_items(small_world: World) -> None:
    names = small_world.products["name"]
    assert names.str.fullmatch(r"[A-Z][A-Za-z&' -]+").all()
    assert names.str.split().map(len).ge(3).all()
    assert names.nunique() > 0.9 * len(names)
    assert re.search(r"Dress|Shirt|Jumper|Coat|Trainers|Bag", " ".join(names))


def test_initial_stock_covers_each_store_assortment(small_world: World) -> None:
    stock = small_world.initial_stock
    assert not stock.duplicated(["store_id", "sku"]).any()
    assert (stock["on_hand"] >= 1).all()
    assert set(stock["store_id"]) == set(small_world.stores["store_id"])
    assert set(stock["sku"]) <= set(small_world.products["sku"])
    per_store = stock.groupby("store_id").size()
    assert per_store.between(20, len(small_world.products)).all()


def test_hidden_state_is_aligned_with_the_tables(small_world: World) -> None:
    latent, n_products = small_world.latent, len(small_world.products)
    n_customers = len(small_world.customers)
    assert latent.item_factors.shape[0] == n_products
    assert latent.customer_factors.shape[0] == n_customers
    assert latent.seasonal_weights.shape == (n_products, 12)
    assert latent.popularity.sum() == pytest.approx(1.0)
    # Zipf-like: the top 10% of items carry far more than 10% of base demand.
    top = np.sort(latent.popularity)[::-1][: n_products // 10].sum()
    assert top > 0.3
