"""What needs no running PostgreSQL: which connection strings are used, and the
one-line errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from retailstream.config import Settings, load_settings
from retailstream.errors import UserError
from retailstream.kafka.broker import free_port
from retailstream.postgres_server import (
    READER_ROLE,
    SUPERUSER,
    WRITER_ROLE,
    local_postgres,
    read_roles,
    reader_dsn,
    writer_dsn,
)
from support import PROJECT_HOME


def _settings(tmp_path: Path, *overrides: str) -> Settings:
    return load_settings(
        "test",
        [f"postgres.local_server.data_dir={tmp_path / 'postgres'}", *overrides],
        home=PROJECT_HOME,
        environ={},
    )


def test_configured_connection_strings_win_over_the_local_server(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        "postgres.writer_dsn=host=db.example user=w",
        "postgres.reader_dsn=host=db.example user=r",
    )
    assert writer_dsn(settings) == "host=db.example user=w"
    assert reader_dsn(settings) == "host=db.example user=r"


def test_the_local_server_connection_strings_carry_the_generated_passwords(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, "postgres.local_server.port=6543")
    roles_file = tmp_path / "postgres" / "roles.json"
    roles_file.parent.mkdir()
    roles_file.write_text(
        f'{{"{SUPERUSER}": "s3cret", "{WRITER_ROLE}": "w r\'ite", "{READER_ROLE}": "re@d"}}'
    )
    assert read_roles(roles_file) is not None
    assert writer_dsn(settings) == (
        "host=127.0.0.1 port=6543 dbname=retailstream user=retailstream_writer password='w r\\'ite'"
    )
    assert "user=retailstream_reader password=re@d" in reader_dsn(settings)


def test_missing_credentials_say_to_start_the_server(tmp_path: Path) -> None:
    roles_file = tmp_path / "postgres" / "roles.json"
    with pytest.raises(UserError) as raised:
        writer_dsn(_settings(tmp_path))
    assert str(raised.value) == (
        f"no PostgreSQL credentials in {roles_file}: run `retailstream postgres start`"
    )


def test_no_local_server_and_no_connection_string_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="RETAILSTREAM_POSTGRES__READER_DSN"):
        reader_dsn(_settings(tmp_path, "postgres.local_server.enabled=false"))


def test_a_server_never_started_is_stopped(tmp_path: Path) -> None:
    port = free_port()
    server = local_postgres(_settings(tmp_path, f"postgres.local_server.port={port}"))
    assert not server.stop()
    status = server.status()
    assert not status.running and not status.accepting
    assert status.describe() == f"stopped (would listen on 127.0.0.1:{port})"
