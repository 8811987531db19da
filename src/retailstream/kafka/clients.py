"""Kafka clients with the settings this project relies on, and reachability checks."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from retailstream.errors import UserError
from retailstream.kafka.broker import _QUIET, broker_reachable


def require_broker(bootstrap: str, timeout_s: float = 5.0) -> None:
    """Fail with a one-line error when no Kafka cluster answers at `bootstrap`."""
    if not broker_reachable(bootstrap, timeout_s=timeout_s):
        raise UserError(
            f"no Kafka broker answers at {bootstrap}: start one with `retailstream kafka start` "
            "or set kafka.bootstrap_servers"
        )


def admin_client(bootstrap: str) -> AdminClient:
    # The client takes a logging.Logger for "logger", which its stubs leave out.
    return AdminClient({"bootstrap.servers": bootstrap, "logger": _QUIET})  # type: ignore[dict-item]


def producer(bootstrap: str, **overrides: Any) -> Producer:
    """An idempotent producer: a retried send is never written twice to a partition."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "message.max.bytes": 16 * 1024 * 1024,
        "logger": _QUIET,
    }
    conf.update(overrides)
    return Producer(conf)


def consumer(bootstrap: str, group_id: str, **overrides: Any) -> Consumer:
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "logger": _QUIET,
    }
    conf.update(overrides)
    return Consumer(conf)


def flush_or_fail(client: Producer, timeout_s: float = 60.0) -> None:
    """Wait for every queued record to be acknowledged, or say how many were not."""
    remaining = client.flush(timeout_s)
    if remaining:
        raise UserError(
            f"{remaining} records were not acknowledged by Kafka within {timeout_s:.0f}s"
        )
