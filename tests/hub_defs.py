"""Code for the task-hub isolation tests: two hubs register different code under one name."""

from __future__ import annotations

from datetime import timedelta

from runtime import activity, orchestrator


@activity
def stamp(text: str) -> str:
    return text


@orchestrator(name="flow")
def blue_flow(ctx, item):
    data = yield ctx.wait_for_external_event("Go")
    return (yield ctx.call_activity(stamp, f"blue:{item}:{data}"))


@orchestrator(name="flow")
def green_flow(ctx, item):
    data = yield ctx.wait_for_external_event("Go")
    return f"green:{item}:{data}"


@orchestrator
def nap(ctx, hours):
    yield ctx.create_timer(timedelta(hours=hours))
    return "woke"
