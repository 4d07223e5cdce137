"""Eternal orchestration as an actor: a counter driven by external events.

The orchestrator waits for one ``operation`` event (``incr`` or ``decr``), publishes the
new count as its custom status and ``continue_as_new``s with it, so its history stays a
few events long however many operations it handles. Events that arrive while it is busy
are not lost: those not yet consumed carry over into the next execution, in arrival
order. A final ``stop`` event makes it return the count as its output.
Run from the repository root: ``python examples/counter_actor.py``.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from runtime import OrchestrationContext, Runtime, Task, orchestrator

STEP = {"incr": 1, "decr": -1}


@orchestrator
def counter(ctx: OrchestrationContext, count: int) -> Generator[Task, Any, int | None]:
    """Apply one operation, publish the count, start over with it; ``stop`` ends."""
    operation = yield ctx.wait_for_external_event("operation")
    if operation == "stop":
        return count
    count += STEP.get(operation, 0)
    ctx.set_custom_status(count)
    ctx.continue_as_new(count)


def operations(n: int) -> list[str]:
    """``n`` operations: a quarter ``decr`` first, then ``incr`` up to the final count."""
    # Decrements first, so the count reaches its final value only with the last event.
    return ["decr"] * (n // 4) + ["incr"] * (n - n // 4)


def main(
    hub: str = "example-counter-actor",
    store: str | None = None,
    n: int = 100,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Send ``n`` operations to one counter, read its count, then stop it."""
    if n < 1:
        raise ValueError("n must be at least 1")
    ops = operations(n)
    expected = sum(STEP[op] for op in ops)
    rt = Runtime.start(hub=hub, store=store)
    client = rt.client
    try:
        started = time.perf_counter()
        iid = client.start_new(counter, input=0)
        # Sent as fast as the client goes: many arrive while the counter is mid-step.
        for op in ops:
            client.raise_event(iid, "operation", op)

        # Any client can read the custom status while the counter runs; poll, bounded.
        deadline = time.monotonic() + timeout
        while (status := client.get_status(iid)).custom_status != expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"count is {status.custom_status}, expected {expected}")
            time.sleep(0.05)
        history = client.get_status(iid, show_history=True).history or []

        client.raise_event(iid, "operation", "stop")
        final = client.wait_for_completion(iid, timeout=timeout)
        elapsed = time.perf_counter() - started

        print(f"instance:        {iid}")
        print(f"operations sent: {n} ({ops.count('incr')} incr, {ops.count('decr')} decr)")
        print(f"custom status:   {status.custom_status} (expected {expected})")
        print(f"history length:  {len(history)} events in the current execution")
        print(f"status:          {final.runtime_status}")
        print(f"output:          {final.output}")
        print(f"elapsed:         {elapsed:.2f} s")
        return {
            "instance_id": iid,
            "operations": n,
            "expected": expected,
            "custom_status": status.custom_status,
            "history_length": len(history),
            "status": str(final.runtime_status),
            "output": final.output,
        }
    finally:
        rt.shutdown()


if __name__ == "__main__":
    main()
