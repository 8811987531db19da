"""The real-time serving path's folder on a real broker: it folds the facts topic's
messages in order with the offsets they came at, resumes after the offsets it is
given, and a fold that fails ends it with the error kept for the query to report."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest

from retailstream.config import TopicSettings
from retailstream.jobs.serving_realtime import Folder
from retailstream.kafka.broker import LocalBroker
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics

MESSAGES = 30


def _facts_topic(bootstrap: str) -> str:
    """A fresh one-partition topic holding MESSAGES fact messages (one fact each)."""
    topic = f"serving.facts.{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {topic: TopicSettings(partitions=1)})
    client = producer(bootstrap)
    for n in range(MESSAGES):
        fact = {"view": "_seen", "topic": "shop.ratings", "partition": 0, "offset": n}
        client.produce(topic, key=b"shop.ratings:0", value=json.dumps([fact]).encode())
    flush_or_fail(client)
    return topic


class Recorder:
    """A fold that keeps what it was given and says when it has seen an offset."""

    def __init__(self, last_offset: int) -> None:
        self.offsets: list[int] = []
        self.handed_over: list[dict[int, int]] = []
        self.last_offset = last_offset
        self.done = threading.Event()

    def __call__(self, facts: list[dict[str, Any]], handed_over: tuple[str, dict]) -> None:
        self.offsets.extend(int(f["offset"]) for f in facts)
        self.handed_over.append(dict(handed_over[1]))
        if handed_over[1].get(0, -1) >= self.last_offset:
            self.done.set()


def test_the_folder_folds_in_order_and_resumes_after_its_offsets(
    kafka_broker: LocalBroker,
) -> None:
    bootstrap = kafka_broker.bootstrap
    topic = _facts_topic(bootstrap)
    first = Recorder(MESSAGES - 1)
    folder = Folder(bootstrap, topic, {}, first)
    folder.start()
    assert first.done.wait(60), first.offsets
    folder.stop()
    assert folder.error is None
    # Every message once, in Kafka order; each fold reports the last offset it held.
    assert first.offsets == list(range(MESSAGES))
    ends = [h[0] for h in first.handed_over]
    assert ends == sorted(ends) and ends[-1] == MESSAGES - 1

    # A folder resuming after offset 19 folds the ten messages after it, no more.
    resumed = Recorder(MESSAGES - 1)
    again = Folder(bootstrap, topic, {0: 19}, resumed)
    again.start()
    assert resumed.done.wait(60), resumed.offsets
    again.stop()
    assert resumed.offsets == list(range(20, MESSAGES))


def test_a_fold_that_fails_ends_the_folder_with_its_error(kafka_broker: LocalBroker) -> None:
    bootstrap = kafka_broker.bootstrap
    topic = _facts_topic(bootstrap)

    def failing(facts: list[dict[str, Any]], handed_over: tuple[str, dict]) -> None:
        raise OSError("disk I/O error")

    folder = Folder(bootstrap, topic, {}, failing)
    folder.start()
    folder.join()  # ends by itself: no stop asked
    assert isinstance(folder.error, OSError)
    assert str(folder.error) == "disk I/O error"


def test_a_folder_never_started_closes_its_consumer(kafka_broker: LocalBroker) -> None:
    never = Recorder(MESSAGES - 1)
    folder = Folder(kafka_broker.bootstrap, _facts_topic(kafka_broker.bootstrap), {}, never)
    folder.discard()
    with pytest.raises(RuntimeError, match="(?i)closed"):  # a closed consumer refuses use
        folder.fold_once()
    assert never.offsets == []
