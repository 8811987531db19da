"""Notebooks are stored valid and without outputs (tests/e2e/test_notebooks.py runs them)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from support import PROJECT_HOME

NOTEBOOKS = sorted((PROJECT_HOME / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_stored_without_outputs(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: clear the outputs before committing (cell {cell.id})"
            )
