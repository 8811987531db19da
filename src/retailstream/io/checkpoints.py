"""Reading what a streaming query's checkpoint says about its Kafka source.

Spark writes `offsets/<batch>` when it plans a batch and `commits/<batch>`
when the batch's output is durable; `sources/<n>/0` holds the offsets the
query started from. The offsets the next batch starts at are therefore the
end offsets of the last committed batch (or the initial ones before any
commit). These files are Spark's documented-by-use format, version "v1".
"""

from __future__ import annotations

import json
from pathlib import Path

KafkaOffsets = dict[str, dict[int, int]]


def _parse_offsets(text: str) -> KafkaOffsets:
    data = json.loads(text)
    return {topic: {int(p): int(o) for p, o in parts.items()} for topic, parts in data.items()}


def _batch_ids(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def next_kafka_offsets(checkpoint: Path, source_index: int = 0) -> KafkaOffsets | None:
    """Per topic and partition, the first offset the query still has to read.

    None when the query has no checkpoint yet (it will start from its
    `startingOffsets`).
    """
    committed = _batch_ids(checkpoint / "commits")
    if committed:
        lines = (checkpoint / "offsets" / str(committed[-1])).read_text().splitlines()
        # line 0: version, line 1: batch metadata, then one line per source
        return _parse_offsets(lines[2 + source_index])
    initial = checkpoint / "sources" / str(source_index) / "0"
    if not initial.exists():
        return None
    text = initial.read_text(errors="replace").lstrip("\x00")
    return _parse_offsets(text.split("\n", 1)[1])


def committed_batches(checkpoint: Path) -> list[int]:
    """The ids of the query's committed micro-batches, oldest first."""
    return _batch_ids(checkpoint / "commits")


def delta_source_offsets_of_batch(checkpoint: Path, batch: int) -> dict[str, tuple[int, int]]:
    """{Delta table id: (version, file index)} that batch `batch` read its Delta sources up to.

    A Delta source offset names a version and a file index in it: the batch
    read every version before it and, in that version, the files up to the
    index (-1, the usual case, is "none of its files yet"); the next batch
    starts there.
    """
    lines = (checkpoint / "offsets" / str(batch)).read_text().splitlines()
    found = {}
    for line in lines[2:]:  # after the version and the batch metadata: one line per source
        offset = json.loads(line) if line.startswith("{") else None
        if isinstance(offset, dict) and "reservoirId" in offset:
            found[str(offset["reservoirId"])] = (
                int(offset["reservoirVersion"]),
                int(offset.get("index", -1)),
            )
    return found


def delta_source_versions_of_batch(checkpoint: Path, batch: int) -> dict[str, int]:
    """{Delta table id: version} that batch `batch` read its Delta sources up to
    (every version before it; see `delta_source_offsets_of_batch`)."""
    return {
        table: version
        for table, (version, _) in delta_source_offsets_of_batch(checkpoint, batch).items()
    }


def delta_source_versions(checkpoint: Path) -> dict[str, int]:
    """{Delta table id: the oldest version the query still has to read} of its Delta
    sources, from its last committed batch (empty before its first commit)."""
    committed = committed_batches(checkpoint)
    return delta_source_versions_of_batch(checkpoint, committed[-1]) if committed else {}
