"""The serving path in Spark's real-time mode: records -> fact messages -> one folder.

A micro-batch pays for its planning and scheduling, about half a second on two
shared cores, before it reads a record; a rating waits for one batch to end and
the next to run. In real-time mode (`trigger(realTime=...)`, pyspark 4.2) each
Kafka partition is read by a task that runs for a whole checkpoint interval and
passes each record on within milliseconds. The mode has no `foreachBatch`,
and twelve Python writers, one per partition, would queue on the store's one
write lock. So the query writes each record's facts, as one JSON message
(`views.facts.fact_messages`), to a topic of its own (`serving.facts_topic`),
and one folder, a thread of the same process, consumes that topic and folds
what each poll brings in one store transaction (`views.serving.apply_facts`).

Exactly once, by offsets, as on the micro-batch path:
- each fold records the facts topic offsets it folded (`HANDOVER`'s positions)
  in its transaction, and a restarted folder resumes after them;
- the Kafka sink writes at least once: a restarted query writes again what it
  read since its last checkpoint, and the fold skips those records, at or below
  the views' positions. A record's facts travel in one message, so they are
  folded together or not at all;
- messages are keyed by their record's topic and partition, so each source
  partition's records reach the folder in their Kafka order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, TopicPartition
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings, TopicSettings, interval_ms
from retailstream.errors import UserError
from retailstream.io import datasets
from retailstream.kafka.clients import consumer
from retailstream.kafka.topics import create_topics, topic_partitions
from retailstream.views.facts import decode_facts

QUERY_NAME = datasets.SERVING_REALTIME_QUERY
CHECKPOINT = datasets.SERVING_REALTIME_CHECKPOINT
# A derived topic: the folder reads it within seconds; a day covers any pause.
FACTS_RETENTION_MS = 24 * 3_600_000
# How long one poll of the folder collects messages at most: the longest a
# folded record waits for the ones after it.
POLL_S = 0.02
POLL_MESSAGES = 20_000
# Spark will not checkpoint a real-time query more often than this (its default is 5 s).
MIN_BATCH_CONF = "spark.sql.streaming.realTimeMode.minBatchDuration"

# Folds a list of facts with the facts topic's (topic, {partition: offset}) they came in.
Fold = Callable[[list[dict[str, Any]], tuple[str, dict[int, int]]], object]


def task_slots(spark: SparkSession) -> int:
    """How many tasks the application can run at once (local[N]: N; a cluster: its cores)."""
    context = spark.sparkContext._jsc.sc()
    profile = context.resourceProfileManager().defaultResourceProfile()
    return int(context.maxNumConcurrentTasks(profile))


def create_facts_topic(settings: Settings) -> None:
    """The facts topic, one partition, if it is missing."""
    topic = TopicSettings(partitions=1, retention_ms=FACTS_RETENTION_MS)
    create_topics(settings.kafka.bootstrap, {settings.serving.facts_topic: topic})


def start_query(messages: DataFrame, settings: Settings, checkpoint: str) -> StreamingQuery:
    """Write `messages` (`views.facts.fact_messages`) to the facts topic, in real-time mode."""
    serving = settings.serving
    interval = serving.checkpoint_interval
    spark = messages.sparkSession
    spark.conf.set(MIN_BATCH_CONF, str(min(interval_ms(interval), 5000)))
    return (
        messages.writeStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap)
        .option("topic", serving.facts_topic)
        .option("checkpointLocation", checkpoint)
        .outputMode("update")
        .queryName(QUERY_NAME)
        # pyspark's overloads of `trigger` do not list `realTime` yet (4.2.0).
        .trigger(realTime=interval)  # type: ignore[call-overload]
        .start()
    )


class Folder:
    """Consumes the facts topic from after `resume_after` and folds each poll's
    messages with `fold`, until stopped (then it folds what has arrived)."""

    def __init__(
        self, bootstrap: str, topic: str, resume_after: dict[int, int], fold: Fold
    ) -> None:
        self.topic = topic
        self.fold = fold
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._consumer = consumer(bootstrap, f"retailstream-{topic}", **{"fetch.wait.max.ms": 5})
        partitions = topic_partitions(bootstrap, [topic]).get(topic, [0])
        self._consumer.assign(
            [
                TopicPartition(
                    topic, p, resume_after[p] + 1 if p in resume_after else OFFSET_BEGINNING
                )
                for p in partitions
            ]
        )
        self._thread = threading.Thread(target=self._run, name="serving-folder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def discard(self) -> None:
        """Close the consumer of a folder that will not be started (its query did not
        start): a started folder closes it itself when it stops."""
        if self._thread.ident is None:  # never started
            self._consumer.close()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fold what has arrived, then stop."""
        self._stopping.set()
        self._thread.join(timeout_s)

    def join(self) -> None:
        self._thread.join()

    def fold_once(self) -> int:
        """Fold what one poll brings; return how many messages it held."""
        messages = self._consumer.consume(POLL_MESSAGES, POLL_S)
        facts: list[dict[str, Any]] = []
        ends: dict[int, int] = {}
        for message in messages:
            if _failed(message):
                continue
            facts.extend(decode_facts(message.value() or b"[]"))
            ends[int(message.partition() or 0)] = int(message.offset() or 0)
        if ends:
            self.fold(facts, (self.topic, ends))
        return len(ends)

    def _run(self) -> None:
        try:
            while self.fold_once() or not self._stopping.is_set():
                pass
        except BaseException as error:  # reported by the query it serves
            self.error = error
        finally:
            self._consumer.close()


def _failed(message: Message) -> bool:
    """A message that is an error report: transient ones are retried by the client
    (a broker away for a while); anything else stops the folder."""
    error = message.error()
    if error is None:
        return False
    if error.retriable() or error.code() == KafkaError._PARTITION_EOF:
        return True
    raise UserError(f"the serving folder cannot read {message.topic()}: {error.str()}")


class RealTimeServing(StreamingQuery):
    """The real-time query and its folder, run and stopped as one streaming query:
    what `interrupts.await_queries` and the demo wait for, stop and ask for errors.
    Progress, name and id are the Spark query's."""

    def __init__(self, query: StreamingQuery, folder: Folder) -> None:
        super().__init__(query._jsq)
        self.query = query
        self.folder = folder
        # A folder that failed stops the query, so that waiting on it ends.
        self._watch = threading.Thread(target=self._stop_when_folder_ends, daemon=True)
        self._watch.start()

    def _stop_when_folder_ends(self) -> None:
        self.folder.join()
        if self.folder.error is not None:
            self.query.stop()

    def stop(self) -> None:
        self.query.stop()
        self.folder.stop()

    def _folder_failure(self) -> UserError | None:
        if self.folder.error is None:
            return None
        return UserError(f"the serving folder failed: {self.folder.error}")

    def exception(self) -> Any:
        return self._folder_failure() or self.query.exception()

    def awaitTermination(self, timeout: int | None = None) -> bool | None:  # noqa: N802
        try:
            ended = self.query.awaitTermination(timeout)
        finally:
            if not self.query.isActive:
                self.folder.stop()
        failure = self._folder_failure()
        if failure is not None:
            raise failure
        return ended
