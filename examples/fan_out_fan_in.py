"""Fan-out/fan-in: run many activities in parallel, then aggregate their results.

One activity makes a batch of work items, ``ctx.task_all`` runs one activity per item
(1,000 by default) and waits for all of them, then an aggregate activity sums them up.
Run from the repository root: ``python examples/fan_out_fan_in.py [--n 1000]``.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Generator
from typing import Any

from runtime import OrchestrationContext, Runtime, Task, activity, orchestrator


@activity
def make_batch(n: int) -> list[int]:
    """The work items: the numbers 0 .. n-1."""
    return list(range(n))


@activity
def process_item(item: int) -> dict[str, Any]:
    """Square one item and fingerprint it."""
    return {"item": item, "square": item * item, "digest": hashlib.sha256(b"%d" % item).digest()}


@activity
def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the squares and combine the fingerprints."""
    combined = hashlib.sha256()
    for result in sorted(results, key=lambda r: r["item"]):
        combined.update(result["digest"])
    return {
        "items": len(results),
        "sum_of_squares": sum(r["square"] for r in results),
        "fingerprint": combined.hexdigest()[:16],
    }


@orchestrator
def fan_out_fan_in(ctx: OrchestrationContext, n: int) -> Generator[Task, Any, dict[str, Any]]:
    """Make a batch, process every item in parallel, aggregate the results."""
    items = yield ctx.call_activity(make_batch, n)
    ctx.set_custom_status({"stage": "fan-out", "items": len(items)})
    results = yield ctx.task_all([ctx.call_activity(process_item, i) for i in items])
    ctx.set_custom_status({"stage": "aggregate"})
    return (yield ctx.call_activity(aggregate, results))


def main() -> None:
    """Start the hub, run one fan-out of ``--n`` activities and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of parallel activities")
    args = parser.parse_args()
    if args.n < 0:
        parser.error("--n must be non-negative")

    rt = Runtime.start(hub="example-fan-out-fan-in")
    try:
        started = time.perf_counter()
        iid = rt.client.start_new(fan_out_fan_in, input=args.n)
        state = rt.client.wait_for_completion(iid, timeout=600)
        elapsed = time.perf_counter() - started
        activities = args.n + 2  # make_batch and aggregate run too
        expected = sum(i * i for i in range(args.n))
        print(f"instance:     {iid}")
        print(f"status:       {state.runtime_status}")
        print(f"result:       {state.output}")
        if state.output is not None:
            ok = state.output["sum_of_squares"] == expected
            print(f"check:        sum of squares {'matches' if ok else 'DIFFERS from'} {expected}")
        print(f"elapsed:      {elapsed:.2f} s for {activities} activities")
        print(f"throughput:   {activities / elapsed:.0f} activities/s")
    finally:
        rt.shutdown()


if __name__ == "__main__":
    main()
