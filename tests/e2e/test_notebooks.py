"""Every notebook in notebooks/ runs from top to bottom against a sample lake, in a real
Jupyter kernel, so none of them rots."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from retailstream.config import Settings
from support import PROJECT_HOME, copied_lake

NOTEBOOKS = sorted((PROJECT_HOME / "notebooks").glob("*.ipynb"))
# Run before each notebook: drops every name the one before defined. Not `%reset -f`,
# which also drops `__main__.__spec__`, and pyspark's imports look that up.
FORGET = """
for _name in [n for n in dir() if not n.startswith("_") and n not in
              {"In", "Out", "get_ipython", "exit", "quit", "open"}]:
    del globals()[_name]
"""


def _run_all(settings: Settings, scratch: Path) -> list[str]:
    """Each notebook's cells in order in one kernel, the namespace cleared between
    notebooks (FORGET), so every notebook starts from nothing but the kernel's
    JVM: `open_lake()` finds the Spark session already running, where a kernel per
    notebook paid a JVM start each (about a minute apiece on 2 cores). Returns one
    failure per notebook that stopped, with the failing cell's traceback."""
    env = {
        **os.environ,
        "RETAILSTREAM_ENV": "test",
        "RETAILSTREAM_LAKE__ROOT": str(settings.lake.root),
        "RETAILSTREAM_ML__STORE_DIR": str(scratch / "models"),
        "RETAILSTREAM_SPARK__DRIVER_LOG": str(scratch / "driver.log"),
        "MPLBACKEND": "Agg",
    }
    books = {path: nbformat.read(path, as_version=4) for path in NOTEBOOKS}
    runner = nbformat.v4.new_notebook(cells=[])
    client = NotebookClient(
        runner, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(PROJECT_HOME / "notebooks")}},
    )  # fmt: skip
    failures = []
    with client.setup_kernel(env=env):
        for path, book in books.items():
            cells = [nbformat.v4.new_code_cell(FORGET), *book.cells]
            start = len(runner.cells)
            runner.cells.extend(cells)
            try:
                for index in range(start, len(runner.cells)):
                    client.execute_cell(runner.cells[index], index)
            except Exception as error:  # the cell's traceback, as the notebook would show it
                failures.append(f"{path.name}: {error}")
    return failures


# Building the run's sample lake (the first test to ask for it pays, ~170 s) and the
# five notebooks (a few minutes on 2 cores) take longer than the suite's default 600 s.
@pytest.mark.timeout(1500)
def test_every_notebook_runs_against_a_sample_lake(sample_lake: Settings, tmp_path: Path) -> None:
    assert len(NOTEBOOKS) >= 5, NOTEBOOKS
    # The notebooks train and publish models: on a copy, the run's sample stays as built.
    lake = copied_lake(sample_lake, tmp_path)
    failures = _run_all(lake, tmp_path)
    assert not failures, "\n\n".join(failures)
