"""The simulated world's state between runs, so that each run resumes it.

`produce` (and the demo's producer) saves its generator when it stops cleanly
and the next run carries on from it: the same stock, the same shipments on the
road, the same id sequences. Without it every run would start the world again
from its initial stock while the views keep counting, and inventory would
drift below zero.

The state is a pickle of the generator (`<lake>/_world_state/generator.pkl`),
tagged with the world spec it belongs to: a world written with another seed
or scale does not resume it. While a run holds the state it is renamed to
`generator.pkl.running`; finding only that file means the last run did not
stop cleanly: it is resumed all the same, with a warning, since the world it
simulated after its start is lost.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

from retailstream.world import EventGenerator

STATE_DIR = "_world_state"
STATE_FILE = "generator.pkl"
FORMAT = 1


def state_path(lake_root: Path) -> Path:
    return lake_root / STATE_DIR / STATE_FILE


def _running(path: Path) -> Path:
    return path.with_name(path.name + ".running")


@dataclass(frozen=True)
class Resumed:
    """What `claim` found: the generator to continue (or None) and what to tell the user."""

    generator: EventGenerator | None
    note: str


def claim(lake_root: Path, spec: dict) -> Resumed:
    """Take the saved world of `spec` (the world's seed and scale) for this run."""
    path = state_path(lake_root)
    running = _running(path)
    crashed = not path.exists() and running.exists()
    if path.exists():
        path.replace(running)
    if not running.exists():
        return Resumed(None, "a new world starts from its initial stock")
    try:
        saved = pickle.loads(running.read_bytes())
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as error:
        return Resumed(None, f"the saved world is unreadable ({error}): a new world starts")
    if saved.get("format") != FORMAT or saved.get("spec") != spec:
        return Resumed(None, "the saved world belongs to another world spec: a new world starts")
    generator: EventGenerator = saved["generator"]
    note = (
        f"resuming the saved world at {generator.sim_time:%Y-%m-%d %H:%M:%S} "
        f"({generator.records_emitted:,} records so far)"
    )
    if crashed:
        note += (
            "; warning: the last run did not stop cleanly, so the world it simulated after "
            "it started is lost and its stock may differ from the events"
        )
    return Resumed(generator, note)


def save(lake_root: Path, spec: dict, generator: EventGenerator) -> Path:
    """Save `generator` for the next run (atomically) and release this run's claim."""
    path = state_path(lake_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    state = {"format": FORMAT, "spec": spec, "generator": generator}
    tmp.write_bytes(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    tmp.replace(path)
    _running(path).unlink(missing_ok=True)
    return path


def forget(lake_root: Path) -> None:
    """Drop any saved world (`produce --new-world`)."""
    path = state_path(lake_root)
    for stale in (path, _running(path)):
        stale.unlink(missing_ok=True)
