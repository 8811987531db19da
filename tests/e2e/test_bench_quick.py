"""`retailstream bench --quick` runs every benchmark at tiny sizes (each its own broker and
Spark) and each leaves figures and a chart behind, without touching BENCHMARKS.md.

Only that they run and produce figures is checked: quick sizes measure start-up costs,
and tests never judge speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retailstream import benchmarks
from support import PROJECT_HOME

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(1800)
def test_every_benchmark_runs_in_quick_mode_and_saves_figures() -> None:
    markdown = (PROJECT_HOME / "BENCHMARKS.md").read_text()
    started = time.time()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "retailstream"), "bench", "--quick"],
        cwd=PROJECT_HOME,
        capture_output=True,
        text=True,
        check=False,
    )
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-60:])
    assert done.returncode == 0, tail

    for name in benchmarks.available(PROJECT_HOME):
        result = benchmarks.result_path(PROJECT_HOME, name, quick=True)
        assert benchmarks.figures_since(result, started) > 0, f"{name}: no figures\n{tail}"
        payload = json.loads(result.read_text())
        assert payload["mode"] == "quick" and payload["machine"]["cores"], name
        chart = result.with_suffix(".png")
        assert chart.stat().st_mtime >= started and chart.read_bytes()[:8] == PNG_MAGIC, name
        assert f"{name:12} ok" in done.stdout, done.stdout[-2000:]
    assert (PROJECT_HOME / "BENCHMARKS.md").read_text() == markdown
