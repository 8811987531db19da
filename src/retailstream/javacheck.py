"""Finding the Java runtime that Spark and the Kafka broker need."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from retailstream.errors import UserError


def java_executable() -> Path:
    """`$JAVA_HOME/bin/java`, else `java` on PATH; a one-line error if neither exists."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.exists():
            return candidate
        raise UserError(f"JAVA_HOME={java_home} has no bin/java: point it at a JDK 17+")
    found = shutil.which("java")
    if not found:
        raise UserError(
            "Java 17+ was not found: install a JDK (e.g. `apt-get install openjdk-17-jdk-headless`)"
            " or set JAVA_HOME"
        )
    return Path(found)
