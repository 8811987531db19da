"""The command side: turning a validated "rate item" request into a Kafka event.

The API does not write views; it publishes the same `item_rated` event the
generator would, and the streaming jobs fold it into the views like any other.
Publishing is synchronous: a 202 is only answered once Kafka has acknowledged
the record, because the answer carries the partition and offset the consistency
token is made of (and an unacknowledged command must not be reported as taken).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from retailstream.kafka.clients import producer
from retailstream.kafka.publish import delivered_at
from retailstream.world.records import TOPIC_RATINGS, encode_ratings
from retailstream.world.simtime import iso_ms

CUSTOMER_ID = re.compile(r"^C-[0-9]{7}$")
SKU = re.compile(r"^SKU-[0-9]{6}$")
# How long a command waits for Kafka's acknowledgement before answering 503.
DEFAULT_PUBLISH_TIMEOUT_S = 5.0


def _whole_number(value: object) -> object:
    """A JSON number with no fraction as an int; anything else as it came."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class RateItem(BaseModel):
    """Body of `POST /v1/items/{sku}/ratings`: a customer gives an item 1 to 5 stars."""

    model_config = ConfigDict(extra="forbid")

    customer_id: Annotated[
        str,
        Field(
            pattern=CUSTOMER_ID.pattern,
            description="The rating customer, e.g. C-0000001",
            examples=["C-0000001"],
        ),
    ]
    # strict: "4" or true are refused rather than coerced into stars. 4.0 is 4: JSON
    # has one number type, and the schema's "integer" admits it.
    stars: Annotated[
        int,
        Field(strict=True, ge=1, le=5, description="1 to 5", examples=[4]),
        BeforeValidator(_whole_number),
    ]


class PublishError(Exception):
    """Kafka did not acknowledge the event (unreachable broker, missing topic, timeout)."""


@dataclass(frozen=True)
class Published:
    """Where Kafka stored a command's event."""

    event_id: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class RatingEvent:
    """One `item_rated` record, encoded exactly like the generator's."""

    event_id: str
    key: bytes
    value: bytes
    timestamp_ms: int


def rating_event(sku: str, customer_id: str, stars: int, now_s: float | None = None) -> RatingEvent:
    """The record of a rating made now: key = sku, value = the topic's JSON, Kafka time = event time."""
    now_s = time.time() if now_s is None else now_s
    event_id = uuid.uuid4().hex
    event_time = iso_ms(now_s)  # ends with Z; the encoder adds its own
    (value,) = encode_ratings([event_id], [event_time[:-1]], [customer_id], [sku], [stars])
    return RatingEvent(event_id, sku.encode(), value, int(now_s * 1000))


class _Delivery:
    """The delivery report of one record, handed from whichever thread polls to the waiter."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: KafkaError | None = None
        self.partition = -1
        self.offset = -1

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        self.error = err
        if err is None:
            self.partition, self.offset = delivered_at(msg)
        self.done.set()


class RatingPublisher:
    """Publishes rating events and waits for Kafka's acknowledgement. Thread-safe.

    The producer is created on first use, so an API whose broker is down still
    starts and answers queries; commands then fail with `PublishError`.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str = TOPIC_RATINGS,
        timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S,
        **producer_conf: Any,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout_s = timeout_s
        self._conf = {
            # One record per request: send it now rather than wait for a batch.
            "linger.ms": 0,
            # librdkafka gives up on the record when the request does, so a
            # command answered 503 is not written long after.
            "message.timeout.ms": max(1, int(timeout_s * 1000)),
            **producer_conf,
        }
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def _client(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = producer(self.bootstrap, **self._conf)
            return self._producer

    def publish(self, sku: str, customer_id: str, stars: int) -> Published:
        """Write one `item_rated` event and return where it landed; blocks until acknowledged."""
        event = rating_event(sku, customer_id, stars)
        delivery = _Delivery()
        client = self._client()
        try:
            client.produce(
                self.topic,
                key=event.key,
                value=event.value,
                timestamp=event.timestamp_ms,
                on_delivery=delivery,
            )
        except (BufferError, KafkaException) as exc:
            raise PublishError(f"could not queue the event for Kafka: {exc}") from exc
        deadline = time.monotonic() + self.timeout_s
        while not delivery.done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishError(
                    f"Kafka at {self.bootstrap} did not acknowledge the event within "
                    f"{self.timeout_s:g}s"
                )
            client.poll(min(0.05, remaining))
        if delivery.error is not None:
            raise PublishError(f"Kafka refused the event: {delivery.error.str()}")
        return Published(event.event_id, self.topic, delivery.partition, delivery.offset)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is still queued (at most `timeout_s`) and drop the producer."""
        with self._lock:
            if self._producer is not None:
                self._producer.flush(timeout_s)
                self._producer = None
