"""Orchestrators of the Durable Functions patterns, for the pattern tests."""

from __future__ import annotations

from datetime import timedelta

import workflows as wf

from runtime import RetryPolicy, activity, orchestrator
from runtime.orchestration import EventTimeoutError


@activity
def request_approval(request: str) -> str:
    return f"asked for {request}"


@activity
def handle_approval(decision: str) -> str:
    return f"approved: {decision}"


@activity
def escalate(request: str) -> str:
    return f"escalated {request}"


@orchestrator
def approval(ctx, request):
    yield ctx.call_activity(request_approval, request)
    timeout = ctx.create_timer(ctx.current_utc_datetime + timedelta(hours=72))
    approved = ctx.wait_for_external_event("ApprovalEvent")
    winner = yield ctx.task_any([approved, timeout])
    if winner is approved:
        timeout.cancel()
        return (yield ctx.call_activity(handle_approval, approved.result))
    return (yield ctx.call_activity(escalate, request))


@orchestrator
def wait_with_timeout(ctx, _):
    try:
        return (yield ctx.wait_for_external_event("Go", timeout=timedelta(minutes=10)))
    except EventTimeoutError:
        return "timed out"


@orchestrator
def collect_events(ctx, n):
    got = []
    for _ in range(n):
        got.append((yield ctx.wait_for_external_event("item")))
    return got


@orchestrator
def eternal_counter(ctx, count):
    op = yield ctx.wait_for_external_event("operation")
    if op == "end":
        return count
    count += {"incr": 1, "decr": -1}.get(op, 0)
    ctx.set_custom_status(count)
    ctx.continue_as_new(count)


@orchestrator
def ticker(ctx, state):
    n, limit = state
    yield ctx.call_activity(wf.inc, n)
    if n + 1 >= limit:
        return n + 1
    ctx.continue_as_new((n + 1, limit))


@activity
def flaky(args: tuple[str, int]) -> str:
    path, fail_times = args
    wf.record(path, "try")
    if len(wf.executions(path)) <= fail_times:
        raise ConnectionError("service unavailable")
    return "ok"


@orchestrator
def retrying(ctx, args):
    policy = RetryPolicy(timedelta(minutes=5), max_number_of_attempts=3, backoff_coefficient=2)
    return (yield ctx.call_activity_with_retry(flaky, policy, args))


@orchestrator
def plain_call(ctx, args):
    """No policy of its own: the hub's activity_defaults decide."""
    return (yield ctx.call_activity(flaky, args))


@activity
def assigned_cpus(_):
    import ray

    return ray.get_runtime_context().get_assigned_resources().get("CPU")


@orchestrator
def cpus_of_activity(ctx, _):
    return (yield ctx.call_activity(assigned_cpus, None))


@orchestrator
def child(ctx, i):
    return (yield ctx.call_activity(wf.inc, i))


@orchestrator
def parent(ctx, n):
    results = yield ctx.task_all([ctx.call_sub_orchestrator(child, i) for i in range(n)])
    return sum(results)


@orchestrator
def waiting_child(ctx, _):
    return (yield ctx.wait_for_external_event("never"))


@orchestrator
def parent_of_waiter(ctx, _):
    return (
        yield ctx.call_sub_orchestrator(waiting_child, None, instance_id=ctx.instance_id + "-c")
    )


@orchestrator(name="versioned", version="1")
def versioned_v1(ctx, _):
    yield ctx.wait_for_external_event("go")
    return "v1"


@orchestrator(name="versioned", version="2")
def versioned_v2(ctx, _):
    yield ctx.wait_for_external_event("go")
    return "v2"


@orchestrator
def sleeper(ctx, hours):
    yield ctx.create_timer(timedelta(hours=hours))
    return ctx.current_utc_datetime.isoformat()


ALL = [
    request_approval,
    handle_approval,
    escalate,
    approval,
    wait_with_timeout,
    collect_events,
    eternal_counter,
    ticker,
    flaky,
    retrying,
    plain_call,
    assigned_cpus,
    cpus_of_activity,
    child,
    parent,
    waiting_child,
    parent_of_waiter,
    sleeper,
]
