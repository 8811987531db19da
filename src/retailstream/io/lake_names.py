"""The readable names of the lake's Delta tables (`bronze.events`, `silver.orders`,
`gold.item_ratings`), found by looking at the lake's folders. Pure Python, no Spark:
both the SQL catalog and the JVM-free reader use it."""

from __future__ import annotations

from pathlib import Path

# Tables at the top of the lake, by folder name.
TOP_LEVEL = {
    "bronze_events": "bronze.events",
    "quarantine": "quality.quarantine",
    "quality_metrics": "quality.metrics",
}
# Folders whose sub-folders are tables of that layer.
LAYERS = ("silver", "gold", "reference")


def has_commits(path: Path) -> bool:
    """True once the Delta table at `path` has its first commit (a reader can see a schema).

    A writer creates `_delta_log/` before it commits, so the folder alone is not enough
    for a reader that races the first write.
    """
    log = path / "_delta_log"
    return log.is_dir() and any(log.glob("*.json"))


def lake_tables(root: Path) -> dict[str, Path]:
    """{readable name: Delta table path} of every table under the lake `root`, by name."""
    found = {name: root / folder for folder, name in TOP_LEVEL.items()}
    for layer in LAYERS:
        folder = root / layer
        if folder.is_dir():
            found.update({f"{layer}.{p.name}": p for p in folder.iterdir() if p.is_dir()})
    return {name: path for name, path in sorted(found.items()) if has_commits(path)}
