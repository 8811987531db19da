"""`retailstream demo` from a user's point of view: its own broker, events, bronze, clean exit."""

from __future__ import annotations

from pathlib import Path

from retailstream.kafka.broker import free_port, port_in_use
from support import run_cli


def test_demo_starts_a_broker_ingests_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    done = run_cli(
        "demo",
        "--events-per-topic", "5",
        "--set", f"lake.root={tmp_path / 'lake'}",
        "--set", f"kafka.local_broker.data_dir={tmp_path / 'kafka'}",
        "--set", f"kafka.local_broker.port={port}",
        "--set", f"kafka.local_broker.controller_port={free_port()}",
        "--set", f"spark.driver_log={tmp_path / 'driver.log'}",
        "--set", "spark.master=local[1]",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"Kafka broker started on 127.0.0.1:{port}" in out
    assert "published 30 events to 6 topics" in out
    for topic in ("shop.orders", "shop.clickstream", "logistics.world_events"):
        assert any(line.split()[:2] == [topic, "5"] for line in out.splitlines()), out
    assert "Kafka broker stopped" in out
    assert done.stderr == "", "the JVM's console output belongs in the driver log"
    assert not port_in_use("127.0.0.1", port)
    assert (tmp_path / "lake" / "bronze_events" / "_delta_log").is_dir()
