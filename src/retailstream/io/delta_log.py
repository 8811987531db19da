"""Reading a Delta table's JSON log directly, without Spark: what each commit added.

For the readers that must not start a JVM or pay a Delta snapshot per call (the
health report, the audit of a view), and only for what the log's JSON files say
plainly: added files, their row counts and commit times.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

from retailstream.errors import UserError

LOG_DIR = "_delta_log"


def delta_versions(table: Path, first: int) -> list[tuple[int, int, float]]:
    """(version, rows added, commit time in epoch s) of each version of the Delta
    `table` from `first` on, read from its JSON log (only those files)."""
    log_dir = table / LOG_DIR
    found = []
    for path in log_dir.glob("*.json") if log_dir.is_dir() else ():
        version = int(path.stem)
        if version < first:
            continue
        rows, when = 0, path.stat().st_mtime
        for line in path.read_text().splitlines():
            action = json.loads(line)
            add = action.get("add")
            if add and add.get("dataChange", True) and add.get("stats"):
                rows += int(json.loads(add["stats"]).get("numRecords", 0))
            if "commitInfo" in action:
                when = action["commitInfo"].get("timestamp", when * 1000) / 1000
        found.append((version, rows, when))
    return sorted(found)


def added_files(table: Path, first: int, until: int) -> list[str]:
    """Data files the table's commits `first` .. `until - 1` added (from its Delta log)."""
    files = []
    for version in range(first, until):
        log = table / LOG_DIR / f"{version:020d}.json"
        if not log.exists():
            raise UserError(f"{log} is gone (log retention): the audit cannot go back that far")
        for line in log.read_text().splitlines():
            action = json.loads(line)
            if "add" in action and action["add"].get("dataChange", True):
                files.append(str(table / unquote(action["add"]["path"])))
    return files
