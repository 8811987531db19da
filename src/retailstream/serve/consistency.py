"""Consistency tokens: read-your-writes across the command and query sides.

A command is accepted once Kafka has acknowledged its event, long before the
gold job has folded it into a view. The token handed back names where the
event was written (topic, partition, offset); the serving store records, per
view, the highest offset of each partition the view includes. A query that
carries the token waits until the view has caught up with it, or says how far
behind it still is, so a client can read its own write without guessing.

The token is opaque to clients (base64url of `topic:partition:offset`, no
padding) so that its layout may change without breaking them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# Kafka topic names: letters, digits, '.', '_' and '-', at most 249 characters.
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# A token is short; anything longer is refused before decoding.
MAX_TOKEN_CHARS = 400
POLL_INTERVAL_S = 0.1


class InvalidTokenError(ValueError):
    """A consistency token that cannot be decoded (the client sent something else)."""


@dataclass(frozen=True)
class ConsistencyToken:
    """Where a command's event was written: a view includes it once its position reaches it."""

    topic: str
    partition: int
    offset: int

    def encode(self) -> str:
        raw = f"{self.topic}:{self.partition}:{self.offset}".encode()
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> ConsistencyToken:
        """The token `encode` produced, or `InvalidTokenError` saying why not."""
        if not text or len(text) > MAX_TOKEN_CHARS:
            raise InvalidTokenError("consistency token is empty or too long")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            topic, partition, offset = raw.decode("ascii").rsplit(":", 2)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise InvalidTokenError("consistency token is not one this API issued") from exc
        if not _TOPIC.match(topic) or not partition.isdigit() or not offset.isdigit():
            raise InvalidTokenError("consistency token is not one this API issued")
        return cls(topic, int(partition), int(offset))


@dataclass(frozen=True)
class ConsistencyReport:
    """The `consistency` object of a query answer."""

    token_satisfied: bool
    behind_by: int
    waited_ms: int

    def as_dict(self) -> dict[str, bool | int]:
        return {
            "token_satisfied": self.token_satisfied,
            "behind_by": self.behind_by,
            "waited_ms": self.waited_ms,
        }


def behind_by(token: ConsistencyToken, positions: dict[int, int]) -> int:
    """How many offsets of the token's partition the view still lacks (0 once it includes it).

    A partition the view has never seen counts as position -1, so a token at
    offset 0 is one behind.
    """
    return max(0, token.offset - positions.get(token.partition, -1))


async def wait_until_included(
    read_positions: Callable[[], dict[int, int]],
    token: ConsistencyToken,
    max_wait_s: float,
    poll_interval_s: float = POLL_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ConsistencyReport:
    """Poll the view's positions until they include `token`, for `max_wait_s` at most.

    `read_positions` is a blocking store read; it runs in a worker thread so
    that waiting requests never hold up the event loop (other requests are
    served meanwhile). `clock` and `sleep` are the real ones but for tests.
    """
    started = clock()
    deadline = started + max(0.0, max_wait_s)
    while True:
        lag = behind_by(token, await asyncio.to_thread(read_positions))
        now = clock()
        if lag == 0 or now >= deadline:
            return ConsistencyReport(lag == 0, lag, int((now - started) * 1000))
        await sleep(min(poll_interval_s, deadline - now))
