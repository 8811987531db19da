"""Every job the CLI runs, trains and submits, in the order `--help` lists them.

A new job is its module's `JOB` (see `jobs/spec.py`) added here and a
`jobs/<script>.py` that calls its `main`; the CLI needs nothing else.
"""

from __future__ import annotations

from typing import Any

from retailstream.jobs import (
    build_views,
    enrich_events,
    ingest_events,
    refine_events,
    score_shipments,
    serving_views,
    train_disruption,
    train_recommender,
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


def by_submit_name() -> dict[str, Job[Any]]:
    """Every job by the name `retailstream submit` takes."""
    return {job.submit_name: job for job in (*STREAMING, *TRAINING)}
