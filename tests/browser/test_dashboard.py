"""The dashboard in headless Chromium: it updates live, without a reload, and agrees with the API.

A thread plays the gold job and the shipment scorer, writing changing view rows
and disruption alerts into a real SQLite serving store; the real API server (uvicorn, in the background) serves the
page and the JSON it polls. The page's figures are read from the DOM (each
carries its raw value in a data-* attribute) and compared with the API's
answers at a moment when the writer is held still.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.support.ui import WebDriverWait

from retailstream.config import TopicSettings, load_settings
from retailstream.health.progress import QueryReport, SourceRead, write_report
from retailstream.jobs.score_shipments import summary
from retailstream.kafka.broker import LocalBroker
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics
from retailstream.serve.server import BackgroundServer, start_background
from retailstream.views.store import SqliteStore
from support import PROJECT_HOME, headless_chromium

REFRESH_MS = 500  # the page polls every 2 s by default; faster here to keep the test short
WAIT_S = 20

PRODUCTS: list[dict[str, Any]] = [
    {"sku": f"SKU-00000{i}", "name": name, "category": category, "season": "all",
     "brand": "Norda", "price": 20.0 + i}
    for i, (name, category) in enumerate(
        [("Linen shirt", "shirts"), ("Oxford shirt", "shirts"), ("Wool coat", "coats"),
         ("Rain coat", "coats"), ("Denim jacket", "coats"), ("Puffer coat", "coats")],
        start=1,
    )
]  # fmt: skip
STORES: list[dict[str, Any]] = [
    {"store_id": "ST-0001", "city": "Madrid", "region": "iberia", "country": "ES",
     "lat": 40.4168, "lon": -3.7038},
    {"store_id": "ST-0002", "city": "Lisbon", "region": "iberia", "country": "PT",
     "lat": 38.7223, "lon": -9.1393},
    {"store_id": "ST-0003", "city": "Paris", "region": "france", "country": "FR",
     "lat": 48.8566, "lon": 2.3522},
    {"store_id": "ST-0004", "city": "Berlin", "region": "germany", "country": "DE",
     "lat": 52.52, "lon": 13.405},
]  # fmt: skip
NEWCOMER = "SKU-000006"  # enters the trending list after a few steps
WINDOW_0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

# One synchronous read of everything the page shows (JS runs to completion, so no torn read).
SNAPSHOT_JS = """
const one = (id) => document.querySelector(`[data-testid="${id}"]`);
const all = (id) => [...document.querySelectorAll(`[data-testid="${id}"]`)];
return {
  refreshes: Number(document.body.dataset.refreshes || 0),
  status: one("status").dataset.state,
  lastUpdated: one("last-updated").dataset.epochMs || null,
  revenue: one("total-revenue").dataset.value,
  revenueText: one("total-revenue").textContent,
  orders: one("total-orders").dataset.value,
  online: one("online-revenue").dataset.value,
  stores: all("store-circle").map((c) => [c.dataset.storeId, Number(c.dataset.revenue)]),
  regions: [...one("region-legend").children].map(
    (li) => [li.dataset.region, Number(li.dataset.revenue)]),
  trending: all("trending-item").map(
    (li) => [li.dataset.category, Number(li.dataset.rank), li.dataset.sku]),
  lowStock: all("low-stock-item").map(
    (li) => [li.dataset.storeId, li.dataset.sku, Number(li.dataset.onHand)]),
  lowStockCount: one("low-stock-count").dataset.value,
  disruptions: all("disruption-item").map(
    (li) => [li.dataset.shipmentId, Number(li.dataset.probability)]),
  disruptionCount: one("disruption-count").dataset.value,
  bestRated: all("best-rated-item").map((li) => [li.dataset.sku, Number(li.dataset.average)]),
  newest: all("newest-rating").map((li) => [li.dataset.eventId, Number(li.dataset.stars)]),
  ratingsCount: one("ratings-count").dataset.value,
  reroutes: all("disruption-reroute").map((div) => div.textContent),
  empty: Object.fromEntries(["map-empty", "regions-empty", "trending-empty", "low-stock-empty",
    "disruptions-empty", "ratings-empty"].map((id) => [id, !one(id).hidden])),
  marker: window.__sameDocument || null,
};
"""


class GoldWriter(threading.Thread):
    """Writes view rows every `period_s`, as the gold job's micro-batches would.

    `frozen()` holds it between two steps, so the store does not change while
    the test compares the page with the API.
    """

    def __init__(self, store: SqliteStore, period_s: float = 0.25) -> None:
        super().__init__(name="gold-writer", daemon=True)
        self.store = store
        self.period_s = period_s
        self.steps = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._sales: dict[tuple[str, str], dict[str, Any]] = {}
        self._ratings: dict[str, list[dict[str, Any]]] = {}

    def run(self) -> None:
        while not self._halt.is_set():
            with self._lock:
                self._step(self.steps)
                self.steps += 1
            self._halt.wait(self.period_s)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(5)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        with self._lock:
            yield

    def _step(self, k: int) -> None:
        start = WINDOW_0 + timedelta(minutes=k // 4)
        window = (start.isoformat(), (start + timedelta(minutes=1)).isoformat())
        changed = []
        for place in (STORES[k % len(STORES)], None):  # one store and online, every step
            store_id = place["store_id"] if place else "ONLINE"
            row = self._sales.setdefault(
                (window[0], store_id),
                {
                    "window_start": window[0], "window_end": window[1], "store_id": store_id,
                    "region": place["region"] if place else "online",
                    "city": place and place["city"], "country": place and place["country"],
                    "lat": place and place["lat"], "lon": place and place["lon"],
                    "revenue": 0.0, "orders": 0, "units": 0,
                },
            )  # fmt: skip
            row.update(
                revenue=round(row["revenue"] + 12.34 * (1 + k % 3), 2),
                orders=row["orders"] + 1,
                units=row["units"] + 1 + k % 2,
            )
            changed.append(dict(row))
        self.store.upsert("sales_by_region", changed)

        coats = ["SKU-000003", "SKU-000004", "SKU-000005"]
        if k >= 6:
            coats = [NEWCOMER, *coats]
        ranked = {"shirts": ["SKU-000001", "SKU-000002"][:: 1 if k % 2 else -1], "coats": coats}
        self.store.replace(
            "trending_items",
            [
                {"category": category, "rank": rank, "sku": sku, "name": sku,
                 "add_to_cart": 10 * k + 5 - rank, "ordered_units": k, "score": 100.0 - rank,
                 "window_start": window[0], "window_end": window[1]}
                for category, skus in ranked.items()
                for rank, sku in enumerate(skus, start=1)
            ],
        )  # fmt: skip

        on_hand = max(0, 6 - k)
        self.store.upsert(
            "inventory_positions",
            [
                {"store_id": "ST-0001", "sku": "SKU-000003", "name": "Wool coat",
                 "category": "coats", "initial": 6, "delivered": 0, "sold": 6 - on_hand,
                 "on_hand": on_hand, "low_stock": on_hand <= 2},
                {"store_id": "ST-0003", "sku": "SKU-000001", "name": "Linen shirt",
                 "category": "shirts", "initial": 20, "delivered": 0, "sold": k,
                 "on_hand": max(0, 20 - k), "low_stock": 20 - k <= 2},
            ],
        )  # fmt: skip

        # A rating per step, on one of three shirts and coats in turn (as the serving path
        # folds the Rate Item command).
        product = PRODUCTS[k % 3 * 2]
        given = self._ratings.setdefault(product["sku"], [])
        given.insert(0, {"event_id": f"{k:032x}", "customer_id": f"C-{k:07d}",
                         "stars": 1 + (k * 7 + k % 3) % 5,
                         "event_time": (WINDOW_0 + timedelta(seconds=k)).isoformat()})  # fmt: skip
        self.store.upsert(
            "item_ratings",
            [
                {"sku": product["sku"], "name": product["name"], "category": product["category"],
                 "ratings_count": len(given),
                 "average_stars": round(sum(r["stars"] for r in given) / len(given), 3),
                 "histogram": {str(n): sum(r["stars"] == n for r in given) for n in range(1, 6)},
                 "last_ratings": given[:10]}
            ],
        )  # fmt: skip

        if k >= 2:  # one more alert each step up to three, their likelihoods moving
            self.store.upsert("disruption_alerts", [_alert(n, k) for n in range(min(k - 1, 3))])


def _alert(n: int, k: int) -> dict[str, Any]:
    """A disruption alert document as `run score` writes it."""
    source = {"source_kind": "store", "source_id": "ST-0002", "distance_km": 503.1,
              "lead_time_hours": None}  # fmt: skip
    document = {
        "shipment_id": f"SHP-{n:04d}", "probability": round(0.55 + 0.1 * ((n + k) % 4), 4),
        "model_version": "1", "departed_at": WINDOW_0.isoformat(),
        "eta": (WINDOW_0 + timedelta(hours=30)).isoformat(), "origin_dc_id": "DC-01",
        "destination_store_id": "ST-0001", "carrier_id": "CR-01",
        "reasons": ["severe weather at destination (severity 4)"],
        "skus": [{"sku": "SKU-000003", "quantity": 2 + n, **source}],
    }  # fmt: skip
    return {**document, "summary": summary(document)}


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "views.db")
    store.replace("products", PRODUCTS)
    store.replace("stores", STORES)
    return store


@pytest.fixture
def server(tmp_path: Path, store: SqliteStore) -> Iterator[tuple[BackgroundServer, str]]:
    # The page only reads: no Kafka broker needed (the publisher connects on first command).
    settings = load_settings("test", [f"lake.root={tmp_path / 'lake'}"], home=PROJECT_HOME)
    running, base_url = start_background(settings, store=store)
    yield running, base_url
    running.stop()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    with headless_chromium(tmp_path / "chromium", monkeypatch) as driver:
        yield driver


def _snapshot(driver: webdriver.Chrome) -> dict[str, Any]:
    return driver.execute_script(SNAPSHOT_JS)


def _wait_for(driver: webdriver.Chrome, what: str, condition: Any) -> dict[str, Any]:
    """Wait until `condition(snapshot)` holds; returns that snapshot."""
    found: dict[str, Any] = {}

    def check(d: webdriver.Chrome) -> bool:
        found.update(_snapshot(d))
        return bool(condition(found))

    try:
        WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(check)
    except Exception as exc:
        raise AssertionError(f"page never showed {what}; last snapshot: {found}") from exc
    return found


def _api_view(base_url: str) -> dict[str, Any]:
    """What the page should show, straight from the API."""
    with httpx.Client(base_url=base_url, timeout=10) as http:
        regions = http.get("/v1/sales/regions", params={"windows": 30}).json()
        stores = http.get("/v1/sales/stores").json()
        trending = http.get("/v1/trending", params={"limit": 5}).json()
        low = http.get("/v1/alerts/low-stock", params={"limit": 25}).json()
        alerts = http.get("/v1/alerts/disruptions").json()
        ratings = http.get("/v1/ratings", params={"limit": 5}).json()
    online = next(s["revenue"] for s in stores["stores"] if s["store_id"] == "ONLINE")
    return {
        "revenue": regions["total"]["revenue"],
        "orders": regions["total"]["orders"],
        "online": online,
        "stores": sorted((s["store_id"], s["revenue"]) for s in stores["stores"] if s["lat"]),
        "regions": [(r["region"], r["revenue"]) for r in regions["regions"]],
        "trending": [(i["category"], i["rank"], i["sku"]) for i in trending["items"]],
        "lowStock": [(i["store_id"], i["sku"], i["on_hand"]) for i in low["items"]],
        "lowStockCount": low["count"],
        "disruptions": [(a["shipment_id"], a["probability"]) for a in alerts["items"]],
        "disruptionCount": alerts["count"],
        "bestRated": [(i["sku"], i["average_stars"]) for i in ratings["best_rated"]],
        "newest": [(r["event_id"], r["stars"]) for r in ratings["newest"]],
        "ratingsCount": ratings["ratings"],
    }


def _as_shown(page: dict[str, Any]) -> dict[str, Any]:
    return {
        "revenue": float(page["revenue"]),
        "orders": int(page["orders"]),
        "online": float(page["online"]),
        "stores": sorted(tuple(s) for s in page["stores"]),
        "regions": [tuple(r) for r in page["regions"]],
        "trending": [tuple(t) for t in page["trending"]],
        "lowStock": [tuple(i) for i in page["lowStock"]],
        "lowStockCount": int(page["lowStockCount"]),
        "disruptions": [tuple(d) for d in page["disruptions"]],
        "disruptionCount": int(page["disruptionCount"]),
        "bestRated": [tuple(i) for i in page["bestRated"]],
        "newest": [tuple(r) for r in page["newest"]],
        "ratingsCount": int(page["ratingsCount"]),
    }


def test_the_dashboard_follows_the_views_live_and_agrees_with_the_api(
    browser: webdriver.Chrome, server: tuple[BackgroundServer, str], store: SqliteStore
) -> None:
    _, base_url = server
    browser.get(f"{base_url}/?refresh_ms={REFRESH_MS}")

    # Before the gold job wrote anything: a clear empty state, the whole estate on the map.
    empty = _wait_for(browser, "a first refresh", lambda s: s["refreshes"] >= 1)
    assert empty["status"] == "ok" and empty["lastUpdated"]
    assert float(empty["revenue"]) == 0.0 and empty["revenueText"] == "€0.00"
    assert all(empty["empty"].values()), empty["empty"]
    assert sorted(s[0] for s in empty["stores"]) == [s["store_id"] for s in STORES]
    assert empty["disruptions"] == [], "no disruption alerts yet"
    browser.execute_script("window.__sameDocument = 'not reloaded';")

    writer = GoldWriter(store)
    writer.start()
    try:
        first = _wait_for(browser, "revenue", lambda s: float(s["revenue"] or 0) > 0)
        later = _wait_for(
            browser,
            "the revenue changing",
            lambda s: (
                float(s["revenue"]) > float(first["revenue"])
                and s["revenueText"] != first["revenueText"]
            ),
        )
        assert int(later["lastUpdated"]) > int(first["lastUpdated"])
        _wait_for(
            browser, f"{NEWCOMER} trending", lambda s: NEWCOMER in {t[2] for t in s["trending"]}
        )
        _wait_for(browser, "low-stock alerts", lambda s: len(s["lowStock"]) >= 1)
        _wait_for(browser, "three disruption alerts", lambda s: len(s["disruptions"]) == 3)
        _wait_for(browser, "three best rated items", lambda s: len(s["bestRated"]) == 3)
        assert writer.steps >= 7

        with writer.frozen():
            expected = _api_view(base_url)
            shown = _wait_for(
                browser, f"the API's figures {expected}", lambda s: _as_shown(s) == expected
            )
    finally:
        writer.stop()

    assert expected["revenue"] > float(first["revenue"])
    assert shown["revenueText"] == f"€{expected['revenue']:,.2f}", "the text, not just data-*"
    assert not shown["empty"]["map-empty"] and not shown["empty"]["trending-empty"]
    assert not shown["empty"]["low-stock-empty"] and not shown["empty"]["disruptions-empty"]
    likelihoods = [p for _, p in shown["disruptions"]]
    assert likelihoods == sorted(likelihoods, reverse=True), "most likely first"
    assert shown["reroutes"] and all(
        r.startswith("reroute SKU-000003 ×") and r.endswith("from ST-0002")
        for r in shown["reroutes"]
    ), shown["reroutes"]
    assert {region for region, _ in expected["regions"]} == {
        "iberia",
        "france",
        "germany",
        "online",
    }
    assert not shown["empty"]["ratings-empty"]
    averages = [a for _, a in shown["bestRated"]]
    assert averages == sorted(averages, reverse=True), "best rated first"
    newest = [event_id for event_id, _ in shown["newest"]]
    assert newest == sorted(newest, reverse=True) and len(newest) == 5, "newest first"
    assert shown["marker"] == "not reloaded", "the page must update in place"
    assert shown["status"] == "ok"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


PIPELINE_JS = """
return {
  verdict: document.querySelector('[data-testid="pipeline-verdict"]').textContent,
  healthy: document.querySelector('[data-testid="pipeline-verdict"]').dataset.healthy,
  streams: [...document.querySelectorAll('[data-testid="pipeline-stream"]')].map(
    (tr) => [tr.dataset.name, Number(tr.dataset.lagRecords), tr.className]),
};
"""


def test_the_pipeline_panel_shows_what_is_behind_as_the_api_says(
    browser: webdriver.Chrome, tmp_path: Path, kafka_broker: LocalBroker
) -> None:
    topic = f"panel.{uuid.uuid4().hex[:8]}"
    create_topics(kafka_broker.bootstrap, {topic: TopicSettings(partitions=2)})
    ten_minutes_ago = int(time.time() * 1000) - 600_000
    client = producer(kafka_broker.bootstrap)
    for _ in range(30):
        client.produce(topic, b"{}", partition=0, timestamp=ten_minutes_ago)
    flush_or_fail(client)
    # The driver's report of an ingest query that has read nothing of the topic yet.
    lake = tmp_path / "lake"
    report = QueryReport(
        name="ingest_events", batch_id=3, at_ms=ten_minutes_ago, batch_ms=1500,
        trigger_ms=2000, input_rows_per_s=0.0, processed_rows_per_s=0.0, input_rows=0,
        state_rows=0, late_rows=0,
        sources=(SourceRead("kafka", next_offsets={topic: {"0": 0, "1": 0}}),),
        written_ms=int(time.time() * 1000),
    )  # fmt: skip
    write_report(lake / "_health", report)
    settings = load_settings(
        "test",
        [f"lake.root={lake}", f"kafka.bootstrap_servers={kafka_broker.bootstrap}"],
        home=PROJECT_HOME,
    )
    running, base_url = start_background(settings, store=SqliteStore(tmp_path / "views.db"))
    try:
        browser.get(f"{base_url}/?refresh_ms={REFRESH_MS}")
        api = httpx.get(f"{base_url}/v1/pipeline", timeout=30).json()
        found: dict[str, Any] = {}

        def shown(driver: webdriver.Chrome) -> bool:
            found.update(driver.execute_script(PIPELINE_JS))
            return bool(found["streams"])

        WebDriverWait(browser, WAIT_S, poll_frequency=0.1).until(shown)
    finally:
        running.stop()
    assert api["verdict"] == (
        f"ingest_events is 10 min behind {topic}[0]: its batches take 2 s against a 2 s trigger"
    )
    assert not api["healthy"]
    assert found["verdict"] == api["verdict"] and found["healthy"] == "false"
    assert found["streams"] == [["ingest_events", 30, "wrong"]]
    assert [s["lag_records"] for s in api["streams"]] == [30]
