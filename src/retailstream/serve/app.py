"""The HTTP API and dashboard: commands go to Kafka, queries read the serving store.

CQRS: `POST` publishes an event and answers 202 once Kafka has it; `GET`s read
the views the gold job maintains in the serving store. The two meet through
consistency tokens (see `consistency.py`). `create_app` builds the app from
settings; the store and publisher may be passed in (tests, other stores).
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures' types at runtime.

import asyncio
import hmac
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from retailstream.config import Settings
from retailstream.health.metrics import CONTENT_TYPE
from retailstream.serve import queries
from retailstream.serve.commands import Published, PublishError, RateItem, RatingPublisher
from retailstream.serve.consistency import (
    MAX_TOKEN_CHARS,
    ConsistencyToken,
    InvalidTokenError,
    wait_until_included,
)
from retailstream.serve.errors import ApiError, ErrorBody, install_error_handlers
from retailstream.serve.health import BrokerProbe, PipelineProbe, health
from retailstream.serve.item_lookups import ItemLookups
from retailstream.serve.limits import RequestLimits, send_json
from retailstream.serve.models import (
    Accepted,
    Alerts,
    Health,
    Inventory,
    ItemRatings,
    PipelineHealth,
    RatingsOverview,
    Recommendations,
    SalesByRegion,
    SalesByStore,
    Trending,
)
from retailstream.views.store import ServingStore
from retailstream.views.stores import STORE_ERRORS, api_store
from retailstream.world.records import TOPIC_RATINGS

STATIC_DIR = Path(__file__).parent / "static"
ITEM_VIEW = "item_ratings"
VERSION = (Path(__file__).parents[1] / "VERSION").read_text().strip()


class Publisher(Protocol):
    """What the command side needs from Kafka (`RatingPublisher`)."""

    topic: str

    def publish(self, sku: str, customer_id: str, stars: int) -> Published: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class AppState:
    settings: Settings
    store: ServingStore
    items: ItemLookups
    publisher: Publisher
    probe: BrokerProbe
    pipeline: PipelineProbe


# Dependencies are `async def` where they do no I/O: FastAPI runs a plain `def`
# dependency on its thread pool, a hop that cost more than the look-up it guards.
async def _state(request: Request) -> AppState:
    return request.app.state.retailstream


State = Annotated[AppState, Depends(_state)]
_bearer = HTTPBearer(
    auto_error=False,
    description="The API token of serve.api_token (RETAILSTREAM_SERVE__API_TOKEN)",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _authorize(expected: str, credentials: HTTPAuthorizationCredentials | None) -> None:
    """401 without a bearer token, 403 with a wrong one or when no token is configured."""
    if not expected:
        raise ApiError(
            403,
            "api_token_not_configured",
            "this server has no serve.api_token: set RETAILSTREAM_SERVE__API_TOKEN to allow it",
        )
    if credentials is None:
        raise ApiError(
            401,
            "unauthorized",
            "send the API token as `Authorization: Bearer <token>`",
            {"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise ApiError(403, "forbidden", "the API token is not valid")


async def require_command_token(state: State, credentials: Credentials) -> None:
    _authorize(state.settings.serve.api_token, credentials)


async def require_query_token(state: State, credentials: Credentials) -> None:
    if state.settings.serve.protect_queries:
        _authorize(state.settings.serve.api_token, credentials)


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route takes, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


# Per route (by identity: routes are not hashable), worked out once: they live as
# long as the app.
_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _route_query_names(route: APIRoute) -> frozenset[str]:
    """`_query_names` of a route."""
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        names = _QUERY_NAMES[id(route)] = frozenset(_query_names(route.dependant))
    return names


async def reject_unknown_query(request: Request) -> None:
    """400 for a query parameter the route does not take, or one given twice: a typo
    (`?limt=5`) or a repeat would otherwise be ignored, or the last copy taken, and
    the client would never know."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _route_query_names(route)
    given = Counter(name for name, _ in request.query_params.multi_items())
    unknown = sorted(set(given) - allowed)
    repeated = sorted(name for name, count in given.items() if count > 1 and name in allowed)
    if unknown or repeated:
        takes = ", ".join(sorted(allowed)) or "none"
        names = ", ".join(repr(name[:40]) for name in (unknown or repeated)[:3])
        what = "unknown query parameter" if unknown else "query parameter given twice"
        raise ApiError(400, "invalid_query", f"{what}: {names}; this route takes: {takes}")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route declares; every route may answer 400 (an unknown or
    repeated query parameter, a body that is not UTF-8)."""
    return {status: {"model": ErrorBody} for status in sorted({400, *statuses})}


checked_query = Depends(reject_unknown_query)
commands = APIRouter(
    tags=["commands"], dependencies=[Depends(require_command_token), checked_query]
)
views = APIRouter(tags=["queries"], dependencies=[Depends(require_query_token), checked_query])
service = APIRouter(tags=["service"])


@commands.post(
    "/v1/items/{sku}/ratings",
    status_code=202,
    response_model=Accepted,
    responses=_errors(401, 403, 404, 413, 422, 503),
    summary="Rate an item (1-5 stars)",
)
def rate_item(sku: str, body: RateItem, state: State, response: Response) -> Accepted:
    """Publish an `item_rated` event to Kafka and answer once Kafka has acknowledged it.

    The answer's `consistency_token`, passed to `GET /v1/items/{sku}`, makes
    that query wait until the rating is in the view (read-your-writes).
    """
    if queries.product(state.store, sku) is None:
        raise ApiError(404, "unknown_sku", f"no product {sku!r} in the catalogue")
    try:
        published = state.publisher.publish(sku, body.customer_id, body.stars)
    except PublishError as exc:
        raise ApiError(503, "broker_unavailable", str(exc), {"Retry-After": "5"}) from exc
    token = ConsistencyToken(published.topic, published.partition, published.offset).encode()
    response.headers["Location"] = f"/v1/items/{sku}?consistency_token={token}"
    return Accepted(
        event_id=published.event_id,
        consistency_token=token,
        topic=published.topic,
        partition=published.partition,
        offset=published.offset,
    )


# What a consistency token looks like (base64url, no padding), for the schema: the
# handler checks it and answers 400 with its reason, not FastAPI's 422.
TOKEN_SCHEMA: dict[str, Any] = {
    "minLength": 1,
    "maxLength": MAX_TOKEN_CHARS,
    "pattern": "^[A-Za-z0-9_-]+$",
}


class _FastJSON(JSONResponse):
    """JSON written by orjson: the item look-up is the API's hot path, and its
    documents are plain JSON values (read back from the store)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _token(text: str, expected_topic: str) -> ConsistencyToken:
    try:
        token = ConsistencyToken.decode(text)
    except InvalidTokenError as exc:
        raise ApiError(400, "invalid_consistency_token", str(exc)) from exc
    if token.topic != expected_topic:
        raise ApiError(
            400,
            "invalid_consistency_token",
            f"the token is for topic {token.topic}; this view follows {expected_topic}",
        )
    return token


@views.get(
    "/v1/items/{sku}",
    response_model=None,
    responses={200: {"model": ItemRatings}, **_errors(400, 401, 403, 404, 422)},
    summary="An item's ratings (read-your-writes with a consistency token)",
)
async def get_item(
    sku: str,
    state: State,
    consistency_token: Annotated[
        str | None,
        Query(
            description="From a command's answer: wait until it is in the view (400 for a"
            " token this API did not issue)",
            json_schema_extra=TOKEN_SCHEMA,
        ),
    ] = None,
    x_consistency_token: Annotated[
        str | None,
        Header(description="Same as ?consistency_token=", json_schema_extra=TOKEN_SCHEMA),
    ] = None,
    wait: Annotated[
        float | None,
        Query(ge=0, le=3600, allow_inf_nan=False, description="Wait at most this (s)"),
    ] = None,
) -> JSONResponse:
    """The item's ratings document: count, average, histogram and the last ratings.

    With a consistency token the query waits, up to `serve.consistency_wait_s`
    (or `?wait=` if lower), until the view includes that write. The answer then
    holds `consistency`: whether it does, and by how many offsets it is still
    behind if not (with a `Retry-After` header). An unrated item has a zero
    document; an unknown sku is 404.
    """
    raw = consistency_token if consistency_token is not None else x_consistency_token
    token = _token(raw, state.publisher.topic) if raw is not None else None
    item, doc = await state.items.item_and_ratings(sku)
    if item is None or doc is None:
        raise ApiError(404, "unknown_sku", f"no product {sku!r} in the catalogue")
    if token is None:
        return _FastJSON({**doc, "consistency": None})
    limit = state.settings.serve.consistency_wait_s
    report = await wait_until_included(
        lambda: state.store.positions(ITEM_VIEW, token.topic),
        token,
        limit if wait is None else min(wait, limit),
    )
    # Read after the wait: the view's rows are written before its position moves.
    doc = queries.ratings_of(state.store, item)
    headers = {} if report.token_satisfied else {"Retry-After": "1"}
    return _FastJSON({**doc, "consistency": report.as_dict()}, headers=headers)


@views.get(
    "/v1/sales/regions",
    response_model=None,
    responses={200: {"model": SalesByRegion}, **_errors(401, 403, 422)},
    summary="Revenue per region: totals and a per-window time series",
)
def sales_regions(
    state: State,
    windows: Annotated[int, Query(ge=1, le=1440, description="Windows in each series")] = 60,
) -> dict[str, Any]:
    """Totals per region over all one-minute windows, and each region's last `windows` windows."""
    return queries.sales_by_region(state.store, windows)


@views.get(
    "/v1/sales/stores",
    response_model=None,
    responses={200: {"model": SalesByStore}, **_errors(401, 403)},
    summary="Sales totals per store, with locations (the dashboard's map)",
)
def sales_stores(state: State) -> dict[str, Any]:
    """Every store with lat/lon and its sales totals; online sales have no location."""
    return queries.sales_by_store(state.store)


@views.get(
    "/v1/ratings",
    response_model=None,
    responses={200: {"model": RatingsOverview}, **_errors(401, 403, 422)},
    summary="The best rated items and the newest ratings",
)
def ratings_overview(
    state: State,
    limit: Annotated[int, Query(ge=1, le=100, description="Items and ratings to return")] = 5,
    min_ratings: Annotated[
        int, Query(ge=1, description="Ratings an item needs to rank among the best rated")
    ] = 3,
) -> dict[str, Any]:
    """The item-ratings read model at a glance, as the dashboard shows it."""
    return queries.ratings_overview(state.store, limit, min_ratings)


@views.get(
    "/v1/trending",
    response_model=None,
    responses={200: {"model": Trending}, **_errors(401, 403, 422)},
    summary="Trending items per category",
)
def get_trending(
    state: State,
    category: Annotated[str | None, Query(description="Only this category")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Top N of each category")] = 10,
) -> dict[str, Any]:
    """The top items of each category by recent add-to-cart and order velocity (rank 1 = top)."""
    return queries.trending(state.store, category or None, limit)


@views.get(
    "/v1/inventory/{store_id}",
    response_model=None,
    responses={200: {"model": Inventory}, **_errors(401, 403, 404, 422)},
    summary="A store's stock positions",
)
def get_inventory(
    store_id: str,
    state: State,
    low_stock_only: Annotated[bool, Query(description="Only positions at low stock")] = False,
) -> dict[str, Any]:
    """Initial, delivered, sold and on-hand units of every sku the store carries."""
    answer = queries.inventory(state.store, store_id, low_stock_only)
    if answer is None:
        raise ApiError(404, "unknown_store", f"no store {store_id!r}")
    return answer


@views.get(
    "/v1/customers/{customer_id}/recommendations",
    response_model=None,
    responses={200: {"model": Recommendations}, **_errors(401, 403, 404)},
    summary="A customer's recommended items",
)
def get_recommendations(customer_id: str, state: State) -> dict[str, Any]:
    """The recommender champion's top items for the customer, best first; a customer
    without history gets the items most liked in their home region."""
    answer = queries.recommendations(state.store, customer_id)
    if answer is None:
        raise ApiError(404, "unknown_customer", f"no customer {customer_id!r}")
    return answer


@views.get(
    "/v1/alerts/low-stock",
    response_model=None,
    responses={200: {"model": Alerts}, **_errors(401, 403, 422)},
    summary="Low-stock alerts across all stores",
)
def low_stock(
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000, description="Return at most this many")] = 50,
) -> dict[str, Any]:
    """Positions at or below `views.low_stock_threshold`, emptiest first."""
    return queries.low_stock_alerts(state.store, limit)


@views.get(
    "/v1/alerts/disruptions",
    response_model=None,
    responses={200: {"model": Alerts}, **_errors(401, 403, 422)},
    summary="Shipments predicted to be late, with rerouting suggestions",
)
def disruptions(
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000, description="Return at most this many")] = 50,
) -> dict[str, Any]:
    """Departures the disruption champion scores as likely late (`score_shipments`), most
    likely first: probability, reasons, affected store and skus, where else to source them."""
    return queries.disruption_alerts(state.store, limit)


@service.get(
    "/v1/health",
    response_model=None,
    responses={200: {"model": Health}, 503: {"model": Health}},
    summary="Store, broker and view positions",
)
async def get_health(state: State) -> JSONResponse:
    """`ok`, `degraded` (Kafka unreachable: commands fail) or `down` (store unreadable, 503).

    Open even when queries are protected, for load balancers and monitors.
    """
    topics = dict.fromkeys([*state.settings.kafka.topics, TOPIC_RATINGS])
    status, document = await asyncio.to_thread(
        health, state.store, state.probe, state.settings.views.views, topics
    )
    return JSONResponse({**document, "version": VERSION}, status_code=status)


@service.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}}},
    summary="Pipeline health for Prometheus",
)
async def get_metrics(state: State) -> Response:
    """Each stream's lag behind its sources (records and seconds, per topic partition
    or Delta table), rates, batch duration against its trigger, state and late rows,
    in Prometheus' text format. Measured at most every few seconds.

    Open even when queries are protected, as `/v1/health` is: it carries no data of
    the views."""
    text = await asyncio.to_thread(state.pipeline.metrics)
    return Response(text, media_type=CONTENT_TYPE)


@service.get("/v1/pipeline", response_model=PipelineHealth, summary="Is every stream keeping up?")
async def get_pipeline(state: State) -> dict[str, Any]:
    """Each stream's lag behind its sources, its last batch, and one line saying what
    is wrong (what `retailstream status` shows). Open, as `/v1/health` is."""
    return await asyncio.to_thread(state.pipeline.document)


@service.get("/", include_in_schema=False)
def dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def create_app(
    settings: Settings, store: ServingStore | None = None, publisher: Publisher | None = None
) -> FastAPI:
    """The API + dashboard app. Without `store`/`publisher`, the configured ones.

    A publisher made here is closed (its queue flushed) when the app shuts down;
    one passed in belongs to the caller.
    """
    owned = publisher is None
    store = store if store is not None else api_store(settings)
    state = AppState(
        settings=settings,
        store=store,
        items=ItemLookups(store),
        publisher=publisher or RatingPublisher(settings.kafka.bootstrap),
        probe=BrokerProbe(settings.kafka.bootstrap),
        pipeline=PipelineProbe(settings),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await state.items.aclose()
        if owned:
            await asyncio.to_thread(state.publisher.close)

    app = FastAPIOffline(
        title="retailstream",
        version=VERSION,
        summary="Retail analytics: rate items (commands) and read live views (queries).",
        description=(
            "Commands are published to Kafka and answered 202 with a consistency token; "
            "queries read the views the streaming jobs maintain. Errors are "
            '`{"error": code, "detail": ...}`. The dashboard is at `/`.'
        ),
        lifespan=lifespan,
    )
    app.state.retailstream = state
    app.add_middleware(RequestLimits)
    app.add_middleware(ItemFastPath, state=state)  # outermost of the two: it reads no body
    app.openapi = _schema_as_served(app, settings)  # type: ignore[method-assign]
    install_error_handlers(app)
    app.include_router(commands)
    app.include_router(views)
    app.include_router(service)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


ITEM_PREFIX = "/v1/items/"


class ItemFastPath:
    """ASGI middleware answering the API's commonest request, a plain `GET
    /v1/items/{sku}` (no query string, no consistency token, queries unprotected),
    straight from the store: the same look-ups and document as `get_item`, without
    FastAPI's routing, dependency solving and parameter parsing, which cost more
    than the look-ups. Anything else, an unknown sku or a store error included,
    goes on to the app, which answers it as it answers every request."""

    def __init__(self, app: Any, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and not scope.get("query_string")
            and scope["path"].startswith(ITEM_PREFIX)
            and not self.state.settings.serve.protect_queries
        ):
            body = await self._document(scope)
            if body is not None:
                await send_json(send, 200, body)
                return
        await self.app(scope, receive, send)

    async def _document(self, scope: dict[str, Any]) -> bytes | None:
        sku = scope["path"][len(ITEM_PREFIX) :]
        if (
            not sku
            or "/" in sku
            or any(name == b"x-consistency-token" for name, _ in scope["headers"])
        ):
            return None
        try:
            item, doc = await self.state.items.item_and_ratings(sku)
            if doc is None:
                return None
            return orjson.dumps({**doc, "consistency": None})
        except STORE_ERRORS:
            return None


def _schema_as_served(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document as this server behaves: the query routes ask for the
    token only when `serve.protect_queries` is set (their dependency always reads
    it, so FastAPI would declare it either way)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()  # cached by FastAPI in app.openapi_schema
            if not settings.serve.protect_queries:
                for operations in schema["paths"].values():
                    for operation in operations.values():
                        if "queries" in operation.get("tags", ()):
                            operation.pop("security", None)
                            for status in ("401", "403"):
                                operation["responses"].pop(status, None)
        return app.openapi_schema or build()

    return openapi
