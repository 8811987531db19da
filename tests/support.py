"""Helpers shared by tests of several tiers (importable: tests/ is on pythonpath)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from retailstream.config import LocalBrokerSettings
from retailstream.kafka.broker import free_port

PROJECT_HOME = Path(__file__).resolve().parents[1]


def broker_settings(data_dir: Path) -> LocalBrokerSettings:
    """A throwaway broker on free ports, its data under `data_dir`."""
    return LocalBrokerSettings(
        port=free_port(), controller_port=free_port(), data_dir=data_dir, heap="384m"
    )


def run_cli(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed `retailstream` command as a user would, from the project folder."""
    command = [str(Path(sys.executable).parent / "retailstream"), *args]
    return subprocess.run(
        command,
        cwd=PROJECT_HOME,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
