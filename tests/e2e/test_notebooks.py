"""Every notebook in notebooks/ runs from top to bottom against a sample lake, in a real
Jupyter kernel, so none of them rots."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from retailstream.config import Settings
from support import PROJECT_HOME, copied_lake

NOTEBOOKS = sorted((PROJECT_HOME / "notebooks").glob("*.ipynb"))


def _execute(path: Path, settings: Settings, scratch: Path) -> str | None:
    """Run the notebook in its own kernel; None when every cell ran, else the error."""
    book = nbformat.read(path, as_version=4)
    env = {
        **os.environ,
        "RETAILSTREAM_ENV": "test",
        "RETAILSTREAM_LAKE__ROOT": str(settings.lake.root),
        # Each notebook trains into an MLflow store of its own (SQLite, one writer).
        "RETAILSTREAM_ML__STORE_DIR": str(scratch / f"models-{path.stem}"),
        "RETAILSTREAM_SPARK__DRIVER_LOG": str(scratch / f"driver-{path.stem}.log"),
        "MPLBACKEND": "Agg",
    }
    client = NotebookClient(
        book, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )  # fmt: skip
    try:
        client.execute(env=env)
    except Exception as error:  # the cell's traceback, as the notebook would show it
        return f"{path.name}: {error}"
    return None


# Building the run's sample lake (the first test to ask for it pays, ~150 s) and five
# kernels with a Spark each (~220 s) take longer than the suite's default 600 s allows
# on a busy 2-core machine.
@pytest.mark.timeout(1500)
def test_every_notebook_runs_against_a_sample_lake(sample_lake: Settings, tmp_path: Path) -> None:
    assert len(NOTEBOOKS) >= 5, NOTEBOOKS
    # The notebooks train and publish models: on a copy, the run's sample stays as built.
    lake = copied_lake(sample_lake, tmp_path)
    # Two kernels at a time: each notebook is mostly waiting on its own Spark JVM.
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [f for f in pool.map(lambda p: _execute(p, lake, tmp_path), NOTEBOOKS) if f]
    assert not failures, "\n\n".join(failures)
