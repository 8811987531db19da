"""`retailstream serve --workers N` as a user runs it: several processes on one port
answering from the store, and a Ctrl-C that leaves nothing running and no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from retailstream.kafka.broker import free_port, port_in_use
from retailstream.views.store import SqliteStore
from support import PROJECT_HOME, run_cli

PRODUCT = {"sku": "SKU-000001", "name": "Shirt", "category": "shirts", "season": "all",
           "brand": "Norda", "price": 39.95}  # fmt: skip


def test_two_workers_serve_the_store_and_stop_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "views.db")
    store.replace("products", [PRODUCT])
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "retailstream"), "--env", "test", "serve",
        "--workers", "2", "--port", str(port), "--set", f"views.sqlite_path={store.path}",
    ]  # fmt: skip
    server = subprocess.Popen(
        command, cwd=PROJECT_HOME, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,  # a process group, as in a terminal
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(server.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        # Both workers up: each says so once its app has started.
        while sum("Application startup complete" in line for line in lines) < 2:
            assert server.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)  # polling the log the reader thread fills
        answer = httpx.get(f"http://127.0.0.1:{port}/v1/items/SKU-000001", timeout=10)
        assert answer.status_code == 200 and answer.json()["ratings_count"] == 0
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=60)
        reader.join(timeout=10)
    output = "".join(lines)
    assert server.returncode == 0, output
    assert "Traceback" not in output, output
    assert output.count("Started server process") == 2, output
    assert not port_in_use("127.0.0.1", port)


def test_a_worker_count_below_one_is_a_one_line_error() -> None:
    answer = run_cli("serve", "--workers", "0")
    assert answer.returncode == 2
    assert "not a whole number of at least 1: '0'" in answer.stderr
    assert "Traceback" not in answer.stderr
