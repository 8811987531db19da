"""A real Apache Kafka broker on this machine, run from the Maven Central jars.

KRaft mode, one process acting as both controller and broker, listening on
loopback only. Its state lives under `data_dir`:

    server.properties   generated from settings at every start
    log4j2.properties   console logging, captured into broker.log
    broker.log          the broker's log
    broker.pid          the running broker's process id
    log-segments/       topic data and KRaft metadata (formatted once)
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from retailstream.config import LocalBrokerSettings
from retailstream.errors import UserError
from retailstream.jars import classpath
from retailstream.javacheck import java_executable
from retailstream.tether import Tether, tether

NODE_ID = 1
STOP_TIMEOUT_S = 30.0

_LOG4J = """\
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = stdout
appender.stdout.type = Console
appender.stdout.name = stdout
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    reachable: bool

    def describe(self) -> str:
        if not self.running:
            return f"stopped (would listen on {self.bootstrap})"
        state = "accepting clients" if self.reachable else "not answering yet"
        return f"running (pid {self.pid}) on {self.bootstrap}, {state}"


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for tests and throwaway brokers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) counts as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def server_properties(settings: LocalBrokerSettings) -> str:
    """The broker's configuration for a single combined KRaft node on loopback."""
    host, port, cport = settings.host, settings.port, settings.controller_port
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{host}:{cport}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(settings.data_dir / "log-segments"),
        "num.partitions": "3",
        # One node: internal topics cannot have more than one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Topics are declared in config and created on purpose, never by a typo.
        "auto.create.topics.enable": "false",
        "message.max.bytes": str(settings.max_message_bytes),
        "replica.fetch.max.bytes": str(settings.max_message_bytes),
        "log.retention.hours": "-1",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


class LocalBroker:
    """Start, stop and inspect the local broker described by `settings`."""

    def __init__(self, settings: LocalBrokerSettings, classpath: list[Path]) -> None:
        self.settings = settings
        self.classpath = classpath
        self.data_dir = settings.data_dir
        self.pid_file = self.data_dir / "broker.pid"
        self.log_file = self.data_dir / "broker.log"
        self.properties_file = self.data_dir / "server.properties"
        self.log4j_file = self.data_dir / "log4j2.properties"
        self.segments_dir = self.data_dir / "log-segments"
        self._tether: Tether | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # -- inspection ---------------------------------------------------------

    def pid(self) -> int | None:
        """The running broker's pid, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _pid_alive(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def status(self) -> BrokerStatus:
        pid = self.pid()
        reachable = pid is not None and broker_reachable(self.bootstrap, timeout_s=3.0)
        return BrokerStatus(pid is not None, pid, self.bootstrap, reachable)

    # -- lifecycle ----------------------------------------------------------

    def _java(self, main_class: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            str(java_executable()),
            f"-Xmx{heap}",
            "-Xss1m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile=file:{self.log4j_file}",
            "-cp",
            os.pathsep.join(str(p) for p in self.classpath),
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        """Format the KRaft metadata log once; a formatted dir keeps its cluster id."""
        if (self.segments_dir / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        command = self._java(
            "kafka.tools.StorageTool",
            "format",
            # `=` form: a base64 id may start with "-", which would read as an option.
            f"--cluster-id={cluster_id}",
            "--config",
            str(self.properties_file),
            "--ignore-formatted",
        )
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"formatting Kafka storage in {self.segments_dir} failed: {last[0]}")

    def start(self, tethered: bool = False) -> float:
        """Start the broker and wait until it accepts clients; return seconds taken.

        Refuses, without starting anything, when it already runs or a port is
        taken. On failure the half-started process is killed. `tethered`: the
        broker is this process's own and stops when it ends, killed or not
        (`retailstream.tether`); otherwise it runs until stopped.
        """
        started = time.monotonic()
        if not self.classpath:
            raise UserError("the Kafka broker jars are missing: run `make setup`")
        running = self.pid()
        if running is not None:
            raise UserError(f"the Kafka broker already runs (pid {running}) on {self.bootstrap}")
        for port, key in (
            (self.settings.port, "port"),
            (self.settings.controller_port, "controller_port"),
        ):
            if port_in_use(self.settings.host, port):
                raise UserError(
                    f"port {port} on {self.settings.host} is already in use: stop what holds it "
                    f"or choose another with --set kafka.local_broker.{key}=PORT"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(server_properties(self.settings))
        self.log4j_file.write_text(_LOG4J)
        self._format_storage()
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                self._java("kafka.Kafka", str(self.properties_file), heap=self.settings.heap),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: Ctrl-C in the terminal that started it does not kill it.
                start_new_session=True,
            )
        self.pid_file.write_text(f"{process.pid}\n")
        if tethered:
            self._tether = tether(process.pid)
        deadline = started + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._forget(process.pid)
                raise UserError(
                    f"the Kafka broker exited during start-up (code {process.returncode}): "
                    f"{self._last_error_line()} (log: {self.log_file})"
                )
            if broker_reachable(self.bootstrap, timeout_s=1.0):
                return time.monotonic() - started
            time.sleep(0.2)
        self._kill(process.pid)
        raise UserError(
            f"the Kafka broker did not accept clients within {self.settings.start_timeout_s:.0f}s; "
            f"see {self.log_file}"
        )

    def stop(self) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after a grace period).

        Returns False when it was not running.
        """
        pid = self.pid()
        if pid is None:
            return False
        self._kill(pid)
        return True

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and _pid_alive(pid):
            _reap(pid)
            time.sleep(0.1)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                _reap(pid)
                time.sleep(0.05)
        self._forget(pid)

    def _forget(self, pid: int) -> None:
        """After the broker process `pid` has ended: no zombie, no pid file, no watcher."""
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        if self._tether is not None:
            self._tether.release()
            self._tether = None

    def _last_error_line(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "no log"
        for line in reversed(lines):
            if "ERROR" in line or "Exception" in line:
                return line.strip()[:300]
        return lines[-1].strip()[:300] if lines else "empty log"


def _reap(pid: int) -> None:
    """Collect the exit status if the broker is our child (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def broker_reachable(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when a Kafka cluster at `bootstrap` answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    # The client takes a logging.Logger for "logger", which its stubs leave out.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "logger": _QUIET})  # type: ignore[dict-item]
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception:
        return False
    return True


# librdkafka logs every failed connection attempt; callers report failures themselves.
_QUIET = logging.getLogger("retailstream.kafka.probe")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


@contextlib.contextmanager
def throwaway_broker(data_dir: Path, home: Path, heap: str = "512m") -> Iterator[LocalBroker]:
    """A broker of its own on free ports with its data under `data_dir`, always stopped.

    For work that must not add records to the developer's broker on 9092: a
    benchmark, the sample lake.
    """
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    broker = LocalBroker(
        LocalBrokerSettings(
            port=port, controller_port=controller_port, data_dir=data_dir, heap=heap
        ),
        classpath(home, "kafka-broker"),
    )
    broker.start(tethered=True)
    try:
        yield broker
    finally:
        broker.stop()
