"""`retailstream postgres start|status|stop` as a user runs them, on a throwaway data dir
and port, and the roles `start` sets up: a writer that owns the database and a reader
that may only read what the writer makes. One server start for the whole module."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from retailstream.config import Settings, load_settings
from retailstream.kafka.broker import free_port, port_in_use
from retailstream.postgres_server import (
    READER_ROLE,
    SUPERUSER,
    local_postgres,
    reader_dsn,
    writer_dsn,
)
from support import PROJECT_HOME, run_cli

TABLE = "item_ratings"


@pytest.fixture(scope="module")
def cli_env() -> Iterator[dict[str, str]]:
    """Config from the environment: a fresh data dir the `postgres` user can enter
    (not pytest's tmp_path, mode 700 under /tmp/pytest-of-root) and a free port."""
    root = Path(tempfile.mkdtemp(prefix="retailstream-postgres-cli-", dir="/tmp"))
    root.chmod(0o755)
    env = {
        "RETAILSTREAM_POSTGRES__LOCAL_SERVER__PORT": str(free_port()),
        "RETAILSTREAM_POSTGRES__LOCAL_SERVER__DATA_DIR": str(root / "postgres"),
    }
    try:
        yield env
    finally:
        # Whatever a failed test left running (in this process: the command takes seconds).
        local_postgres(load_settings("test", home=PROJECT_HOME, environ=env)).stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def started(cli_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = run_cli("postgres", "start", env=cli_env, timeout=180)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def pg_settings(cli_env: dict[str, str], started: subprocess.CompletedProcess[str]) -> Settings:
    return load_settings("test", home=PROJECT_HOME, environ=cli_env)


@pytest.fixture(scope="module")
def writers_table(pg_settings: Settings) -> str:
    """A table the writer created after `start` made the grants (default privileges)."""
    with psycopg.connect(writer_dsn(pg_settings), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {TABLE} (sku text PRIMARY KEY, count int NOT NULL)")
        conn.execute(f"INSERT INTO {TABLE} VALUES ('SKU-000001', 3), ('SKU-000002', 5)")
    return TABLE


def _superuser(settings: Settings) -> psycopg.Connection:
    return psycopg.connect(local_postgres(settings).conninfo(SUPERUSER), dbname="postgres")


def _role_state(settings: Settings) -> list[tuple]:
    """Roles with their password hashes, databases with their grants, default privileges."""
    with _superuser(settings) as conn:
        return [
            *conn.execute(
                "SELECT rolname, rolpassword, setconfig FROM pg_authid"
                " LEFT JOIN pg_db_role_setting ON setrole = pg_authid.oid ORDER BY 1"
            ),
            *conn.execute("SELECT datname, datdba, datacl FROM pg_database ORDER BY 1"),
            *conn.execute("SELECT defaclrole, defaclacl::text FROM pg_default_acl ORDER BY 1"),
        ]


def test_start_says_where_it_listens_and_status_sees_it_accepting(
    started: subprocess.CompletedProcess[str], cli_env: dict[str, str], pg_settings: Settings
) -> None:
    port = cli_env["RETAILSTREAM_POSTGRES__LOCAL_SERVER__PORT"]
    assert started.stdout.startswith(
        f"PostgreSQL running on 127.0.0.1:{port}, database retailstream"
    )
    assert "Traceback" not in started.stderr
    status = run_cli("postgres", "status", env=cli_env)
    assert status.returncode == 0, status.stderr
    assert f"on 127.0.0.1:{port}, accepting connections" in status.stdout

    server = local_postgres(pg_settings)
    roles = server.roles_file.stat()
    assert stat.S_IMODE(roles.st_mode) == 0o600 and roles.st_uid == os.geteuid()
    if os.geteuid() == 0:  # PostgreSQL refuses root: the server runs as `postgres`
        assert server.cluster_dir.owner() == "postgres"


def test_a_second_start_changes_nothing(
    pg_settings: Settings, cli_env: dict[str, str], writers_table: str
) -> None:
    server = local_postgres(pg_settings)
    roles_before, state_before = server.roles_file.read_text(), _role_state(pg_settings)
    again = run_cli("postgres", "start", env=cli_env)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert server.roles_file.read_text() == roles_before
    assert _role_state(pg_settings) == state_before


def test_the_reader_reads_what_the_writer_created(
    pg_settings: Settings, writers_table: str
) -> None:
    with psycopg.connect(reader_dsn(pg_settings)) as conn:
        rows = conn.execute(f"SELECT sku, count FROM {writers_table} ORDER BY sku").fetchall()
    assert rows == [("SKU-000001", 3), ("SKU-000002", 5)]


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO {t} VALUES ('SKU-000003', 1)",
        "UPDATE {t} SET count = 0",
        "DELETE FROM {t}",
        "CREATE TABLE sneaky (x int)",
        "TRUNCATE {t}",
    ],
)
def test_the_reader_cannot_change_anything(
    pg_settings: Settings, writers_table: str, statement: str
) -> None:
    sql = statement.format(t=writers_table)
    with psycopg.connect(reader_dsn(pg_settings), autocommit=True) as conn:
        with pytest.raises(errors.ReadOnlySqlTransaction, match="read-only transaction"):
            conn.execute(sql)
        # Read-only is only its default; lifted, privileges still refuse.
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(sql)
    with psycopg.connect(writer_dsn(pg_settings)) as conn:
        count = conn.execute(f"SELECT count(*) FROM {writers_table}").fetchone()
    assert count == (2,)


def test_the_writer_creates_and_writes(pg_settings: Settings, writers_table: str) -> None:
    with psycopg.connect(writer_dsn(pg_settings)) as conn:
        conn.execute("CREATE TABLE scratch (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO scratch VALUES (1, 'a'), (2, 'b')")
        conn.execute("UPDATE scratch SET note = 'c' WHERE id = 2")
        conn.execute("DELETE FROM scratch WHERE id = 1")
        assert conn.execute("SELECT id, note FROM scratch").fetchall() == [(2, "c")]
        conn.execute("TRUNCATE scratch")
        conn.execute("DROP TABLE scratch")


@pytest.mark.parametrize("role", [READER_ROLE, SUPERUSER])
def test_a_wrong_password_is_refused(pg_settings: Settings, role: str) -> None:
    server = local_postgres(pg_settings)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=server.settings.host,
            port=server.settings.port,
            dbname="retailstream",
            user=role,
            password=server.roles().password(role) + "x",
            connect_timeout=10,
        )


def test_stop_frees_the_port_and_status_says_stopped(
    started: subprocess.CompletedProcess[str], cli_env: dict[str, str]
) -> None:
    """Last in the module: the server does not come back."""
    port = int(cli_env["RETAILSTREAM_POSTGRES__LOCAL_SERVER__PORT"])
    stop = run_cli("postgres", "stop", env=cli_env)
    assert (stop.returncode, stop.stdout.strip()) == (0, "PostgreSQL stopped"), stop.stderr
    assert not port_in_use("127.0.0.1", port)
    status = run_cli("postgres", "status", env=cli_env)
    assert status.returncode == 3
    assert status.stdout.strip() == f"PostgreSQL stopped (would listen on 127.0.0.1:{port})"
    assert not local_postgres(load_settings("test", home=PROJECT_HOME, environ=cli_env)).stop()
