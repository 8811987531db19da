"""Pinned JVM artifacts, resolved once from Maven Central, used offline after that.

Two classpaths are kept apart because they want different `kafka-clients`
versions: the Kafka broker (`kafka_2.13` plus a log4j2 backend, which Kafka's
POM leaves out) and the jars that a SparkSession adds to PySpark's own (the
Kafka connector and Delta Lake).

Resolution uses Apache Ivy, which PySpark already ships, so a user's machine
needs nothing beyond Java and the Python packages. Ivy's download cache lives
in the user's cache directory so that a second clone resolves in seconds; the
retrieved jars are listed in a manifest under `<home>/.cache/jars/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import xml.sax.saxutils as saxutils
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from retailstream.errors import UserError
from retailstream.javacheck import java_executable

KAFKA_VERSION = "4.1.1"
SPARK_VERSION = "4.2.0"
DELTA_VERSION = "4.4.0"
LOG4J_VERSION = "2.25.3"


@dataclass(frozen=True)
class Coordinate:
    group: str
    artifact: str
    version: str

    def __str__(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"


# Each named classpath and the artifacts it is resolved from (transitively).
CLASSPATHS: dict[str, tuple[Coordinate, ...]] = {
    "kafka-broker": (
        Coordinate("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
        Coordinate("org.apache.logging.log4j", "log4j-slf4j2-impl", LOG4J_VERSION),
        Coordinate("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
    ),
    "spark": (
        Coordinate("org.apache.spark", "spark-sql-kafka-0-10_2.13", SPARK_VERSION),
        Coordinate("io.delta", "delta-spark_4.2_2.13", DELTA_VERSION),
    ),
}

# Classes whose presence proves a classpath is usable (checked by tests and doctor).
MARKER_CLASSES = {
    "kafka-broker": "kafka.Kafka",
    "spark": "io.delta.sql.DeltaSparkSessionExtension",
}

MANIFEST_NAME = "manifest.json"
_VERSION_SUFFIX = re.compile(r"-\d[^-]*(-[A-Za-z0-9]+)?\.jar$")


def jars_dir(home: Path) -> Path:
    """Where the retrieved jars and their manifest live for a project home."""
    return home / ".cache" / "jars"


def ivy_cache_dir() -> Path:
    """Ivy's download cache, shared by every clone of the project for this user."""
    override = os.environ.get("RETAILSTREAM_IVY_CACHE")
    if override:
        return Path(override)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "retailstream" / "ivy"


def pyspark_jars_dir() -> Path:
    """The jars directory of the installed PySpark (its own classpath)."""
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def _artifact_name(jar: Path) -> str:
    return _VERSION_SUFFIX.sub("", jar.name)


def _fingerprint() -> str:
    text = json.dumps({k: [str(c) for c in v] for k, v in CLASSPATHS.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _ivy_module(name: str, coords: Sequence[Coordinate]) -> str:
    deps = "\n".join(
        f'    <dependency org="{saxutils.escape(c.group)}" name="{saxutils.escape(c.artifact)}"'
        f' rev="{saxutils.escape(c.version)}" conf="default->default"/>'
        for c in coords
    )
    return (
        '<ivy-module version="2.0">\n'
        f'  <info organisation="retailstream" module="{name}"/>\n'
        f"  <dependencies>\n{deps}\n  </dependencies>\n"
        "</ivy-module>\n"
    )


def _ivy_jar() -> Path:
    found = sorted(pyspark_jars_dir().glob("ivy-*.jar"))
    if not found:
        raise UserError("PySpark's Ivy jar is missing: reinstall the package with `make setup`")
    return found[-1]


def _retrieve(name: str, coords: Sequence[Coordinate], target: Path, log: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    module = target / "ivy.xml"
    module.write_text(_ivy_module(name, coords))
    command = [
        str(java_executable()),
        "-jar",
        str(_ivy_jar()),
        "-ivy",
        str(module),
        "-cache",
        str(ivy_cache_dir()),
        "-retrieve",
        str(target / "[artifact]-[revision](-[classifier]).[ext]"),
        "-confs",
        "default",
        "-types",
        "jar",
        "bundle",
        "-sync",
    ]
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        unresolved = [
            line.strip()
            for line in log.read_text().splitlines()
            if "not found" in line or "UNRESOLVED" in line or "FAILED" in line
        ]
        detail = unresolved[0] if unresolved else f"exit code {done.returncode}"
        raise UserError(
            f"could not resolve the {name} jars from Maven Central ({detail}); "
            f"check the network and see {log}"
        )
    return sorted(target.glob("*.jar"))


def resolve(home: Path, force: bool = False) -> dict[str, list[Path]]:
    """Resolve every classpath into `<home>/.cache/jars/` unless already done.

    Returns the classpaths by name. Quick when the manifest is current, so
    `make setup` can call it every time.
    """
    root = jars_dir(home)
    manifest_path = root / MANIFEST_NAME
    if not force:
        current = _read_manifest(manifest_path)
        if current is not None:
            return current
    root.mkdir(parents=True, exist_ok=True)
    provided = {_artifact_name(j) for j in pyspark_jars_dir().glob("*.jar")}
    classpaths: dict[str, list[Path]] = {}
    for name, coords in CLASSPATHS.items():
        jars = _retrieve(name, coords, root / name, root / f"{name}.ivy.log")
        if name == "spark":
            # PySpark already carries Hadoop, Parquet, Jackson, Scala...: adding a
            # second, older copy of any of them would shadow Spark's own.
            jars = [j for j in jars if _artifact_name(j) not in provided]
        classpaths[name] = jars
    manifest = {
        "fingerprint": _fingerprint(),
        "classpaths": {k: [str(p.relative_to(root)) for p in v] for k, v in classpaths.items()},
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return classpaths


def _read_manifest(path: Path) -> dict[str, list[Path]] | None:
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if manifest.get("fingerprint") != _fingerprint():
        return None
    root = path.parent
    classpaths = {k: [root / p for p in v] for k, v in manifest["classpaths"].items()}
    if any(not p.exists() for paths in classpaths.values() for p in paths):
        return None
    return classpaths


def classpath(home: Path, name: str) -> list[Path]:
    """The resolved jars of one classpath; a clear error if setup has not run."""
    if name not in CLASSPATHS:
        raise UserError(f"unknown classpath {name!r} (known: {', '.join(CLASSPATHS)})")
    current = _read_manifest(jars_dir(home) / MANIFEST_NAME)
    if current is None:
        raise UserError(
            f"the JVM jars are not resolved under {jars_dir(home)}: run `make setup` "
            "(or `retailstream jars resolve`)"
        )
    return current[name]
