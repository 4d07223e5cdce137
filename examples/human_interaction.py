"""Human interaction: wait for an approval, or escalate after 72 hours.

The orchestrator asks for approval, then races a 72-hour durable timer against the
external event ``ApprovalEvent``: whichever comes first decides whether the request is
handled or escalated. ``main`` runs both paths side by side: one request is approved by
the client raising the event, the other is left alone until its deadline passes.

In production the hub runs on the real clock and the timer really fires 72 hours later
(it lives in the store, so it survives restarts meanwhile). Here the hub runs on a
``ManualClock`` from ``runtime.testing``: ``clock.advance(timedelta(hours=72))`` moves
time for the supervisor's timer service and every ``ctx.current_utc_datetime``, so the
same production timer code fires at once and the example ends in seconds. Tests of your
own workflows move time the same way.
Run from the repository root: ``python examples/human_interaction.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from datetime import datetime, timedelta, timezone
from typing import Any

from runtime import OrchestrationContext, Runtime, Task, activity, orchestrator
from runtime.testing import ManualClock

DEADLINE = timedelta(hours=72)
WAITING = "waiting for approval"


@activity(name="RequestApproval")
def request_approval(request: str) -> str:
    """Ask a manager to approve the request (stands in for an email or a ticket)."""
    return f"approval requested for {request!r}"


@activity(name="HandleApproval")
def handle_approval(decision: dict[str, Any]) -> str:
    """Carry out the request its approver (the event's data) approved."""
    return f"{decision['request']!r} approved by {decision['approver']}"


@activity(name="Escalate")
def escalate(request: str) -> str:
    """Nobody answered in time: hand the request to someone higher up."""
    return f"{request!r} escalated after {DEADLINE.total_seconds() / 3600:.0f} h without answer"


@orchestrator
def approval_workflow(ctx: OrchestrationContext, request: str) -> Generator[Task, Any, str]:
    """Request approval; handle it if it arrives within 72 hours, else escalate."""
    yield ctx.call_activity(request_approval, request)
    timeout = ctx.create_timer(ctx.current_utc_datetime + DEADLINE)
    approved = ctx.wait_for_external_event("ApprovalEvent")
    ctx.set_custom_status(WAITING)
    winner = yield ctx.task_any([approved, timeout])
    if winner is approved:
        # The timer stays in the store; cancelling makes its later firing a no-op.
        timeout.cancel()
        ctx.set_custom_status("approved")
        decision = {"request": request, "approver": approved.result}
        return (yield ctx.call_activity(handle_approval, decision))
    ctx.set_custom_status("escalated")
    return (yield ctx.call_activity(escalate, request))


def _wait_until(predicate: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll ``predicate`` until it holds; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def main(
    hub: str = "example-human-interaction", store: str | None = None, timeout: float = 120.0
) -> dict[str, Any]:
    """Run one approved and one timed-out request; return both outcomes by path."""
    # Whole seconds, so "start + 72 h" is the same float in every process.
    clock = ManualClock(start=datetime.now(timezone.utc).replace(microsecond=0))
    rt = Runtime.start(hub=hub, store=store, clock=clock)
    client = rt.client
    try:
        approved_id = client.start_new(approval_workflow, input="new laptop")
        timeout_id = client.start_new(approval_workflow, input="team offsite")
        for iid in (approved_id, timeout_id):
            # Only once the timer is recorded does moving the clock make it due.
            _wait_until(
                lambda iid=iid: client.get_status(iid).custom_status == WAITING,
                f"instance {iid} waiting",
                timeout,
            )

        client.raise_event(approved_id, "ApprovalEvent", "alice")
        approved = client.wait_for_completion(approved_id, timeout=timeout)

        clock.advance(DEADLINE)
        timed_out = client.wait_for_completion(timeout_id, timeout=timeout)

        results: dict[str, Any] = {}
        for path, state in (("approved", approved), ("timed_out", timed_out)):
            print(f"{path} path, instance {state.instance_id}")
            print(f"  status:        {state.runtime_status}")
            print(f"  custom status: {state.custom_status}")
            print(f"  output:        {state.output}")
            results[path] = {
                "instance_id": state.instance_id,
                "status": str(state.runtime_status),
                "custom_status": state.custom_status,
                "output": state.output,
            }
        print(f"hub clock now {clock.now().isoformat()} (moved by hand, not waited for)")
        return results
    finally:
        rt.shutdown()


if __name__ == "__main__":
    main()
