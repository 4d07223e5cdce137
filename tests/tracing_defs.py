"""Orchestrations whose traces the tracing tests read (imported by Ray workers)."""

from __future__ import annotations

import os
from datetime import timedelta

from entity_defs import Counter

from runtime import RetryPolicy, activity, orchestrator
from runtime.entity_id import EntityId


@activity
def double(x):
    return 2 * x


@activity
def fails_once(marker):
    """Fails on its first run (a marker file says it ran), succeeds after."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ValueError("first attempt fails")
    return "recovered"


@activity
def current_span(_):
    """The span id the task runs under, as OpenTelemetry's current context says."""
    from opentelemetry import trace

    return f"{trace.get_current_span().get_span_context().span_id:016x}"


@orchestrator
def child(ctx, x):
    return (yield ctx.call_activity(double, x))


@orchestrator
def traced(ctx, marker):
    """A chain with a retry, a fan-out of 5, a child, an entity call and a signal."""
    first = yield ctx.call_activity(double, 1)
    policy = RetryPolicy(first_retry_interval=timedelta(milliseconds=50), max_number_of_attempts=3)
    recovered = yield ctx.call_activity_with_retry(fails_once, policy, marker)
    fanned = yield ctx.task_all([ctx.call_activity(double, i) for i in range(5)])
    sub = yield ctx.call_sub_orchestrator(child, 10)
    seen = yield ctx.call_activity(current_span, None)
    counter = EntityId("Counter", ctx.instance_id)
    yield ctx.call_entity(counter, "add", 1)
    ctx.signal_entity(counter, "add", 1)
    return first, recovered, sum(fanned), sub, seen


@orchestrator
def waits(ctx, _):
    """One step, then an external event, then one more step: a host dies in between."""
    yield ctx.call_activity(double, 1)
    value = yield ctx.wait_for_external_event("go")
    return (yield ctx.call_activity(double, value))


@orchestrator
def generations(ctx, n):
    """Three executions of one instance (continue-as-new), one step each."""
    yield ctx.call_activity(double, n)
    if n < 2:
        ctx.continue_as_new(n + 1)
        return None
    return n


ALL = [double, fails_once, current_span, child, traced, waits, generations, Counter]
