"""Orchestrators, an activity and an entity for the dashboard tests (imported by Ray workers)."""

from __future__ import annotations

from typing import Any

from entities import EntityContext, entity
from runtime import activity, orchestrator


@activity
def square(x: int) -> int:
    return x * x


@activity
def blocked(marker: str) -> bool:
    """Waits (up to a minute) for its marker file: an activity that stays in flight."""
    import os
    import time

    deadline = time.monotonic() + 60
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


@orchestrator
def held(ctx, args):
    width, marker = args
    return all((yield ctx.task_all([ctx.call_activity(blocked, marker) for _ in range(width)])))


@orchestrator
def fan_out(ctx, width: int):
    results = yield ctx.task_all([ctx.call_activity(square, i) for i in range(width)])
    return sum(results)


@orchestrator
def chain(ctx, n: int):
    total = 0
    for i in range(n):
        total += yield ctx.call_activity(square, i)
    return total


@orchestrator
def waiter(ctx, note: Any):
    ctx.set_custom_status(note)
    return (yield ctx.wait_for_external_event("Go"))


@orchestrator
def fails(ctx, message: str):
    ctx.set_custom_status(message)
    raise ValueError(message)


@entity
def Counter(ctx: EntityContext):
    value = ctx.get_state(lambda: 0)
    if ctx.operation_name == "add":
        ctx.set_state(value + ctx.get_input())
    elif ctx.operation_name == "reset":
        ctx.set_state(0)


ALL = [square, blocked, held, fan_out, chain, waiter, fails, Counter]
