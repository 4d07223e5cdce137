"""Inline activities and the orchestrations that call them (imported by Ray workers)."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import ray
from workflows import executions, record

from runtime import RetryPolicy, TaskFailedError, activity, orchestrator


def _where() -> str:
    """'host' in an actor's process (an inline run), 'task' in a Ray task's worker."""
    return "host" if ray.get_runtime_context().get_actor_id() is not None else "task"


@activity(inline=True)
def add_inline(args):
    """Adds, and says where it ran."""
    x, y = args
    return x + y, _where()


@activity
def add_dispatched(args):
    """Adds, and says where it ran."""
    x, y = args
    return x + y, _where()


@activity(inline=True, timeout=0.5)
def too_slow(seconds):
    time.sleep(seconds)
    return "finished"


@activity(inline=True)
def flaky_inline(args):
    """Fails until it has run ``failures`` times (counted in a side file), then returns."""
    path, failures = args
    record(path, "flaky")
    runs = len(executions(path))
    if runs <= failures:
        raise ValueError(f"run {runs} fails")
    return runs


@activity(inline=True)
def unpicklable(_):
    return threading.Lock()


@activity(inline=True)
def step_or_die(args):
    """Records its run; kills its host's whole process while ``flag`` exists."""
    path, flag, i = args
    record(path, i)
    if os.path.exists(flag):
        os._exit(1)
    return i


@activity(inline=True)
def consume_input(items):
    items.append("changed by the activity")
    return len(items)


@orchestrator
def inline_chain(ctx, n):
    """n inline steps, then one dispatched and one each way by the call's own choice."""
    total, places = 0, []
    for _ in range(n):
        total, where = yield ctx.call_activity(add_inline, (total, 1))
        places.append(where)
    total, where = yield ctx.call_activity(add_dispatched, (total, 1))
    places.append(where)
    total, where = yield ctx.call_activity(add_dispatched, (total, 1), inline=True)
    places.append(where)
    total, where = yield ctx.call_activity("add_inline", (total, 1), inline=False)
    places.append(where)
    return total, places


@orchestrator
def inline_failures(ctx, path):
    """A timeout, a retried failure and a result that cannot be stored, each as the
    orchestration sees it."""
    seen = []
    try:
        yield ctx.call_activity(too_slow, 5)
    except TaskFailedError as exc:
        seen.append(exc.details.error_type)
    retry = RetryPolicy(first_retry_interval=timedelta(seconds=0.1), max_number_of_attempts=3)
    seen.append((yield ctx.call_activity_with_retry(flaky_inline, retry, (path, 2))))
    try:
        yield ctx.call_activity(unpicklable)
    except TaskFailedError as exc:
        seen.append(exc.details.error_type)
    seen.append((yield ctx.call_activity(too_slow, 0.01, timeout=5)))
    return seen


@orchestrator
def inline_copies(ctx, _):
    """The activity gets a copy of its input, as a dispatched one does."""
    items = ["mine"]
    count = yield ctx.call_activity(consume_input, items)
    return count, items


@orchestrator
def inline_steps(ctx, args):
    """Three inline steps; the second kills its host while the flag exists."""
    path, flag = args
    out = []
    for i in range(3):
        out.append((yield ctx.call_activity(step_or_die, (path, flag if i == 1 else "", i))))
    return out


@activity(inline=True)
def wait_for_file(path):
    """Waits until ``path`` exists (at most a minute): a long inline activity."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.path.exists(path)


@activity(inline=True)
def nap(seconds):
    time.sleep(seconds)
    return seconds


@orchestrator
def waits_inline(ctx, path):
    return (yield ctx.call_activity(wait_for_file, path))


@orchestrator
def naps(ctx, args):
    """Inline naps in sequence: a neighbour that is often running when its host dies."""
    count, seconds = args
    for _ in range(count):
        yield ctx.call_activity(nap, seconds)
    return count


@orchestrator
def fan_with_poison(ctx, args):
    """A fan-out of inline steps, one of which kills its host while the flag exists."""
    path, flag = args
    steps = [ctx.call_activity(step_or_die, (path, flag if i == 2 else "", i)) for i in range(4)]
    return (yield ctx.task_all(steps))


ALL = [
    wait_for_file,
    nap,
    waits_inline,
    naps,
    fan_with_poison,
    add_inline,
    add_dispatched,
    too_slow,
    flaky_inline,
    unpicklable,
    step_or_die,
    consume_input,
    inline_chain,
    inline_failures,
    inline_copies,
    inline_steps,
]
