"""Answer shapes, for the OpenAPI document (`/docs`) and for the answers built from them.

View rows are returned as the gold job wrote them, so these models document
them with `extra="allow"`: a field the job adds later reaches clients without
a change here. Routes declare them through `responses=` and are not validated
against them, so a view row of an unexpected shape is still served.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Accepted(BaseModel):
    """A command Kafka has acknowledged; the event reaches the views shortly."""

    event_id: str = Field(description="32 hex characters, the event's id in every table")
    consistency_token: str = Field(
        description="Pass as ?consistency_token= to a query to read this write"
    )
    topic: str
    partition: int
    offset: int


class Consistency(BaseModel):
    """How a query carrying a consistency token relates to that write."""

    token_satisfied: bool = Field(description="The answer includes the write")
    behind_by: int = Field(description="Offsets of the write's partition the view still lacks")
    waited_ms: int


class LastRating(_Open):
    event_id: str
    customer_id: str
    stars: int
    event_time: str


class RatedItem(_Open):
    sku: str
    name: str | None = None
    category: str | None = None
    ratings_count: int
    average_stars: float | None = None


class ItemRatings(RatedItem):
    histogram: dict[str, int] = Field(description='Ratings per star, keys "1" to "5"')
    last_ratings: list[LastRating] = Field(description="Newest first, at most 10")
    consistency: Consistency | None = Field(
        None, description="Present when the query carried a consistency token"
    )


class NewRating(LastRating):
    sku: str
    name: str | None = None


class RatingsOverview(_Open):
    rated_items: int = Field(description="Items with at least one rating")
    ratings: int = Field(description="Ratings counted in all")
    best_rated: list[RatedItem] = Field(description="Highest average stars first")
    newest: list[NewRating] = Field(description="Newest first, across all items")


class Totals(_Open):
    revenue: float
    orders: int
    units: int


class WindowTotals(Totals):
    window_start: str
    window_end: str


class RegionSales(Totals):
    region: str
    series: list[WindowTotals] = Field(description="The last windows, oldest first")


class SalesByRegion(_Open):
    total: Totals
    windows: list[dict[str, str]]
    regions: list[RegionSales]


class StoreSales(Totals):
    store_id: str
    city: str | None = None
    region: str | None = None
    country: str | None = None
    lat: float | None = None
    lon: float | None = None
    latest_window_start: str | None = None
    latest_window_revenue: float


class SalesByStore(_Open):
    total: Totals
    stores: list[StoreSales]


class TrendingItem(_Open):
    category: str
    rank: int
    sku: str
    name: str | None = None
    add_to_cart: int
    ordered_units: int
    score: float
    window_start: str | None = None
    window_end: str | None = None


class Trending(_Open):
    categories: list[str]
    window_start: str | None = None
    window_end: str | None = None
    items: list[TrendingItem]


class Position(_Open):
    store_id: str
    sku: str
    name: str | None = None
    category: str | None = None
    initial: int
    delivered: int
    sold: int
    on_hand: int
    low_stock: bool


class Inventory(_Open):
    store: dict[str, Any]
    count: int
    low_stock_count: int
    items: list[Position]


class Recommended(_Open):
    rank: int
    sku: str
    name: str | None = None
    category: str | None = None
    score: float | None = Field(None, description="Predicted stars (model) or well-rated count")


class Recommendations(_Open):
    """A customer's top items: the champion model's, or what their region likes."""

    customer_id: str
    source: str = Field(description="`model`, `popular_in_region`, or `none` before any training")
    model_version: str | None = None
    region: str | None = None
    items: list[Recommended]


class Alerts(_Open):
    count: int = Field(description="How many alerts there are in all (items may be capped)")
    items: list[dict[str, Any]]


class Health(_Open):
    status: str = Field(description="ok | degraded (no broker: no commands) | down (no store)")
    store: dict[str, Any]
    broker: dict[str, Any]
    positions: dict[str, dict[str, dict[str, int]]] = Field(
        description="{view: {topic: {partition: highest offset included}}}"
    )


class StreamHealth(_Open):
    name: str = Field(description="the streaming query (serving_views: the serving store)")
    lag_records: int = Field(description="records not read yet, over every source")
    lag_seconds: float = Field(description="age of the oldest record not read yet")
    behind: bool = Field(description="lagging more than a few triggers (and 30 s)")
    silent: bool = Field(description="the driver has not reported it for a while")
    worst: dict[str, Any] | None = Field(description="the source partition furthest behind")
    report: dict[str, Any] | None = Field(
        description="its last batch: rates, batch and trigger ms, state and late rows, quarantine"
    )


class PipelineHealth(_Open):
    verdict: str = Field(description="one line: what is wrong, or that nothing is")
    healthy: bool
    kafka_error: str | None
    streams: list[StreamHealth]
