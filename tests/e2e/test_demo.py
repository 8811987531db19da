"""`retailstream demo` from a user's point of view: its own broker, a world, events, bronze, clean exit."""

from __future__ import annotations

from pathlib import Path

from retailstream.kafka.broker import free_port, port_in_use
from support import run_cli


def test_demo_starts_a_broker_ingests_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    done = run_cli(
        "demo",
        "--events", "3000",
        "--rate", "3000",
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
    assert "[3/5] published 3000 events" in out
    bronze_lines = out.split("holds:")[1].splitlines()
    ingested = {line.split()[0]: int(line.split()[1]) for line in bronze_lines if "records" in line}
    assert sum(ingested.values()) == 3000
    assert {"shop.clickstream", "shop.orders", "shop.ratings"} <= set(ingested)
    assert "Kafka broker stopped" in out
    assert done.stderr == "", "the JVM's console output belongs in the driver log"
    assert not port_in_use("127.0.0.1", port)
    assert (tmp_path / "lake" / "bronze_events" / "_delta_log").is_dir()
