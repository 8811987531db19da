"""A Spark standalone cluster (one master, one or more workers) from the installed PySpark.

For trying the jobs on a real cluster manager on one machine: executors run
in the workers' JVMs, not in the driver, exactly as on a multi-host cluster.
State (pids, logs, each worker's scratch space) lives under `state_dir`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from retailstream.errors import UserError
from retailstream.kafka.broker import _pid_alive, _reap, free_port, port_in_use


def _spark_class() -> str:
    found = shutil.which("spark-class") or str(Path(sys.executable).parent / "spark-class")
    if not Path(found).exists():
        raise UserError("spark-class was not found: install the project with `make setup`")
    return found


@dataclass(frozen=True)
class StandaloneCluster:
    state_dir: Path
    host: str = "127.0.0.1"
    master_port: int = 7077
    master_ui_port: int = 8080
    worker_ui_port: int = 8081
    worker_cores: int = 1
    worker_memory: str = "1g"
    # Worker processes, each with `worker_cores` and `worker_memory` to give executors.
    workers: int = 1

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise UserError(f"a standalone cluster needs a worker at least, not {self.workers}")

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"

    def _worker_suffixes(self) -> list[str]:
        """What tells the workers' state apart: worker.pid and work/ of the first,
        worker-2.pid and work-2/ of the second..."""
        return ["", *(f"-{n}" for n in range(2, self.workers + 1))]

    def _start(self, name: str, *args: str) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "SPARK_LOCAL_IP": self.host, "PYSPARK_PYTHON": sys.executable}
        with (self.state_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [_spark_class(), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        (self.state_dir / f"{name}.pid").write_text(f"{process.pid}\n")

    def master_state(self) -> dict[str, object]:
        """The master's JSON status (workers, running and completed applications)."""
        url = f"http://{self.host}:{self.master_ui_port}/json/"
        with urllib.request.urlopen(url, timeout=2) as answer:
            return json.loads(answer.read())

    def start(self, timeout_s: float = 90.0) -> None:
        """Start the master and the workers; return once every worker has registered.

        The first worker's UI listens on `worker_ui_port`, the others' on free ports."""
        for port in (self.master_port, self.master_ui_port, self.worker_ui_port):
            if port_in_use(self.host, port):
                raise UserError(
                    f"port {port} on {self.host} is already in use: stop what holds it first"
                )
        self._start(
            "master",
            "org.apache.spark.deploy.master.Master",
            "--host", self.host,
            "--port", str(self.master_port),
            "--webui-port", str(self.master_ui_port),
        )  # fmt: skip
        for suffix in self._worker_suffixes():
            ui_port = free_port(self.host) if suffix else self.worker_ui_port
            self._start(
                f"worker{suffix}",
                "org.apache.spark.deploy.worker.Worker",
                self.master_url,
                "--host", self.host,
                "--cores", str(self.worker_cores),
                "--memory", self.worker_memory,
                "--webui-port", str(ui_port),
                "--work-dir", str(self.state_dir / f"work{suffix}"),
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                alive = self.master_state().get("aliveworkers", 0)
                if isinstance(alive, int) and alive >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise UserError(
            f"the standalone cluster did not come up within {timeout_s:.0f}s; see {self.state_dir}"
        )

    def stop(self) -> None:
        for name in (*(f"worker{s}" for s in self._worker_suffixes()), "master"):
            pid_file = self.state_dir / f"{name}.pid"
            try:
                pid = int(pid_file.read_text())
            except (FileNotFoundError, ValueError):
                continue
            if _pid_alive(pid):
                os.killpg(pid, signal.SIGTERM)
                deadline = time.monotonic() + 20
                while _pid_alive(pid) and time.monotonic() < deadline:
                    _reap(pid)
                    time.sleep(0.1)
                if _pid_alive(pid):
                    os.killpg(pid, signal.SIGKILL)
            _reap(pid)
            pid_file.unlink(missing_ok=True)
