from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from retailstream.config import (
    Settings,
    available_envs,
    load_settings,
    shipped_config_files,
    split_key,
)
from retailstream.errors import ConfigError


def _home(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "conf" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "conf" / "base").mkdir(parents=True, exist_ok=True)
    (tmp_path / "conf" / "dev").mkdir(parents=True, exist_ok=True)
    return tmp_path


def test_every_shipped_env_loads(project_home: Path) -> None:
    envs = available_envs(project_home)
    assert {"dev", "test", "cluster"} <= set(envs)
    for env in envs:
        settings = load_settings(env, home=project_home, environ={})
        assert settings.env == env
        assert settings.kafka.topics, "the event topics are declared in conf/base"


def test_shipped_files_are_all_read_by_some_env(project_home: Path) -> None:
    files = shipped_config_files(project_home)
    assert any(p.name == "kafka.yml" for p in files)
    for path in files:
        assert path.parent.name in {"base", *available_envs(project_home)}


def test_layers_apply_in_order(tmp_path: Path) -> None:
    home = _home(
        tmp_path,
        {
            "base/spark.yml": "spark: {master: 'local[4]', app_name: base, shuffle_partitions: 8}\n",
            "dev/spark.yml": "spark: {app_name: dev, shuffle_partitions: 6}\n",
            "local/spark.yml": "spark: {shuffle_partitions: 5, log_level: warn}\n",
        },
    )
    settings = load_settings(
        "dev",
        ["spark.log_level=info"],
        home=home,
        environ={"RETAILSTREAM_SPARK__SHUFFLE_PARTITIONS": "3"},
    )
    assert settings.spark.master == "local[4]"  # base only
    assert settings.spark.app_name == "dev"  # env beats base
    assert settings.spark.shuffle_partitions == 3  # environment beats local
    assert settings.spark.log_level == "INFO"  # --set beats everything


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    home = _home(tmp_path, {"dev/kafka.yml": "kafka:\n  local_broker:\n    prot: 9999\n"})
    with pytest.raises(ConfigError) as caught:
        load_settings("dev", home=home, environ={})
    message = str(caught.value)
    assert "kafka.local_broker.prot" in message
    assert "conf/dev/kafka.yml" in message


def test_wrong_type_names_the_key_and_the_variable(tmp_path: Path) -> None:
    home = _home(tmp_path, {})
    with pytest.raises(ConfigError) as caught:
        load_settings("dev", home=home, environ={"RETAILSTREAM_KAFKA__LOCAL_BROKER__PORT": "nine"})
    message = str(caught.value)
    assert "kafka.local_broker.port" in message
    assert "RETAILSTREAM_KAFKA__LOCAL_BROKER__PORT" in message
    assert "'nine'" in message


def test_set_reaches_a_topic_whose_name_has_dots(tmp_path: Path) -> None:
    home = _home(
        tmp_path, {"base/kafka.yml": "kafka:\n  topics:\n    shop.orders: {partitions: 3}\n"}
    )
    settings = load_settings(
        "dev", ['kafka.topics."shop.orders".partitions=12'], home=home, environ={}
    )
    assert settings.kafka.topics["shop.orders"].partitions == 12


@pytest.mark.parametrize(
    "key", ["ingest.trigger_interval", "refine.watermark_delay", "views.sales_window"]
)
def test_a_mistyped_interval_fails_at_load_time_with_the_key(tmp_path: Path, key: str) -> None:
    home = _home(tmp_path, {})
    with pytest.raises(ConfigError) as caught:
        load_settings("dev", [f"{key}=5 secnds"], home=home, environ={})
    message = str(caught.value)
    assert key in message and "'5 secnds' is not an interval" in message
    assert "\n" not in message


def test_a_real_time_checkpoint_under_half_a_second_is_refused_at_load_time(
    tmp_path: Path,
) -> None:
    home = _home(tmp_path, {})
    with pytest.raises(ConfigError) as caught:
        load_settings(
            "dev", ["serving.checkpoint_interval=100 milliseconds"], home=home, environ={}
        )
    message = str(caught.value)
    assert "serving.checkpoint_interval" in message and "500 milliseconds" in message
    assert "\n" not in message
    settings = load_settings(
        "dev", ["serving.checkpoint_interval=500 milliseconds"], home=home, environ={}
    )
    assert settings.serving.checkpoint_interval == "500 milliseconds"


def test_intervals_spark_takes_are_accepted_as_written(tmp_path: Path) -> None:
    home = _home(tmp_path, {})
    for text in ("0 seconds", "1 second", "500 milliseconds", "15 minutes", "2 hours", "1 day"):
        settings = load_settings("dev", [f"serving.trigger_interval={text}"], home=home, environ={})
        assert settings.serving.trigger_interval == text


@pytest.mark.parametrize("key", ["enrich.trigger_interval", "score.trigger_interval"])
def test_a_mistyped_interval_in_a_file_names_the_key_and_the_file(tmp_path: Path, key: str) -> None:
    section, name = key.split(".")
    home = _home(tmp_path, {f"dev/{section}.yml": f"{section}:\n  {name}: 30 secs\n"})
    with pytest.raises(ConfigError) as caught:
        load_settings("dev", home=home, environ={})
    message = str(caught.value)
    assert key in message and f"conf/dev/{section}.yml" in message
    assert "'30 secs' is not an interval" in message and "\n" not in message


def test_each_stage_owns_its_trigger_and_thresholds(tmp_path: Path) -> None:
    home = _home(tmp_path, {})
    settings = load_settings(
        "dev",
        ["enrich.trigger_interval=7 seconds", "score.trigger_interval=11 seconds",
         "score.low_stock_threshold=5"],
        home=home, environ={},
    )  # fmt: skip
    assert settings.enrich.trigger_interval == "7 seconds"
    assert settings.refine.trigger_interval == "5 seconds"  # refine's is not enrich's
    assert settings.score.trigger_interval == "11 seconds"
    assert settings.views.trigger_interval == "30 seconds"  # nor the views' scoring's
    assert (settings.score.low_stock_threshold, settings.views.low_stock_threshold) == (5, 2)


def test_a_memory_size_is_checked_at_load_time(tmp_path: Path) -> None:
    home = _home(tmp_path, {"dev/spark.yml": "spark:\n  driver_memory: 2 gigs\n"})
    with pytest.raises(ConfigError) as caught:
        load_settings("dev", home=home, environ={})
    message = str(caught.value)
    assert "spark.driver_memory" in message and "conf/dev/spark.yml" in message
    assert "'2 gigs' is not a memory size" in message and "\n" not in message
    for text in ("512m", "2g", "4G", "1048576"):
        settings = load_settings("dev", [f"spark.driver_memory={text}"], home=home, environ={})
        assert settings.spark.driver_memory == text


def test_the_lake_may_be_a_file_uri_with_escapes(tmp_path: Path) -> None:
    home = _home(tmp_path, {})
    lake = tmp_path / "my lake"
    settings = load_settings("dev", [f"lake.root={lake.as_uri()}"], home=home, environ={})
    assert "%20" in lake.as_uri() and settings.lake.root == lake
    assert settings.views.store_path == lake / "_serving" / "views.db"
    with pytest.raises(ConfigError) as caught:
        load_settings("dev", ["lake.root=s3a://bucket/lake"], home=home, environ={})
    message = str(caught.value)
    assert "lake.root" in message and "only a local lake" in message and "\n" not in message


def test_split_key_handles_quotes_and_rejects_garbage() -> None:
    assert split_key('a."b.c".d') == ["a", "b.c", "d"]
    with pytest.raises(ConfigError):
        split_key('a."b"c')


def test_set_without_equals_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        load_settings("dev", ["spark.master"], home=_home(tmp_path, {}), environ={})


def test_unknown_env_lists_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown env 'prod'.*available: dev"):
        load_settings("prod", home=_home(tmp_path, {}), environ={})


def test_broken_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    home = _home(tmp_path, {"base/lake.yml": "lake:\n  root: [unclosed\n"})
    with pytest.raises(ConfigError, match=r"conf/base/lake.yml line \d+"):
        load_settings("dev", home=home, environ={})


def test_relative_paths_resolve_against_the_project_home(tmp_path: Path) -> None:
    settings = load_settings("dev", home=_home(tmp_path, {}), environ={})
    assert settings.lake.root == tmp_path.resolve() / "data" / "lake"
    assert settings.lake.checkpoint("q") == tmp_path.resolve() / "data/lake/_checkpoints/q"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings("dev", home=_home(tmp_path, {}), environ={})
    with pytest.raises(ValidationError):
        settings.spark.master = "local[1]"  # type: ignore[misc]
    assert isinstance(settings, Settings)


def test_bootstrap_defaults_to_the_local_broker(tmp_path: Path) -> None:
    settings = load_settings(
        "dev", ["kafka.local_broker.port=19092"], home=_home(tmp_path, {}), environ={}
    )
    assert settings.kafka.bootstrap == "127.0.0.1:19092"
    custom = load_settings(
        "dev", ["kafka.bootstrap_servers=k1:9092,k2:9092"], home=_home(tmp_path, {}), environ={}
    )
    assert custom.kafka.bootstrap == "k1:9092,k2:9092"
