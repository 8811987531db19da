"""`retailstream bench peer --quick`: the one benchmark whose quick run checks an answer.

The peer benchmark aggregates the same orders with Spark and with plain Python
consumers and refuses to report figures unless every answer agrees group by group. Its
quick run is kept in CI for that check, and to show that a run leaves figures and a
chart behind without touching BENCHMARKS.md. The other benchmarks' quick runs only
measure start-up costs, so they stay out of CI (`make bench BENCH_ARGS=--quick` runs
them all). Tests never judge speed.
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
NAME = "peer"


@pytest.mark.timeout(600)
def test_the_peer_benchmark_runs_quick_with_agreeing_answers_and_saves_figures() -> None:
    markdown = (PROJECT_HOME / "BENCHMARKS.md").read_text()
    started = time.time()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "retailstream"), "bench", NAME, "--quick"],
        cwd=PROJECT_HOME,
        capture_output=True,
        text=True,
        check=False,
    )
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-60:])
    assert done.returncode == 0, tail
    assert f"{NAME:12} ok" in done.stdout, done.stdout[-2000:]

    result = benchmarks.result_path(PROJECT_HOME, NAME, quick=True)
    assert benchmarks.figures_since(result, started) > 0, f"no figures\n{tail}"
    payload = json.loads(result.read_text())
    assert payload["mode"] == "quick" and payload["machine"]["cores"]
    # Figures are only written once every peer's answer agreed with Spark's on every group.
    groups = payload["extra"]["groups"]
    assert len(groups) == 3 and min(groups.values()) > 0, groups
    assert "agrees with Spark's" in " ".join(payload["notes"])
    chart = result.with_suffix(".png")
    assert chart.stat().st_mtime >= started and chart.read_bytes()[:8] == PNG_MAGIC
    assert (PROJECT_HOME / "BENCHMARKS.md").read_text() == markdown
