"""Orchestrators and activities shared by the end-to-end tests (imported by Ray workers)."""

from __future__ import annotations

import os
import time

from runtime import TaskFailedError, activity, orchestrator


def record(path: str, item: object) -> None:
    """Append one line; O_APPEND keeps concurrent short writes whole."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{item}\n".encode())
    finally:
        os.close(fd)


def executions(path: str) -> list[str]:
    """Lines written by ``record``."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split()


@activity
def inc(x: int) -> int:
    return x + 1


@activity(name="double")
def double(x: int) -> int:
    return x * 2


@activity
def slow_step(args: tuple[str, int, float]) -> int:
    path, i, seconds = args
    time.sleep(seconds)
    record(path, i)
    return i


@activity
def fail(message: str) -> None:
    raise ValueError(message)


@orchestrator
def chain(ctx, x):
    a = yield ctx.call_activity(inc, x)
    b = yield ctx.call_activity("double", a)
    return b


@orchestrator
def fan_out_fan_in(ctx, n):
    parts = yield ctx.task_all([ctx.call_activity(inc, i) for i in range(n)])
    return sum(parts)


@orchestrator
def slow_chain(ctx, args):
    path, steps, seconds = args
    out = []
    for i in range(steps):
        out.append((yield ctx.call_activity(slow_step, (path, i, seconds))))
    return out


@orchestrator
def slow_chain_then_go(ctx, args):
    """``slow_chain``, then waits for the event "go": it outlives whatever a test does first."""
    path, steps, seconds = args
    for i in range(steps):
        yield ctx.call_activity(slow_step, (path, i, seconds))
    return (yield ctx.wait_for_external_event("go"))


@orchestrator
def slow_fan_out(ctx, args):
    path, n, seconds = args
    return sum(
        (yield ctx.task_all([ctx.call_activity(slow_step, (path, i, seconds)) for i in range(n)]))
    )


@orchestrator
def compensate(ctx, message):
    try:
        yield ctx.call_activity(fail, message)
    except TaskFailedError as err:
        ctx.set_custom_status("compensated")
        return {"error_type": err.details.error_type, "message": err.details.message}


@orchestrator
def unhandled(ctx, message):
    yield ctx.call_activity(fail, message)


@orchestrator
def calls_unknown(ctx, _):
    return (yield ctx.call_activity("no_such_activity", 1))


ALL = [
    inc,
    double,
    slow_step,
    fail,
    chain,
    fan_out_fan_in,
    slow_chain,
    slow_chain_then_go,
    slow_fan_out,
    compensate,
    unhandled,
    calls_unknown,
]
