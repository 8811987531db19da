"""Every job the CLI runs, trains and submits, and every command it runs in a
session, in the order `--help` lists them.

A new job is its module's `JOB` (see `jobs/spec.py`) added here and a
`jobs/<script>.py` that calls its `main`; the CLI needs nothing else. A new
command is its module's `JOB` added to `COMMANDS`.
"""

from __future__ import annotations

from typing import Any

from retailstream.jobs import (
    asof_views,
    audit_views,
    build_views,
    enrich_events,
    explain_views,
    ingest_events,
    init_world,
    maintain_lake,
    refine_events,
    replay_events,
    retrain,
    sample_lake,
    score_shipments,
    serving_views,
    train_disruption,
    train_recommender,
    verify_store,
)
from retailstream.jobs.spec import Job, StreamRun

STREAMING: tuple[Job[StreamRun], ...] = (
    ingest_events.JOB,
    refine_events.JOB,
    enrich_events.JOB,
    build_views.JOB,
    serving_views.JOB,
    score_shipments.JOB,
)
TRAINING: tuple[Job[Any], ...] = (train_recommender.JOB, train_disruption.JOB)
# Commands that run in a session of their own: `world init` (under `world`), then
# top-level ones. Only the streaming and training jobs are `submit`ted.
COMMANDS: tuple[Job[Any], ...] = (
    init_world.JOB,
    sample_lake.JOB,
    verify_store.JOB,
    replay_events.JOB,
    asof_views.JOB,
    audit_views.JOB,
    explain_views.JOB,
    maintain_lake.JOB,
    retrain.JOB,
)


def by_submit_name() -> dict[str, Job[Any]]:
    """Every job by the name `retailstream submit` takes."""
    return {job.submit_name: job for job in (*STREAMING, *TRAINING)}
