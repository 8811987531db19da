from __future__ import annotations

import argparse
import importlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from retailstream import __version__
from retailstream.cli import build_parser, main
from retailstream.config import load_settings
from retailstream.errors import UserError
from retailstream.io.delta import StreamTrigger
from retailstream.jobs import (
    all_jobs,
    asof_views,
    enrich_events,
    explain_views,
    init_world,
    maintain_lake,
    replay_events,
    retrain,
    sample_lake,
)
from retailstream.jobs.spec import Job, StreamRun
from support import run_cli


def _all_command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += _all_command_paths(sub, (*prefix, name))
    return paths


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    paths = _all_command_paths(build_parser())
    assert ("kafka", "start") in paths and ("topics", "describe") in paths
    assert {("postgres", "start"), ("postgres", "stop"), ("postgres", "status")} <= set(paths)
    for path in paths:
        with pytest.raises(SystemExit) as done:
            main([*path, "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: retailstream"), path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"retailstream {__version__}"


def test_unknown_config_key_is_one_line_without_traceback() -> None:
    done = run_cli("--set", "kafka.nope=1", "config", "show")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "retailstream: error: unknown config key 'kafka.nope' (set in --set kafka.nope)"
    ]


def test_verbose_shows_the_stack_trace() -> None:
    done = run_cli("config", "show", "--set", "kafka.nope=1", "--verbose")
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.strip().endswith("(set in --set kafka.nope)")


def test_unreachable_broker_names_the_fix() -> None:
    from retailstream.kafka.broker import free_port

    done = run_cli("topics", "list", "--set", f"kafka.bootstrap_servers=127.0.0.1:{free_port()}")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "no Kafka broker answers" in done.stderr and "retailstream kafka start" in done.stderr


def test_postgres_start_refuses_when_a_server_of_your_own_is_configured() -> None:
    done = run_cli("postgres", "start", "--set", "postgres.writer_dsn=host=db.example")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "retailstream: error: postgres.writer_dsn is set: the local PostgreSQL server is not "
        "used; manage your server with its own tools"
    ]


def test_config_show_prints_merged_settings() -> None:
    done = run_cli("--env", "test", "config", "show")
    assert done.returncode == 0, done.stderr
    assert "master: local[2]" in done.stdout
    assert "shop.orders" in done.stdout


def test_config_check_validates_every_env() -> None:
    done = run_cli("config", "check")
    assert done.returncode == 0, done.stderr
    assert "conf/cluster: ok" in done.stdout and "conf/test: ok" in done.stdout


def test_run_train_and_submit_are_built_from_the_job_specs(
    project_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = set(_all_command_paths(build_parser()))
    for job in all_jobs.STREAMING:
        assert job.kind == "stream" and ("run", job.name) in paths
    for job in all_jobs.TRAINING:
        assert job.kind == "train" and ("train", job.name) in paths
    # Every job has its spark-submit script, which runs that job's own entry.
    for name, job in all_jobs.by_submit_name().items():
        script = project_home / "jobs" / f"{job.script}.py"
        assert f"from retailstream.jobs.{job.script} import main" in script.read_text(), name
        assert importlib.import_module(f"retailstream.jobs.{job.script}").main == job.main
    assert {p.stem for p in (project_home / "jobs").glob("*.py")} - {"retrain"} == {
        job.script for job in all_jobs.by_submit_name().values()
    }
    # A job's own flags and help reach `run NAME --help`.
    with pytest.raises(SystemExit):
        main(["run", "ingest", "--help"])
    out = capsys.readouterr().out
    assert "--available-now" in out and "ingest what Kafka holds" in out


def test_a_job_is_configured_from_its_flags_without_a_session() -> None:
    args = build_parser().parse_args(["--env", "test", "run", "enrich", "--available-now"])
    settings = load_settings("test", [])
    cfg = enrich_events.JOB.configure(settings, args)
    assert cfg == StreamRun(settings, available_now=True)
    assert cfg.trigger(settings.enrich.trigger_interval) == StreamTrigger(True, "5 seconds")


def test_commands_are_built_from_their_job_specs() -> None:
    parser = build_parser()
    paths = set(_all_command_paths(parser))
    for job in all_jobs.COMMANDS:
        assert job.kind == "command"
        path = ("world", job.name) if job.name == "init" else (job.name,)
        assert path in paths, path
        assert importlib.import_module(f"retailstream.jobs.{job.script}").main == job.main
    # Commands are not spark-submitted.
    assert not {job.script for job in all_jobs.COMMANDS} & {
        job.script for job in all_jobs.by_submit_name().values()
    }


def test_a_command_is_configured_from_its_flags_without_a_session() -> None:
    settings = load_settings("test", [])

    def configured(job: Job[Any], *argv: str) -> Any:
        return job.configure(settings, build_parser().parse_args(["--env", "test", *argv]))

    at = datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert configured(asof_views.JOB, "asof", "2026-03-02T12:00", "item_ratings") == (
        asof_views.AsofRun(settings, "item_ratings", at, limit=20)
    )
    assert configured(explain_views.JOB, "explain", "store", "ST-1", "--sku", "SKU-2") == (
        explain_views.ExplainRun(settings, "store", "ST-1", sku="SKU-2", limit=50)
    )
    maintain = configured(maintain_lake.JOB, "maintain", "--dry-run", "--table", "gold.a",
                          "--table", "silver.b")  # fmt: skip
    assert maintain == maintain_lake.MaintainRun(settings, None, True, ("gold.a", "silver.b"))
    assert maintain.retention == settings.lake.time_travel_hours
    assert maintain_lake.MaintainRun(settings, retention_hours=0).retention == 0
    assert configured(replay_events.JOB, "replay", "--to-table", "out/", "--topic", "shop.orders",
                      "--from", "2026-03-02T12:00") == replay_events.ReplayRun(
        settings, to_table="out/", topics=("shop.orders",), since=at
    )  # fmt: skip
    assert configured(init_world.JOB, "world", "init", "--scale", "demo") == (
        init_world.WorldInit(settings, seed=settings.world.seed, scale="demo")
    )
    assert configured(init_world.JOB, "world", "init", "--seed", "0") == (
        init_world.WorldInit(settings, seed=0, scale=settings.world.scale)
    )
    assert configured(sample_lake.JOB, "sample-lake", "--days", "2") == (
        sample_lake.SampleRun(settings, sample_lake.SampleSpec(days=2))
    )
    assert configured(retrain.JOB, "retrain", "--every", "15m") == (
        retrain.RetrainRun(settings, 900.0, ("disruption", "recommender"), times=None)
    )
    assert configured(retrain.JOB, "retrain", "--every", "1s", "--models", "recommender",
                      "--times", "2") == retrain.RetrainRun(settings, 1.0, ("recommender",), 2)  # fmt: skip
    with pytest.raises(UserError, match="not an interval"):
        configured(retrain.JOB, "retrain", "--every", "soon")
