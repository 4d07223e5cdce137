"""The recovery benchmark's workload (imported by Ray workers, from benchmarks/)."""

from __future__ import annotations

from datetime import timedelta

from runtime import orchestrator


@orchestrator
def ticker(ctx, ticks: int):
    """A live instance that commits a step every second on a durable timer: no Ray worker
    is needed while it waits, so 60 of them measure recovery, not CPU queues."""
    for _ in range(ticks):
        yield ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=1))
    return ticks
