"""The HTTP API against real parts: a Kafka broker, a serving store (SQLite, and PostgreSQL
read with its read-only role), a uvicorn server.

Commands must land in Kafka exactly as the generator writes ratings; queries
must answer from the store; a consistency token must make a query wait for
(or report) the write; and no input, however bad, may produce a 500.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import TopicPartition
from fastapi.testclient import TestClient

from retailstream.config import Settings
from retailstream.kafka.broker import LocalBroker, free_port
from retailstream.kafka.clients import consumer
from retailstream.kafka.topics import create_topics
from retailstream.serve.app import create_app
from retailstream.serve.commands import RatingPublisher
from retailstream.serve.consistency import ConsistencyToken, InvalidTokenError
from retailstream.serve.server import BackgroundServer, start_background
from retailstream.views.store import ServingStore, SqliteStore, WritableStore
from retailstream.world.records import TOPIC_RATINGS
from support import fresh_postgres_store, postgres_reader

TOKEN = "s3cret-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SKU = "SKU-000001"
PRODUCTS = [
    {"sku": "SKU-000001", "name": "Linen shirt", "category": "shirts", "season": "summer",
     "brand": "Norda", "price": 39.95},
    {"sku": "SKU-000002", "name": "Wool coat", "category": "coats", "season": "winter",
     "brand": "Norda", "price": 189.0},
    {"sku": "SKU-000003", "name": "Denim jacket", "category": "coats", "season": "all",
     "brand": "Ruta", "price": 79.5},
]  # fmt: skip
STORES = [
    {"store_id": "ST-0001", "city": "Madrid", "region": "iberia", "country": "ES",
     "lat": 40.4168, "lon": -3.7038},
    {"store_id": "ST-0002", "city": "Paris", "region": "france", "country": "FR",
     "lat": 48.8566, "lon": 2.3522},
]  # fmt: skip


def _with_serve(settings: Settings, **serve: Any) -> Settings:
    return settings.model_copy(update={"serve": settings.serve.model_copy(update=serve)})


def _catalogue_store(store: WritableStore) -> WritableStore:
    store.replace("products", PRODUCTS)
    store.replace("stores", STORES)
    return store


def _sale(window: str, store_id: str, revenue: float, orders: int, units: int) -> dict[str, Any]:
    place = next((s for s in STORES if s["store_id"] == store_id), None)
    return {
        "window_start": f"2026-11-28T10:{window}:00",
        "window_end": f"2026-11-28T10:{int(window) + 1:02d}:00",
        "region": place["region"] if place else "online",
        "store_id": store_id,
        "city": place and place["city"],
        "country": place and place["country"],
        "lat": place and place["lat"],
        "lon": place and place["lon"],
        "revenue": revenue,
        "orders": orders,
        "units": units,
    }


def _position(store_id: str, sku: str, on_hand: int) -> dict[str, Any]:
    return {
        "store_id": store_id, "sku": sku, "name": sku, "category": "coats", "initial": 10,
        "delivered": 0, "sold": 10 - on_hand, "on_hand": on_hand, "low_stock": on_hand <= 2,
    }  # fmt: skip


@pytest.fixture(scope="module")
def ratings_topic(kafka_broker: LocalBroker, settings: Settings) -> str:
    create_topics(kafka_broker.bootstrap, {TOPIC_RATINGS: settings.kafka.topics[TOPIC_RATINGS]})
    return TOPIC_RATINGS


@pytest.fixture(scope="module")
def publisher(kafka_broker: LocalBroker, ratings_topic: str) -> Iterator[RatingPublisher]:
    client = RatingPublisher(kafka_broker.bootstrap, ratings_topic, timeout_s=15.0)
    yield client
    client.close()


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return _with_serve(settings, api_token=TOKEN, protect_queries=False, consistency_wait_s=2.0)


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """The queries are served from each kind of store."""
    return str(request.param)


@pytest.fixture
def store(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> WritableStore:
    """The store the test writes views to (PostgreSQL: as the serving path's role)."""
    if store_kind == "sqlite":
        return _catalogue_store(SqliteStore(tmp_path / "views.db"))
    return _catalogue_store(fresh_postgres_store(request.getfixturevalue("postgres_server")))


@pytest.fixture
def read_store(
    store: WritableStore, store_kind: str, request: pytest.FixtureRequest
) -> ServingStore:
    """The store the API reads (PostgreSQL: with the read-only role)."""
    if store_kind == "sqlite":
        return store
    return postgres_reader(request.getfixturevalue("postgres_server"))


@pytest.fixture
def server(
    api_settings: Settings, read_store: ServingStore, publisher: RatingPublisher
) -> Iterator[tuple[BackgroundServer, str]]:
    running, base_url = start_background(api_settings, store=read_store, publisher=publisher)
    yield running, base_url
    running.stop()


@pytest.fixture
def http(server: tuple[BackgroundServer, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[1], timeout=20.0) as client:
        yield client


def _rate(http: httpx.Client, sku: str = SKU, stars: int = 4) -> dict[str, Any]:
    answer = http.post(
        f"/v1/items/{sku}/ratings", json={"customer_id": "C-0000042", "stars": stars}, headers=AUTH
    )
    assert answer.status_code == 202, answer.text
    return answer.json()


def _read_record(bootstrap: str, topic: str, partition: int, offset: int) -> Any:
    reader = consumer(bootstrap, group_id=f"api-test-{time.monotonic_ns()}")
    reader.assign([TopicPartition(topic, partition, offset)])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = reader.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                return msg
        raise AssertionError(f"no record at {topic}[{partition}]@{offset}")
    finally:
        reader.close()


# --- commands ---------------------------------------------------------------------------


def test_a_rating_is_published_to_kafka_like_the_generators(
    http: httpx.Client, kafka_broker: LocalBroker
) -> None:
    before_ms = int(time.time() * 1000)
    answer = http.post(
        f"/v1/items/{SKU}/ratings", json={"customer_id": "C-0000042", "stars": 5}, headers=AUTH
    )
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert set(accepted) == {"event_id", "consistency_token", "topic", "partition", "offset"}
    assert re.fullmatch(r"[0-9a-f]{32}", accepted["event_id"])
    assert accepted["topic"] == TOPIC_RATINGS
    token = ConsistencyToken.decode(accepted["consistency_token"])
    assert (token.topic, token.partition, token.offset) == (
        TOPIC_RATINGS, accepted["partition"], accepted["offset"],
    )  # fmt: skip
    assert re.fullmatch(r"[A-Za-z0-9_-]+", accepted["consistency_token"]), "URL-safe"
    assert answer.headers["location"].endswith(accepted["consistency_token"])

    msg = _read_record(kafka_broker.bootstrap, TOPIC_RATINGS, token.partition, token.offset)
    assert msg.key() == SKU.encode()
    raw = msg.value().decode()
    value = json.loads(raw)
    generator_order = "event_id event_type schema_version event_time customer_id sku stars"
    assert list(value) == generator_order.split()
    assert value == {
        "event_id": accepted["event_id"],
        "event_type": "item_rated",
        "schema_version": 1,
        "event_time": value["event_time"],
        "customer_id": "C-0000042",
        "sku": SKU,
        "stars": 5,
    }
    assert " " not in raw, "compact JSON like the generator's"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value["event_time"])
    _, kafka_time_ms = msg.timestamp()
    assert before_ms - 5 <= kafka_time_ms <= int(time.time() * 1000) + 5
    assert (
        value["event_time"]
        == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(kafka_time_ms // 1000))
        + f".{kafka_time_ms % 1000:03d}Z"
    )


def test_ratings_of_one_sku_share_a_partition_and_offsets_grow(http: httpx.Client) -> None:
    first, second = _rate(http, stars=1), _rate(http, stars=2)
    assert first["partition"] == second["partition"]
    assert second["offset"] > first["offset"]
    assert first["event_id"] != second["event_id"]


def test_a_command_fails_with_503_when_kafka_is_unreachable(
    api_settings: Settings, store: WritableStore
) -> None:
    dead = RatingPublisher(f"127.0.0.1:{free_port()}", timeout_s=1.0)
    app = create_app(api_settings, store=store, publisher=dead)
    with TestClient(app) as client:
        # Answered, not hung: the publisher gives up after its own 1 s timeout.
        answer = client.post(
            f"/v1/items/{SKU}/ratings", json={"customer_id": "C-0000042", "stars": 3}, headers=AUTH
        )
    dead.close(timeout_s=0)
    assert answer.status_code == 503
    assert answer.json()["error"] == "broker_unavailable"
    assert "did not acknowledge" in answer.json()["detail"] or "refused" in answer.json()["detail"]
    assert answer.headers["retry-after"]


# --- read-your-writes -------------------------------------------------------------------


# Read-your-writes over the real Kafka -> serving path -> store: test_serving_views.py.


def test_a_query_reports_how_far_behind_the_view_is_after_the_bound(
    http: httpx.Client, store: WritableStore
) -> None:
    # Two ratings of one sku share a partition: the second is at offset 1 or more, so
    # the view can be one behind it.
    _rate(http, sku="SKU-000002")
    accepted = _rate(http, sku="SKU-000002")
    token = accepted["consistency_token"]
    offset, partition = accepted["offset"], accepted["partition"]
    assert offset >= 1

    answer = http.get("/v1/items/SKU-000002", params={"consistency_token": token, "wait": 0.5})
    assert answer.status_code == 200
    item = answer.json()
    assert item["consistency"] == {
        "token_satisfied": False,
        "behind_by": offset + 1,  # the view has seen nothing of that partition yet
        "waited_ms": item["consistency"]["waited_ms"],
    }
    # It waited the whole bound (the server's own count: it polls until the deadline).
    assert item["consistency"]["waited_ms"] >= 500
    assert answer.headers["retry-after"] == "1"
    assert item["ratings_count"] == 0 and item["average_stars"] is None, "the current doc"
    assert item["histogram"] == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}

    store.advance("item_ratings", TOPIC_RATINGS, {partition: offset - 1})
    behind = http.get("/v1/items/SKU-000002", headers={"X-Consistency-Token": token},
                      params={"wait": 0}).json()["consistency"]  # fmt: skip
    assert (behind["token_satisfied"], behind["behind_by"]) == (False, 1)
    store.advance("item_ratings", TOPIC_RATINGS, {partition: offset})
    done = http.get("/v1/items/SKU-000002", headers={"X-Consistency-Token": token})
    assert (
        done.json()["consistency"]["token_satisfied"],
        done.json()["consistency"]["behind_by"],
    ) == (True, 0)


class _WatchedStore(SqliteStore):
    """A serving store that tells when a query reads a view's positions, which only a
    query carrying a consistency token does."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.positions_read = threading.Event()

    def positions(self, view: str, topic: str) -> dict[int, int]:
        self.positions_read.set()
        return super().positions(view, topic)


def test_a_waiting_query_does_not_block_other_requests(
    api_settings: Settings, publisher: RatingPublisher, tmp_path: Path
) -> None:
    store = _catalogue_store(_WatchedStore(tmp_path / "views.db"))
    assert isinstance(store, _WatchedStore)
    patient = _with_serve(api_settings, consistency_wait_s=600.0)
    running, base_url = start_background(patient, store=store, publisher=publisher)
    far_ahead = ConsistencyToken(TOPIC_RATINGS, 0, 10**12)
    results: dict[str, Any] = {}

    def waiting_query() -> None:
        with httpx.Client(base_url=base_url, timeout=600) as own:
            results["answer"] = own.get(
                f"/v1/items/{SKU}", params={"consistency_token": far_ahead.encode()}
            )

    waiter = threading.Thread(target=waiting_query)
    try:
        waiter.start()
        assert store.positions_read.wait(timeout=60), "the query never began to wait"
        with httpx.Client(base_url=base_url, timeout=20) as other:
            for _ in range(3):
                assert other.get(f"/v1/items/{SKU}").status_code == 200
        # Only now does the view include the write: an answer that says so was still
        # waiting while the other requests were served.
        store.advance("item_ratings", TOPIC_RATINGS, {0: far_ahead.offset})
        waiter.join(timeout=60)
    finally:
        running.stop()
    assert results["answer"].json()["consistency"]["token_satisfied"] is True


def test_the_wait_is_capped_by_config(http: httpx.Client) -> None:
    far_ahead = ConsistencyToken(TOPIC_RATINGS, 0, 10**12).encode()
    # ?wait= above serve.consistency_wait_s (2 s here) is lowered to it.
    answer = http.get(f"/v1/items/{SKU}", params={"consistency_token": far_ahead, "wait": 30})
    report = answer.json()["consistency"]
    assert report["token_satisfied"] is False
    assert 2000 <= report["waited_ms"] < 30_000


def test_consistency_tokens_round_trip_and_reject_forgeries() -> None:
    token = ConsistencyToken("shop.ratings", 2, 1234)
    text = token.encode()
    assert ConsistencyToken.decode(text) == token
    assert "=" not in text and "shop" not in text, "opaque, no padding"
    for bad in ["", "!!!", "a" * 500, "c2hvcC5yYXRpbmdz", "c2hvcC5yYXRpbmdzOng6eQ", "w6k"]:
        with pytest.raises(InvalidTokenError):
            ConsistencyToken.decode(bad)


# --- queries ----------------------------------------------------------------------------


def test_an_unrated_known_item_has_a_zero_document(http: httpx.Client) -> None:
    answer = http.get("/v1/items/SKU-000003")
    assert answer.status_code == 200
    assert answer.json() == {
        "sku": "SKU-000003", "name": "Denim jacket", "category": "coats", "ratings_count": 0,
        "average_stars": None, "histogram": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0},
        "last_ratings": [], "consistency": None,
    }  # fmt: skip


def _rated(sku: str, stars: list[int]) -> dict:
    """An item_ratings document of `sku` with these ratings, oldest first."""
    given = [
        {"event_id": f"{sku[-1]}{i:031x}", "customer_id": f"C-{i:07d}", "stars": n,
         "event_time": f"2026-11-28T10:{int(sku[-1]) * 10 + i:02d}:00"}
        for i, n in enumerate(stars)
    ]  # fmt: skip
    return {
        "sku": sku, "name": sku, "category": "coats", "ratings_count": len(stars),
        "average_stars": sum(stars) / len(stars),
        "histogram": {str(n): stars.count(n) for n in range(1, 6)},
        "last_ratings": given[::-1],
    }  # fmt: skip


def test_the_ratings_overview_ranks_the_best_rated_and_lists_the_newest(
    http: httpx.Client, store: WritableStore
) -> None:
    assert http.get("/v1/ratings").json() == {
        "rated_items": 0, "ratings": 0, "best_rated": [], "newest": [],
    }  # fmt: skip
    store.upsert("item_ratings", [
        _rated("SKU-000001", [5, 4, 5]), _rated("SKU-000002", [5, 5]),
        _rated("SKU-000003", [3, 4, 5, 4]),
    ])  # fmt: skip
    overview = http.get("/v1/ratings", params={"limit": 3}).json()
    assert (overview["rated_items"], overview["ratings"]) == (3, 9)
    # Two ratings are too few to rank (min_ratings 3 by default).
    assert [i["sku"] for i in overview["best_rated"]] == ["SKU-000001", "SKU-000003"]
    assert [(r["sku"], r["stars"]) for r in overview["newest"]] == [
        ("SKU-000003", 4), ("SKU-000003", 5), ("SKU-000003", 4),
    ]  # fmt: skip
    anyone = http.get("/v1/ratings", params={"min_ratings": 1}).json()
    assert anyone["best_rated"][0]["sku"] == "SKU-000002"
    assert http.get("/v1/ratings", params={"limit": 0}).status_code == 422


def test_sales_trending_inventory_and_alerts_answer_from_the_views(
    http: httpx.Client, store: WritableStore
) -> None:
    store.upsert("sales_by_region", [
        _sale("00", "ST-0001", 100.10, 2, 3),
        _sale("01", "ST-0001", 50.20, 1, 1),
        _sale("01", "ST-0002", 30.00, 1, 2),
        _sale("02", "ONLINE", 19.99, 1, 1),
    ])  # fmt: skip
    regions = http.get("/v1/sales/regions").json()
    assert regions["total"] == {"revenue": 200.29, "orders": 5, "units": 7}
    assert [w["window_start"] for w in regions["windows"]] == [
        "2026-11-28T10:00:00", "2026-11-28T10:01:00", "2026-11-28T10:02:00",
    ]  # fmt: skip
    by_region = {r["region"]: r for r in regions["regions"]}
    assert [r["region"] for r in regions["regions"]] == ["iberia", "france", "online"]
    assert by_region["iberia"]["revenue"] == 150.3
    assert [p["revenue"] for p in by_region["france"]["series"]] == [0.0, 30.0, 0.0]
    last_two = http.get("/v1/sales/regions", params={"windows": 2}).json()
    assert [p["revenue"] for p in last_two["regions"][0]["series"]] == [50.2, 0.0]

    stores = http.get("/v1/sales/stores").json()
    assert stores["total"]["revenue"] == 200.29
    by_store = {s["store_id"]: s for s in stores["stores"]}
    assert set(by_store) == {"ST-0001", "ST-0002", "ONLINE"}
    assert by_store["ST-0001"]["revenue"] == 150.3 and by_store["ST-0001"]["lat"] == 40.4168
    assert by_store["ST-0001"]["latest_window_revenue"] == 50.2
    assert by_store["ONLINE"]["lat"] is None and by_store["ONLINE"]["region"] == "online"

    store.replace("trending_items", [
        {"category": c, "rank": r, "sku": s, "name": s, "add_to_cart": 10 - r,
         "ordered_units": 5 - r, "score": 10.0 - r, "window_start": "2026-11-28T09:45:00",
         "window_end": "2026-11-28T10:00:00"}
        for c, r, s in [("coats", 1, "SKU-000002"), ("coats", 2, "SKU-000003"),
                        ("shirts", 1, "SKU-000001")]
    ])  # fmt: skip
    trending = http.get("/v1/trending").json()
    assert [(i["category"], i["rank"]) for i in trending["items"]] == [
        ("coats", 1), ("coats", 2), ("shirts", 1),
    ]  # fmt: skip
    assert trending["categories"] == ["coats", "shirts"]
    top_coat = http.get("/v1/trending", params={"category": "coats", "limit": 1}).json()
    assert [i["sku"] for i in top_coat["items"]] == ["SKU-000002"]
    assert http.get("/v1/trending", params={"category": "hats"}).json()["items"] == []

    store.upsert("inventory_positions", [
        _position("ST-0001", "SKU-000001", 8), _position("ST-0001", "SKU-000002", 1),
        _position("ST-0002", "SKU-000003", 0),
    ])  # fmt: skip
    inventory = http.get("/v1/inventory/ST-0001").json()
    assert inventory["store"]["city"] == "Madrid"
    assert [i["sku"] for i in inventory["items"]] == ["SKU-000001", "SKU-000002"]
    assert inventory["low_stock_count"] == 1
    low = http.get("/v1/inventory/ST-0001", params={"low_stock_only": "true"}).json()
    assert [i["sku"] for i in low["items"]] == ["SKU-000002"]
    alerts = http.get("/v1/alerts/low-stock").json()
    assert alerts["count"] == 2
    assert [(i["store_id"], i["on_hand"]) for i in alerts["items"]] == [
        ("ST-0002", 0), ("ST-0001", 1),
    ]  # fmt: skip
    assert http.get("/v1/alerts/low-stock", params={"limit": 1}).json()["count"] == 2
    assert http.get("/v1/alerts/disruptions").json() == {"count": 0, "items": []}


def test_health_reports_store_broker_and_positions(
    http: httpx.Client, store: WritableStore, kafka_broker: LocalBroker
) -> None:
    store.advance("item_ratings", TOPIC_RATINGS, {0: 7, 2: 3})
    answer = http.get("/v1/health")
    assert answer.status_code == 200
    health = answer.json()
    assert health["status"] == "ok"
    assert health["store"]["reachable"] is True
    assert health["broker"] == {
        "reachable": True, "bootstrap": kafka_broker.bootstrap,
        "checked_s_ago": health["broker"]["checked_s_ago"],
    }  # fmt: skip
    assert health["positions"] == {"item_ratings": {TOPIC_RATINGS: {"0": 7, "2": 3}}}


def test_health_is_degraded_without_a_broker(api_settings: Settings, store: WritableStore) -> None:
    dead = f"127.0.0.1:{free_port()}"
    offline = api_settings.model_copy(
        update={"kafka": api_settings.kafka.model_copy(update={"bootstrap_servers": dead})}
    )
    with TestClient(create_app(offline, store=store)) as client:
        health = client.get("/v1/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["broker"]["reachable"] is False
        assert client.get(f"/v1/items/{SKU}").status_code == 200, "queries still served"


def test_openapi_and_docs_are_served(http: httpx.Client) -> None:
    spec = http.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in [
        "/v1/items/{sku}/ratings", "/v1/items/{sku}", "/v1/sales/regions", "/v1/sales/stores",
        "/v1/trending", "/v1/inventory/{store_id}", "/v1/health", "/v1/alerts/low-stock",
        "/v1/alerts/disruptions", "/v1/ratings",
    ]:  # fmt: skip
        assert path in paths, path
    assert "post" in paths["/v1/items/{sku}/ratings"]
    assert "bearer" in json.dumps(spec.json()["components"]["securitySchemes"]).lower()
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # Swagger UI comes from the package, not a CDN (the API must document itself offline).
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', docs.text)
    assert assets and all(a.startswith("/") for a in assets), assets
    for asset in assets:
        assert http.get(asset).status_code == 200, asset
    page = http.get("/")
    assert page.status_code == 200 and 'data-testid="total-revenue"' in page.text
    assert http.get("/static/dashboard.js").status_code == 200


# --- auth -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "unauthorized"),
        ({"Authorization": "Bearer"}, 401, "unauthorized"),
        ({"Authorization": "Bearer wrong-token"}, 403, "forbidden"),
        ({"Authorization": f"Bearer {TOKEN}x"}, 403, "forbidden"),
    ],
)
def test_commands_need_the_api_token(
    http: httpx.Client, headers: dict[str, str], status: int, error: str
) -> None:
    # An invalid body too: authentication is checked first, and nothing leaks about the body.
    for body in ({"customer_id": "C-0000042", "stars": 4}, {"stars": 9}):
        answer = http.post(f"/v1/items/{SKU}/ratings", json=body, headers=headers)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"] == error
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"


def test_without_a_configured_token_commands_are_refused(
    api_settings: Settings, store: WritableStore, publisher: RatingPublisher
) -> None:
    app = create_app(_with_serve(api_settings, api_token=""), store=store, publisher=publisher)
    with TestClient(app) as client:
        for headers in ({}, {"Authorization": "Bearer "}, AUTH):
            answer = client.post(
                f"/v1/items/{SKU}/ratings",
                json={"customer_id": "C-0000042", "stars": 4},
                headers=headers,
            )
            assert answer.status_code == 403
            assert answer.json()["error"] == "api_token_not_configured"


def test_protected_queries_need_the_token_but_health_and_the_page_do_not(
    api_settings: Settings, store: WritableStore, publisher: RatingPublisher
) -> None:
    app = create_app(_with_serve(api_settings, protect_queries=True), store=store,
                     publisher=publisher)  # fmt: skip
    queries = [f"/v1/items/{SKU}", "/v1/sales/regions", "/v1/sales/stores", "/v1/trending",
               "/v1/inventory/ST-0001", "/v1/alerts/low-stock", "/v1/alerts/disruptions"]  # fmt: skip
    with TestClient(app) as client:
        for path in queries:
            assert client.get(path).status_code == 401, path
            wrong = client.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden", path
            assert client.get(path, headers=AUTH).status_code == 200, path
        assert client.get("/v1/health").status_code == 200
        assert client.get("/").status_code == 200
    open_app = create_app(api_settings, store=store, publisher=publisher)
    with TestClient(open_app) as client:
        assert all(client.get(path).status_code == 200 for path in queries)


# --- bad input --------------------------------------------------------------------------

_VALID = {"customer_id": "C-0000042", "stars": 4}
_OTHER_TOPIC = ConsistencyToken("shop.orders", 0, 1).encode()

BAD_INPUT = [
    # (method, path, json body or raw content, status, error)
    ("POST", f"/v1/items/{SKU}/ratings", {"customer_id": "C-0000042", "stars": 0}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", {"customer_id": "C-0000042", "stars": 6}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", {"customer_id": "C-0000042", "stars": "x"}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", {"customer_id": "C-0000042", "stars": "4"}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", {"customer_id": "C-0000042", "stars": 4.5}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", {"customer_id": "C-0000042", "stars": True}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", {"customer_id": "C-0000042", "stars": None}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", {"customer_id": "C-0000042"}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", {"stars": 4}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", {"customer_id": "C-12", "stars": 4}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", {"customer_id": "c-0000042", "stars": 4}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", {"customer_id": "C-00000420", "stars": 4}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", {"customer_id": 42, "stars": 4}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", {**_VALID, "admin": True}, 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", [1, 2], 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", None, 422, "invalid_request"),  # no body
    ("POST", f"/v1/items/{SKU}/ratings", b"{not json", 422, "invalid_request"),
    ("POST", f"/v1/items/{SKU}/ratings", b"\xff\xfe\x00", 400, "bad_request"),  # not UTF-8
    ("POST", "/v1/items/SKU-999999/ratings", _VALID, 404, "unknown_sku"),
    ("POST", "/v1/items/not-a-sku/ratings", _VALID, 404, "unknown_sku"),
    ("GET", "/v1/items/SKU-999999", None, 404, "unknown_sku"),
    ("GET", "/v1/items/%00%27%22;--", None, 404, "unknown_sku"),
    ("GET", f"/v1/items/{SKU}?consistency_token=not-a-token!", None, 400, "invalid_consistency_token"),
    ("GET", f"/v1/items/{SKU}?consistency_token=", None, 400, "invalid_consistency_token"),
    ("GET", f"/v1/items/{SKU}?consistency_token=bm90LWEtdG9rZW4", None, 400, "invalid_consistency_token"),
    ("GET", f"/v1/items/{SKU}?consistency_token={_OTHER_TOPIC}", None, 400, "invalid_consistency_token"),
    ("GET", f"/v1/items/{SKU}?consistency_token={'A' * 1000}", None, 400, "invalid_consistency_token"),
    ("GET", f"/v1/items/{SKU}?wait=-1", None, 422, "invalid_request"),
    ("GET", f"/v1/items/{SKU}?wait=soon", None, 422, "invalid_request"),
    ("GET", f"/v1/items/{SKU}?wait=nan", None, 422, "invalid_request"),
    ("GET", "/v1/trending?limit=0", None, 422, "invalid_request"),
    ("GET", "/v1/trending?limit=many", None, 422, "invalid_request"),
    ("GET", "/v1/sales/regions?windows=0", None, 422, "invalid_request"),
    ("GET", "/v1/alerts/low-stock?limit=-5", None, 422, "invalid_request"),
    ("GET", "/v1/inventory/ST-9999", None, 404, "unknown_store"),
    ("GET", "/v1/inventory/ST-0001?low_stock_only=perhaps", None, 422, "invalid_request"),
    ("GET", "/v1/nothing-here", None, 404, "not_found"),
    ("GET", "/static/missing.js", None, 404, "not_found"),
    ("DELETE", f"/v1/items/{SKU}", None, 405, "method_not_allowed"),
    ("PUT", f"/v1/items/{SKU}/ratings", _VALID, 405, "method_not_allowed"),
    ("GET", "/v1/trending?limt=5", None, 400, "invalid_query"),  # a typo is not ignored
    ("GET", "/v1/trending?limit=1&limit=2", None, 400, "invalid_query"),
    ("GET", f"/v1/items/{SKU}?consistency_token=a&consistency_token=b", None, 400, "invalid_query"),
    ("POST", f"/v1/items/{SKU}/ratings?admin=1", _VALID, 400, "invalid_query"),
    ("GET", "/v1/sales/stores?" + "x=1&" * 2000, None, 400, "query_too_long"),
    ("POST", f"/v1/items/{SKU}/ratings", {**_VALID, "pad": "x" * 20_000}, 413, "content_too_large"),
]  # fmt: skip


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts what arrives
        yield b'{"customer_id": "C-0000042", "stars": 4, "pad": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    answer = http.post(
        f"/v1/items/{SKU}/ratings", content=chunks(),
        headers={**AUTH, "Content-Type": "application/json"},
    )  # fmt: skip
    assert (answer.status_code, answer.json()["error"]) == (413, "content_too_large")


def test_bad_input_is_a_4xx_with_a_json_reason_never_a_500(http: httpx.Client) -> None:
    failures = []
    for method, path, body, status, error in BAD_INPUT:
        if isinstance(body, bytes):
            kwargs: dict[str, Any] = {
                "content": body, "headers": {**AUTH, "Content-Type": "application/json"},
            }  # fmt: skip
        else:
            kwargs = {"json": body, "headers": AUTH} if body is not None else {"headers": AUTH}
        answer = http.request(method, path, **kwargs)
        try:
            assert answer.status_code < 500
            assert answer.headers["content-type"].startswith("application/json")
            document = answer.json()
            assert set(document) == {"error", "detail"} and document["detail"]
            assert (answer.status_code, document["error"]) == (status, error)
        except AssertionError:
            failures.append(f"{method} {path} {body!r}: {answer.status_code} {answer.text[:200]}")
    assert not failures, "\n".join(failures)


def test_validation_errors_name_the_field(http: httpx.Client) -> None:
    answer = http.post(
        f"/v1/items/{SKU}/ratings", json={"customer_id": "C-1", "stars": 9}, headers=AUTH
    )
    fields = {tuple(problem["loc"]) for problem in answer.json()["detail"]}
    assert fields == {("body", "customer_id"), ("body", "stars")}


def test_the_api_token_never_reaches_the_logs_or_metrics(
    api_settings: Settings,
    store: WritableStore,
    publisher: RatingPublisher,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    running, base_url = start_background(api_settings, store=store, publisher=publisher)
    try:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            assert (
                client.post(f"/v1/items/{SKU}/ratings", json=_VALID, headers=AUTH).status_code
                == 202
            )
            wrong = {"Authorization": f"Bearer {TOKEN}-not"}  # refused, and its text not logged
            assert (
                client.post(f"/v1/items/{SKU}/ratings", json=_VALID, headers=wrong).status_code
                == 403
            )
            assert client.get(f"/v1/items/{SKU}", headers=AUTH).status_code == 200
            metrics = client.get("/metrics").text
    finally:
        running.stop()
    out, err = capfd.readouterr()
    assert "retailstream_kafka_up" in metrics
    for where, text in {
        "metrics": metrics,
        "stdout": out,
        "stderr": err,
        "log": caplog.text,
    }.items():
        assert TOKEN not in text, where


def test_a_plain_item_look_up_answers_as_the_routed_one(
    http: httpx.Client, store: WritableStore
) -> None:
    """A bare `GET /v1/items/{sku}` takes the fast path; with a query string it goes
    through FastAPI's route: the two must answer alike, rated, unrated and unknown."""
    store.upsert("item_ratings", [_rated("SKU-000001", [5, 4, 2])])
    for sku in ("SKU-000001", "SKU-000002", "SKU-999999", "%00%27%22;--"):
        fast = http.get(f"/v1/items/{sku}")
        routed = http.get(f"/v1/items/{sku}?wait=0")  # `wait` changes nothing without a token
        assert (fast.status_code, fast.json()) == (routed.status_code, routed.json()), sku
        assert fast.headers["content-type"] == routed.headers["content-type"]
    assert http.get("/v1/items/SKU-000001").json()["ratings_count"] == 3
