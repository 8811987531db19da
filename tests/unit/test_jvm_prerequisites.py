from __future__ import annotations

from pathlib import Path

import pytest

from retailstream.errors import UserError
from retailstream.jars import CLASSPATHS, MARKER_CLASSES, classpath
from retailstream.javacheck import java_executable


def test_missing_jars_say_to_run_setup(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="make setup"):
        classpath(tmp_path, "spark")


def test_bad_java_home_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nojdk"))
    with pytest.raises(UserError, match="JAVA_HOME=.*nojdk has no bin/java"):
        java_executable()


def test_no_java_anywhere_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UserError, match="Java 17\\+ was not found"):
        java_executable()


def test_resolved_classpaths_hold_their_marker_classes(project_home: Path) -> None:
    import zipfile

    for name in CLASSPATHS:
        entry = MARKER_CLASSES[name].replace(".", "/") + ".class"
        jars = classpath(project_home, name)
        assert any(entry in zipfile.ZipFile(j).namelist() for j in jars), name


def test_spark_classpath_does_not_shadow_pyspark_jars(project_home: Path) -> None:
    from retailstream.jars import _artifact_name, pyspark_jars_dir

    provided = {_artifact_name(j) for j in pyspark_jars_dir().glob("*.jar")}
    added = {_artifact_name(j) for j in classpath(project_home, "spark")}
    assert not provided & added
    assert {"kafka-clients", "spark-sql-kafka-0-10_2.13", "delta-spark_4.2_2.13"} <= added
