"""The generator simulates causes: each test checks one effect is really in the data."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from retailstream.world import (
    DefectRates,
    World,
    best_achievable_scores,
    delay_probability,
    expected_stars,
)
from retailstream.world.demand import promotion_week_index, promotions_for_week
from retailstream.world.scores import draw_stars

from .conftest import START, Run


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class WeatherLog:
    """Severity of a region at a time, as a consumer of the weather topic would know it."""

    def __init__(self, run: Run) -> None:
        series: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for e in run.events["logistics.weather"]:
            if e["kind"] == "observation":
                series[e["region"]].append((_seconds(e["event_time"]), e["severity"]))
        self.times = {r: np.array([t for t, _ in s]) for r, s in series.items()}
        self.severity = {r: np.array([v for _, v in s]) for r, s in series.items()}

    def at(self, region: str, t: float) -> int:
        i = int(np.searchsorted(self.times[region], t, side="right")) - 1
        return int(self.severity[region][max(i, 0)])


@pytest.fixture(scope="module")
def weather(clean_run: Run) -> WeatherLog:
    return WeatherLog(clean_run)


def test_delay_probability_grows_with_every_cause() -> None:
    base = delay_probability(0, 0, 0, 0.9, 300)
    assert 0.05 < base < 0.25
    assert delay_probability(4, 0, 0, 0.9, 300) > base
    assert delay_probability(0, 4, 0, 0.9, 300) > base
    assert delay_probability(0, 0, 4, 0.9, 300) > base
    assert delay_probability(0, 0, 0, 0.7, 300) > base
    assert delay_probability(0, 0, 0, 0.9, 900) > base
    assert delay_probability(5, 5, 5, 0.7, 900) > 0.95


def test_shipments_are_late_more_often_in_severe_weather(clean_run: Run) -> None:
    truth = clean_run.truth("shipment_truth")
    worst = truth[["origin_weather_severity", "destination_weather_severity"]].max(axis=1)
    severe, clear = truth[worst >= 3], truth[worst == 0]
    assert len(severe) > 200 and len(clear) > 1_000
    assert severe["delayed"].mean() > clear["delayed"].mean() + 0.25
    # The recorded probability is the one outcomes were drawn from (calibration).
    assert truth["delayed"].mean() == pytest.approx(
        truth["true_delay_probability"].mean(), abs=0.02
    )


def test_severe_weather_delays_are_visible_in_the_events(
    clean_run: Run, weather: WeatherLog
) -> None:
    """What a model sees: departed events joined with the weather topic, labelled by
    delivered.delay_minutes > 60."""
    world = clean_run.world
    dc_region = dict(
        zip(world.distribution_centres["dc_id"], world.distribution_centres["region"], strict=True)
    )
    store_region = dict(zip(world.stores["store_id"], world.stores["region"], strict=True))
    departed = {}
    late = {}
    for e in clean_run.events["logistics.shipments"]:
        if e["status"] == "departed":
            t = _seconds(e["event_time"])
            departed[e["shipment_id"]] = max(
                weather.at(dc_region[e["origin_dc_id"]], t),
                weather.at(store_region[e["destination_store_id"]], t),
            )
        elif e["status"] == "delivered":
            late[e["shipment_id"]] = e["delay_minutes"] > 60
    rows = pd.DataFrame(
        [(departed[s], late[s]) for s in late if s in departed], columns=["severity", "late"]
    )
    rate = rows.groupby(rows["severity"] >= 3)["late"].mean()
    assert rate[True] > rate[False] + 0.25


def test_delay_causes_in_the_truth_are_observable_in_the_events(
    clean_run: Run, weather: WeatherLog
) -> None:
    """The severities behind each true delay probability are exactly what the weather and
    world-event topics said at departure, so the Bayes-optimal score is reachable."""
    world = clean_run.world
    dc_region = dict(
        zip(
            world.distribution_centres["dc_id"],
            world.distribution_centres["region"],
            strict=True,
        )
    )
    store_region = dict(zip(world.stores["store_id"], world.stores["region"], strict=True))
    announced = defaultdict(list)
    for e in clean_run.events["logistics.world_events"]:
        announced[e["region"]].append(
            (
                _seconds(e["event_time"]),
                _seconds(e["starts_at"]),
                _seconds(e["ends_at"]),
                e["severity"],
            )
        )

    def world_event_severity(region: str, t: float) -> int:
        active = [sev for seen, a, b, sev in announced[region] if seen <= t and a <= t < b]
        return max(active, default=0)

    truth = clean_run.truth("shipment_truth").set_index("shipment_id")
    checked = 0
    for e in clean_run.events["logistics.shipments"]:
        if e["status"] != "departed":
            continue
        row, t = truth.loc[e["shipment_id"]], _seconds(e["event_time"])
        origin, destination = dc_region[e["origin_dc_id"]], store_region[e["destination_store_id"]]
        assert row["origin_weather_severity"] == weather.at(origin, t)
        assert row["destination_weather_severity"] == weather.at(destination, t)
        assert row["world_event_severity"] == max(
            world_event_severity(origin, t), world_event_severity(destination, t)
        )
        checked += 1
    assert checked > 1_000
    assert (truth["world_event_severity"] > 0).sum() > 100


def test_ratings_follow_the_hidden_tastes(clean_run: Run) -> None:
    truth = clean_run.truth("rating_truth")
    events = pd.DataFrame(clean_run.events["shop.ratings"])[["event_id", "stars"]]
    joined = events.merge(truth, on="event_id", how="inner", suffixes=("", "_truth"))
    assert len(joined) == len(events) > 10_000
    assert np.corrcoef(joined["stars"], joined["true_score"])[0, 1] > 0.5
    # true_score is the expected rating: unbiased overall and within score bands.
    residual = joined["stars"] - joined["true_score"]
    assert abs(residual.mean()) < 0.03
    bands = pd.cut(joined["true_score"], [1, 3, 3.5, 4, 4.5, 5])
    assert residual.groupby(bands, observed=True).mean().abs().max() < 0.08


def test_expected_stars_matches_simulated_ratings() -> None:
    mu = np.repeat([0.5, 2.2, 3.0, 3.8, 4.6, 6.0], 40_000)
    stars = draw_stars(mu, 0.7, np.random.default_rng(0))
    simulated = pd.Series(stars).groupby(mu).mean().to_numpy()
    np.testing.assert_allclose(expected_stars(np.unique(mu), 0.7), simulated, atol=0.015)


def test_seasonal_products_sell_more_in_season(small_world: World, make_run) -> None:
    season = dict(zip(small_world.products["sku"], small_world.products["season"], strict=True))

    def summer_and_winter_share(start: datetime) -> tuple[float, float]:
        run = make_run(
            small_world,
            [40_000],
            seed=8,
            start=start,
            sim_seconds_per_event=1.0,
            defect_rates=DefectRates.none(),
        )
        units: defaultdict[str, int] = defaultdict(int)
        for order in run.events["shop.orders"]:
            for line in order["lines"]:
                units[season[line["sku"]]] += line["quantity"]
        total = sum(units.values())
        return units["summer"] / total, units["winter"] / total

    july = summer_and_winter_share(datetime(2025, 7, 9, tzinfo=START.tzinfo))
    january = summer_and_winter_share(datetime(2025, 1, 8, tzinfo=START.tzinfo))
    assert july[0] > 2 * january[0]
    assert january[1] > 2 * july[1]


def test_storms_keep_shoppers_out_of_stores(clean_run: Run, weather: WeatherLog) -> None:
    world = clean_run.world
    home = dict(zip(world.customers["customer_id"], world.customers["home_region"], strict=True))
    store_region = dict(zip(world.stores["store_id"], world.stores["region"], strict=True))
    rows = []
    for order in clean_run.events["shop.orders"]:
        in_store = order["store_id"] is not None
        region = store_region[order["store_id"]] if in_store else home[order["customer_id"]]
        rows.append((weather.at(region, _seconds(order["event_time"])) >= 3, in_store))
    orders = pd.DataFrame(rows, columns=["storm", "in_store"])
    share = orders.groupby("storm")["in_store"].mean()
    assert orders["storm"].sum() > 300
    assert share[True] < share[False] - 0.08


def test_late_shipments_cause_stockouts(clean_run: Run) -> None:
    """Stock-outs per key-hour are far more frequent while a replenishment is overdue."""
    overdue: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    shipments: dict[str, dict] = {}
    for e in clean_run.events["logistics.shipments"]:
        shipments.setdefault(e["shipment_id"], e)
        if e["status"] == "delivered" and e["delay_minutes"] > 0:
            span = (_seconds(e["eta"]), _seconds(e["event_time"]))
            for line in e["lines"]:
                overdue[(e["destination_store_id"], line["sku"])].append(span)
    stockouts = clean_run.truth("stockouts")
    times = stockouts["event_time"].map(lambda t: t.timestamp())
    inside = sum(
        any(a <= t <= b for a, b in overdue.get((s, k), ()))
        for s, k, t in zip(stockouts["store_id"], stockouts["sku"], times, strict=True)
    )
    overdue_hours = sum(b - a for spans in overdue.values() for a, b in spans) / 3600
    keys = len(clean_run.world.initial_stock)
    all_hours = keys * (times.max() - times.min()) / 3600
    rate_overdue = inside / overdue_hours
    rate_otherwise = (len(stockouts) - inside) / (all_hours - overdue_hours)
    assert inside > 100
    assert rate_overdue > 3 * rate_otherwise


def test_shop_traffic_follows_the_time_of_day(clean_run: Run) -> None:
    hours = pd.Series(
        [datetime.fromisoformat(e["event_time"]).hour for e in clean_run.events["shop.clickstream"]]
    ).value_counts()
    assert hours[18] > 5 * hours[2]  # 19:00 vs 03:00 Central European Time


def test_promotions_discount_prices_and_lift_demand(clean_run: Run) -> None:
    world = clean_run.world
    sku_pos = {s: i for i, s in enumerate(world.products["sku"])}
    list_price = world.products["price"].to_numpy()
    plans: dict[int, np.ndarray] = {}
    units: dict[tuple[int, bool], int] = defaultdict(int)
    for order in clean_run.events["shop.orders"]:
        week = promotion_week_index(_seconds(order["event_time"]))
        if week not in plans:
            plans[week] = promotions_for_week(
                clean_run.generator.seed, len(list_price), week
            ).discount
        for line in order["lines"]:
            i = sku_pos[line["sku"]]
            discount = plans[week][i]
            assert line["unit_price"] == pytest.approx(round(list_price[i] * (1 - discount), 2))
            units[(week, discount > 0)] += line["quantity"]
    # Within each week, promoted skus (about 4% of the catalogue) sell far above 4%.
    for week in plans:
        promoted_share = units[(week, True)] / (units[(week, True)] + units[(week, False)])
        catalogue_share = (plans[week] > 0).mean()
        assert promoted_share > 1.5 * catalogue_share


def test_best_achievable_scores_set_a_real_ceiling(clean_run: Run) -> None:
    scores = best_achievable_scores(
        clean_run.truth("rating_truth"), clean_run.truth("shipment_truth")
    )
    assert scores["rating_pearson_r"] > 0.5
    assert 0.4 < scores["rating_rmse"] < 0.9
    assert scores["delay_auc"] > 0.65
    base = scores["delay_base_rate"]
    base_log_loss = -(base * np.log(base) + (1 - base) * np.log(1 - base))
    assert scores["delay_log_loss"] < base_log_loss
