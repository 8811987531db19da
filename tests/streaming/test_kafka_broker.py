"""The local broker is a real Kafka: keyed order, durability across restarts, clean failures."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from retailstream.config import TopicSettings
from retailstream.errors import UserError
from retailstream.jars import classpath
from retailstream.kafka.broker import LocalBroker, port_in_use
from retailstream.kafka.clients import consumer, flush_or_fail, producer
from retailstream.kafka.topics import create_topics, describe_topics, list_topics
from retailstream.tether import start_ticks
from support import broker_settings


def _produce_keyed(bootstrap: str, topic: str, keys: int, per_key: int) -> None:
    client = producer(bootstrap)
    for seq in range(per_key):
        for k in range(keys):
            client.produce(topic, key=f"key-{k}".encode(), value=f"key-{k}:{seq}".encode())
    flush_or_fail(client)


def _read_all(bootstrap: str, topic: str, expected: int) -> list[tuple[int, int, str, str]]:
    """(partition, offset, key, value) of every record, read with a fresh consumer group."""
    reader = consumer(bootstrap, group_id=f"reader-{topic}")
    reader.subscribe([topic])
    records = []
    try:
        for _ in range(200):
            for msg in reader.consume(num_messages=1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                partition, offset = msg.partition(), msg.offset()
                key, value = msg.key(), msg.value()
                # A record (not an error), with the key and value every record here has.
                assert partition is not None and offset is not None
                assert key is not None and value is not None
                records.append((partition, offset, key.decode(), value.decode()))
            if len(records) >= expected:
                break
    finally:
        reader.close()
    return records


def _assert_per_key_order(
    records: list[tuple[int, int, str, str]], keys: int, per_key: int
) -> None:
    by_key: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for partition, offset, key, value in records:
        by_key[key].append((partition, offset, int(value.split(":")[1])))
    assert len(by_key) == keys
    for key, seen in by_key.items():
        assert len({p for p, _, _ in seen}) == 1, f"{key} spread over partitions"
        ordered = [seq for _, _, seq in sorted(seen, key=lambda r: r[1])]
        assert ordered == list(range(per_key)), f"{key} out of order"


def test_keyed_records_come_back_in_per_partition_order(
    kafka_broker: LocalBroker, topic_name: str
) -> None:
    create_topics(kafka_broker.bootstrap, {topic_name: TopicSettings(partitions=3)})
    _produce_keyed(kafka_broker.bootstrap, topic_name, keys=12, per_key=50)
    records = _read_all(kafka_broker.bootstrap, topic_name, expected=600)
    assert len(records) == 600
    assert len({p for p, *_ in records}) == 3, "12 keys should land on all 3 partitions"
    _assert_per_key_order(records, keys=12, per_key=50)


def test_records_survive_a_broker_restart(tmp_path: Path) -> None:
    broker = LocalBroker(broker_settings(tmp_path / "kafka"), classpath(Path.cwd(), "kafka-broker"))
    broker.start()
    try:
        create_topics(broker.bootstrap, {"durable": TopicSettings(partitions=2)})
        _produce_keyed(broker.bootstrap, "durable", keys=4, per_key=25)
        before = sorted(_read_all(broker.bootstrap, "durable", expected=100))
        assert broker.stop()
        assert broker.status().running is False
        broker.start()
        after = sorted(_read_all(broker.bootstrap, "durable", expected=100))
        assert after == before and len(after) == 100
    finally:
        broker.stop()
    assert not broker.pid_file.exists()


def test_topics_are_created_once_with_infinite_retention(
    kafka_broker: LocalBroker, topic_name: str
) -> None:
    declared = {topic_name: TopicSettings(partitions=2, retention_ms=-1)}
    assert create_topics(kafka_broker.bootstrap, declared) == {topic_name: "created"}
    assert create_topics(kafka_broker.bootstrap, declared) == {topic_name: "exists"}
    assert topic_name in list_topics(kafka_broker.bootstrap)
    [info] = describe_topics(kafka_broker.bootstrap, [topic_name])
    assert info.retention_ms == "-1"
    assert [p.partition for p in info.partitions] == [0, 1]


def test_describing_a_missing_topic_is_a_clear_error(kafka_broker: LocalBroker) -> None:
    with pytest.raises(UserError, match="no such topic: nothere"):
        describe_topics(kafka_broker.bootstrap, ["nothere"])


def test_port_in_use_is_refused_and_nothing_starts(
    kafka_broker: LocalBroker, tmp_path: Path
) -> None:
    clash = broker_settings(tmp_path / "clash").model_copy(
        update={"port": kafka_broker.settings.port}
    )
    second = LocalBroker(clash, kafka_broker.classpath)
    with pytest.raises(
        UserError, match=rf"port {clash.port} on 127.0.0.1 is already in use.*--set kafka"
    ):
        second.start()
    assert second.pid() is None
    assert not port_in_use("127.0.0.1", clash.controller_port)


def test_a_broker_that_fails_to_start_leaves_nothing_running(
    tmp_path: Path, project_home: Path
) -> None:
    bad = broker_settings(tmp_path / "bad").model_copy(update={"heap": "not-a-size"})
    broker = LocalBroker(bad, classpath(project_home, "kafka-broker"))
    with pytest.raises(UserError, match="exited during start-up"):
        broker.start()
    assert broker.pid() is None
    assert not port_in_use("127.0.0.1", bad.port)


# A command that starts its own broker (as the demo does), says the broker's pid, waits.
BROKER_OWNER = """
import sys
from pathlib import Path
from retailstream.config import LocalBrokerSettings
from retailstream.jars import classpath
from retailstream.kafka.broker import LocalBroker
port, controller, data, home = sys.argv[1:]
settings = LocalBrokerSettings(
    port=int(port), controller_port=int(controller), data_dir=Path(data), heap="384m"
)
broker = LocalBroker(settings, classpath(Path(home), "kafka-broker"))
broker.start(tethered=True)
print(broker.pid(), flush=True)
sys.stdin.read()
"""


def test_a_broker_started_for_a_command_ends_with_it_even_when_it_is_killed(
    tmp_path: Path, project_home: Path
) -> None:
    settings = broker_settings(tmp_path / "kafka")
    owner = subprocess.Popen(
        [sys.executable, "-c", BROKER_OWNER, str(settings.port), str(settings.controller_port),
         str(settings.data_dir), str(project_home)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert owner.stdout is not None
    broker_pid = int(owner.stdout.readline())
    assert start_ticks(broker_pid) is not None and port_in_use(settings.host, settings.port)
    owner.kill()  # SIGKILL, as an out-of-memory killer or `kill -9` would
    owner.wait()
    deadline = time.monotonic() + 60
    while start_ticks(broker_pid) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert start_ticks(broker_pid) is None, "the broker outlived the command that started it"
    assert not port_in_use(settings.host, settings.port)
