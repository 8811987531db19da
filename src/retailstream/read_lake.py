"""The lake's tables in pandas without Spark or a JVM, for analysts (delta-rs).

    from retailstream.read_lake import read, tables
    tables("data/lake")                          # {"gold.item_ratings": Path(...), ...}
    ratings = read("data/lake", "gold.item_ratings")
    last_week = read("data/lake", "gold.sales_by_region", version=12)  # time travel

Reads the same Delta tables the streams write, at their latest commit (or a
given version), through the `deltalake` package: no JVM, no Spark session, a
fraction of a second for a gold view. Reading while a stream writes is safe
(a reader sees whole commits only). Importing this module never imports pyspark.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from retailstream.errors import UserError
from retailstream.io.lake_names import lake_tables


def tables(lake_root: str | Path) -> dict[str, Path]:
    """{readable name: path} of every Delta table under `lake_root`."""
    return lake_tables(Path(lake_root))


def read(
    lake_root: str | Path,
    name: str,
    version: int | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Table `name` (`gold.item_ratings`, `silver.orders`, ...) as a pandas DataFrame."""
    from deltalake import DeltaTable
    from pyarrow.fs import LocalFileSystem, SubTreeFileSystem

    found = tables(lake_root)
    if name not in found:
        known = ", ".join(found) or "none yet"
        raise UserError(f"no table {name} under {lake_root} (tables: {known})")
    path = found[name].resolve()
    table = DeltaTable(str(path), version=version)
    # pyarrow's own local filesystem, not delta-rs's default Rust-backed one: with the
    # latter, pyarrow's scan threads call back into Rust, and about one interpreter in 20
    # then aborts at exit ("terminate called without an active exception", delta-rs#2184).
    files = SubTreeFileSystem(str(path), LocalFileSystem())
    return table.to_pandas(columns=list(columns) if columns else None, filesystem=files)
