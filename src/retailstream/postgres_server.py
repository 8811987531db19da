"""A real PostgreSQL server on this machine, run from the distribution's binaries.

The serving store's `postgres` kind, for development and tests: one cluster,
listening over TCP on `host:port` only (no Unix socket), with passwords
required of everyone (SCRAM). Its state lives under `data_dir`:

    roles.json      generated passwords of the superuser, the writer and the reader
                    role (mode 0600, owned by whoever ran `retailstream postgres start`)
    postgres.log    the server's log
    cluster/        the database cluster (PGDATA), made by initdb once

The writer role owns the database, so it creates and writes the views' tables;
the reader role may only read them (SELECT, granted on every table the writer
makes, and read-only transactions by default). PostgreSQL refuses to run as
root: run by root, the server and its tools run as the `postgres` system user,
which owns `cluster/` and `postgres.log`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retailstream.config import LocalPostgresSettings, Settings
from retailstream.errors import UserError
from retailstream.kafka.broker import free_port, port_in_use
from retailstream.tether import tether

SUPERUSER = "postgres"
WRITER_ROLE = "retailstream_writer"
READER_ROLE = "retailstream_reader"
SERVER_ACCOUNT = "postgres"  # the system user the server runs as when started by root
STOP_TIMEOUT_S = 60
DISTRIBUTION_ROOT = Path("/usr/lib/postgresql")  # Debian: /usr/lib/postgresql/<major>/bin


@dataclass(frozen=True)
class PostgresStatus:
    running: bool
    pid: int | None
    address: str
    accepting: bool

    def describe(self) -> str:
        if not self.running:
            return f"stopped (would listen on {self.address})"
        state = "accepting connections" if self.accepting else "not accepting connections yet"
        return f"running (pid {self.pid}) on {self.address}, {state}"


@dataclass(frozen=True)
class ServerAccount:
    """The system user that runs the server and its tools (root may not)."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    def may_traverse(self, folder: Path) -> bool:
        """True when this user may enter `folder` (its mode bits; ACLs aside)."""
        info = folder.stat()
        if info.st_uid == self.uid:
            return bool(info.st_mode & stat.S_IXUSR)
        if info.st_gid in self.groups:
            return bool(info.st_mode & stat.S_IXGRP)
        return bool(info.st_mode & stat.S_IXOTH)


def server_account() -> ServerAccount | None:
    """Who must run the server: None for the current user, the `postgres` user for root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        raise UserError(
            f"PostgreSQL refuses to run as root and there is no `{SERVER_ACCOUNT}` system "
            "user to run it as: run `make setup` (it installs Debian's postgresql)"
        ) from None
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return ServerAccount(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)


def _major(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", folder.name)) or (0,)


def postgres_bindir(major: str | None = None) -> Path:
    """The folder of initdb, pg_ctl and postgres: the distribution's newest (or `major`'s
    when a cluster was made by it), else `pg_config --bindir`."""
    if major and (DISTRIBUTION_ROOT / major / "bin" / "initdb").exists():
        return DISTRIBUTION_ROOT / major / "bin"
    installed = [p.parent.parent for p in DISTRIBUTION_ROOT.glob("*/bin/initdb")]
    if installed:
        return max(installed, key=_major) / "bin"
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(done.stdout.strip())
        if done.returncode == 0 and (bindir / "initdb").exists():
            return bindir
    raise UserError(
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed: run `make setup`"
    )


def _server_env(account: ServerAccount | None) -> dict[str, str]:
    """The environment without PG* variables (a PGDATA or PGPORT of the caller's must not
    redirect the tools), with the server account's HOME when running as it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if account is not None:
        env.update(HOME=account.home, USER=account.name, LOGNAME=account.name)
    return env


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


@dataclass(frozen=True)
class Roles:
    """The generated passwords, by role name (roles.json)."""

    passwords: dict[str, str]

    def password(self, role: str) -> str:
        return self.passwords[role]

    @classmethod
    def generate(cls) -> Roles:
        return cls(
            {role: secrets.token_urlsafe(24) for role in (SUPERUSER, WRITER_ROLE, READER_ROLE)}
        )


def read_roles(path: Path) -> Roles | None:
    """The passwords in `path`, or None when it is missing or lacks a role."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(role), str) and data[role]
        for role in (SUPERUSER, WRITER_ROLE, READER_ROLE)
    ):
        return None
    return Roles({role: data[role] for role in (SUPERUSER, WRITER_ROLE, READER_ROLE)})


def _write_private(path: Path, text: str) -> None:
    """Write `text` readable by its owner only, atomically (never a moment world-readable)."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(partial, path)


class LocalPostgres:
    """Start, stop and inspect the local PostgreSQL server described by `settings`."""

    def __init__(self, settings: LocalPostgresSettings, database: str) -> None:
        self.settings = settings
        self.database = database
        self.data_dir = settings.data_dir.absolute()
        self.cluster_dir = self.data_dir / "cluster"
        self.roles_file = self.data_dir / "roles.json"
        self.log_file = self.data_dir / "postgres.log"
        # initdb fills this first; renamed to cluster/ once complete, so a Ctrl-C during
        # initdb never leaves a half-made cluster that looks like a real one.
        self._initdb_dir = self.data_dir / "cluster.initdb"
        self._pwfile = self.data_dir / "initdb.pwfile"

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # -- inspection ---------------------------------------------------------

    def pid(self) -> int | None:
        """The running postmaster's pid (from cluster/postmaster.pid), or None."""
        try:
            pid = int((self.cluster_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # a crash left the file; the next start replaces it
        except PermissionError:
            pass  # alive, run by another user
        return pid

    def status(self) -> PostgresStatus:
        pid = self.pid()
        accepting = pid is not None and self._accepting()
        return PostgresStatus(pid is not None, pid, self.address, accepting)

    def _accepting(self) -> bool:
        probe = [
            str(postgres_bindir() / "pg_isready"),
            "--host", self.settings.host, "--port", str(self.settings.port), "--timeout", "3",
        ]  # fmt: skip
        done = subprocess.run(
            probe, capture_output=True, env=_server_env(None), check=False, timeout=10
        )
        return done.returncode == 0

    def roles(self) -> Roles:
        """The generated passwords; a one-line error when the server was never started."""
        found = read_roles(self.roles_file)
        if found is None:
            raise UserError(
                f"no PostgreSQL credentials in {self.roles_file}: run `retailstream postgres start`"
            )
        return found

    def conninfo(self, role: str) -> str:
        """A libpq connection string for `role` on this server's database."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.settings.host,
            port=self.settings.port,
            dbname=self.database,
            user=role,
            password=self.roles().password(role),
        )

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> float:
        """Start the server (initdb the first time) and make sure the database and its
        two roles exist with their grants; return the seconds taken.

        Idempotent: on a running server it only checks the database and the roles
        (creating what is missing, changing nothing else). Interrupted (Ctrl-C reaches
        the tools too), it leaves nothing the next start cannot finish: a half-made
        cluster is only ever in cluster.initdb/, and a server already launched runs on
        in its own session (pg_ctl's doing) and is set up by the next start.
        """
        started = time.monotonic()
        account = server_account()
        if self.pid() is None:
            if port_in_use(self.settings.host, self.settings.port):
                raise UserError(
                    f"port {self.settings.port} on {self.settings.host} is already in use: stop "
                    "what holds it or choose another with --set postgres.local_server.port=PORT"
                )
            self._prepare_data_dir(account)
            if not (self.cluster_dir / "PG_VERSION").exists():
                self._initdb(account)
            self._pg_ctl_start(account)
        self._provision(self.roles())
        return time.monotonic() - started

    def stop(self) -> bool:
        """Stop the server (fast: open sessions are ended) and wait; False when not running."""
        if self.pid() is None:
            return False
        done = self._run(
            self._tool("pg_ctl"),
            "stop", "-D", str(self.cluster_dir), "-m", "fast", "-w", "-t", str(STOP_TIMEOUT_S),
            account=server_account(),
            timeout=STOP_TIMEOUT_S + 30,
        )  # fmt: skip
        if done.returncode != 0 and self.pid() is not None:
            raise UserError(
                f"PostgreSQL did not stop: {_last_line(done.stderr or done.stdout)} (log: {self.log_file})"
            )
        return True

    # -- steps of start -----------------------------------------------------

    def _tool(self, name: str) -> str:
        try:
            major: str | None = (self.cluster_dir / "PG_VERSION").read_text().strip()
        except OSError:
            major = None
        return str(postgres_bindir(major) / name)

    def _run(
        self, *command: str, account: ServerAccount | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run a server tool as `account` (None: the current user) from the data dir
        (the account may not be allowed into the caller's working directory)."""
        as_account: dict[str, Any] = {}
        if account is not None:
            as_account = {"user": account.uid, "group": account.gid, "extra_groups": account.groups}
        return subprocess.run(
            list(command),
            cwd=self.data_dir,
            env=_server_env(account),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
            **as_account,
        )

    def _give(self, path: Path, account: ServerAccount | None) -> None:
        if account is not None:
            os.chown(path, account.uid, account.gid)

    def _prepare_data_dir(self, account: ServerAccount | None) -> None:
        """The data dir with its log file and generated passwords, reachable by the server."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if account is not None:
            for folder in reversed([self.data_dir, *self.data_dir.parents]):
                if not account.may_traverse(folder):
                    raise UserError(
                        f"the `{account.name}` user that runs PostgreSQL cannot enter {folder}: "
                        f"`chmod o+x {folder}`, or choose a data dir it can reach with "
                        "--set postgres.local_server.data_dir=PATH"
                    )
        if not self.log_file.exists():
            self.log_file.touch(mode=0o640)
            self._give(self.log_file, account)  # pg_ctl opens it as the server account
        if read_roles(self.roles_file) is None:
            if (self.cluster_dir / "PG_VERSION").exists():
                raise UserError(
                    f"the PostgreSQL cluster in {self.cluster_dir} has no credentials in "
                    f"{self.roles_file}: restore that file, or remove {self.data_dir} to start afresh"
                )
            _write_private(self.roles_file, json.dumps(Roles.generate().passwords, indent=2) + "\n")

    def _initdb(self, account: ServerAccount | None) -> None:
        if self.cluster_dir.exists():
            raise UserError(
                f"{self.cluster_dir} exists but is not a PostgreSQL cluster: move it away"
            )
        shutil.rmtree(self._initdb_dir, ignore_errors=True)  # left by an interrupted start
        self._initdb_dir.mkdir(mode=0o700)
        self._give(self._initdb_dir, account)
        _write_private(self._pwfile, self.roles().password(SUPERUSER) + "\n")
        self._give(self._pwfile, account)
        try:
            done = self._run(
                self._tool("initdb"),
                "-D", str(self._initdb_dir), "-U", SUPERUSER, f"--pwfile={self._pwfile}",
                "--auth=scram-sha-256", "-E", "UTF8", "--no-locale",
                account=account,
                timeout=300,
            )  # fmt: skip
        finally:
            self._pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise UserError(
                f"initdb of {self.cluster_dir} failed: {_last_line(done.stderr or done.stdout)}"
            )
        self._initdb_dir.rename(self.cluster_dir)

    def _pg_ctl_start(self, account: ServerAccount | None) -> None:
        host = self.settings.host
        options = (
            f"-c listen_addresses={shlex.quote(host)} -c port={self.settings.port} "
            # TCP only: no socket file to place where the server account may write.
            "-c unix_socket_directories=''"
        )
        timeout_s = max(1, math.ceil(self.settings.start_timeout_s))
        done = self._run(
            self._tool("pg_ctl"),
            "start", "-D", str(self.cluster_dir), "-l", str(self.log_file), "-o", options,
            "-w", "-t", str(timeout_s),
            account=account,
            timeout=timeout_s + 30,
        )  # fmt: skip
        if done.returncode != 0:
            raise UserError(
                f"PostgreSQL did not start within {timeout_s}s: {self._last_error_line()} "
                f"(log: {self.log_file})"
            )

    def _provision(self, roles: Roles) -> None:
        """Create what is missing of the database, the two roles and the reader's grants."""
        import psycopg
        from psycopg import sql

        writer, reader = sql.Identifier(WRITER_ROLE), sql.Identifier(READER_ROLE)
        database = sql.Identifier(self.database)

        def superuser(dbname: str) -> psycopg.Connection[Any]:
            try:
                return psycopg.connect(
                    host=self.settings.host,
                    port=self.settings.port,
                    dbname=dbname,
                    user=SUPERUSER,
                    password=roles.password(SUPERUSER),
                    connect_timeout=10,
                    autocommit=True,  # CREATE DATABASE refuses to run in a transaction
                )
            except psycopg.OperationalError as exc:
                raise UserError(
                    f"cannot connect to PostgreSQL on {self.address} as {SUPERUSER}: "
                    f"{_last_line(str(exc))}"
                ) from None

        with superuser("postgres") as conn:
            for role in (WRITER_ROLE, READER_ROLE):
                if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                    conn.execute(
                        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                            sql.Identifier(role), sql.Literal(roles.password(role))
                        )
                    )
            # A default the reader could lift; what really stops its writes are privileges.
            conn.execute(
                sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(reader)
            )
            exists = "SELECT 1 FROM pg_database WHERE datname = %s"
            if not conn.execute(exists, [self.database]).fetchone():
                # The owner of the database owns its schema public (PostgreSQL 15+).
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, writer))
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database))
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, reader))
        with superuser(self.database) as conn:
            for statement in (
                "GRANT USAGE ON SCHEMA public TO {reader}",
                "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}",
                "ALTER DEFAULT PRIVILEGES FOR ROLE {writer} IN SCHEMA public "
                "GRANT SELECT ON TABLES TO {reader}",
            ):
                conn.execute(sql.SQL(statement).format(reader=reader, writer=writer))

    def _last_error_line(self) -> str:
        with contextlib.suppress(OSError):
            lines = self.log_file.read_text(errors="replace").splitlines()
            for line in reversed(lines[-200:]):
                if "FATAL" in line or "ERROR" in line or "PANIC" in line:
                    return line.strip()[:300]
            return _last_line("\n".join(lines[-20:]))
        return "no log"


@contextlib.contextmanager
def throwaway_server(database: str = "retailstream") -> Iterator[LocalPostgres]:
    """A server of its own on a free port (tests, benchmarks), stopped and removed on
    the way out. Its data is not under a mode-700 folder such as pytest's or
    `TemporaryDirectory`'s: run by root, the server runs as `postgres`, which must be
    able to enter it."""
    root = Path(tempfile.mkdtemp(prefix="retailstream-postgres-", dir="/tmp"))
    root.chmod(0o755)
    server = LocalPostgres(
        LocalPostgresSettings(port=free_port(), data_dir=root / "postgres"), database
    )
    held = None
    try:
        server.start()
        pid = server.pid()
        # Never outlives this process (a killed test run): SIGINT is the fast shutdown.
        held = tether(pid, signal.SIGINT) if pid is not None else None
        yield server
    finally:
        server.stop()
        if held is not None:
            held.release()
        shutil.rmtree(root, ignore_errors=True)


def local_postgres(settings: Settings) -> LocalPostgres:
    """The local server of `settings`."""
    return LocalPostgres(settings.postgres.local_server, settings.postgres.database)


def _local_dsn(settings: Settings, role: str, key: str) -> str:
    if not settings.postgres.local_server.enabled:
        raise UserError(
            f"postgres.{key} is not set and postgres.local_server.enabled is false: set "
            f"RETAILSTREAM_POSTGRES__{key.upper()} to your server's connection string"
        )
    return local_postgres(settings).conninfo(role)


def writer_dsn(settings: Settings) -> str:
    """The libpq connection string of the role that creates and writes the views' tables."""
    return settings.postgres.writer_dsn or _local_dsn(settings, WRITER_ROLE, "writer_dsn")


def reader_dsn(settings: Settings) -> str:
    """The libpq connection string of the read-only role the API reads with."""
    return settings.postgres.reader_dsn or _local_dsn(settings, READER_ROLE, "reader_dsn")
