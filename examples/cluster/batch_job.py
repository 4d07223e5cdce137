"""A large fan-out batch on a Ray cluster, submitted as a Ray job.

From the repository root, against a cluster whose nodes have ray-durable installed:

    ray job submit --address http://HEAD:8265 --working-dir examples/cluster -- \\
        python batch_job.py --n 100000

The job's driver starts the hub of ``durable.yaml`` (or attaches to it), starts one
orchestration that fans out ``--n`` activities over the cluster, waits for it and prints
the sum. The hub stays up after the job ends (its actors are detached): other drivers,
such as ``signal_entities.py``, use it; ``--shutdown`` stops it.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Generator, Sequence
from typing import Any

from runtime import OrchestrationContext, Runtime, Task, activity, orchestrator

HERE = os.path.dirname(os.path.abspath(__file__))


@activity
def score(item: int) -> int:
    """One unit of work: a number derived from the item."""
    return item * item % 1_000


@orchestrator
def batch(ctx: OrchestrationContext, n: int) -> Generator[Task, Any, dict[str, int]]:
    """Score ``n`` items in parallel, then total them."""
    ctx.set_custom_status({"stage": "fan-out", "items": n})
    scores = yield ctx.task_all([ctx.call_activity(score, i) for i in range(n)])
    return {"items": len(scores), "total": sum(scores)}


def expected(n: int) -> int:
    """What ``batch`` returns as its total for ``n`` items."""
    return sum(i * i % 1_000 for i in range(n))


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The job's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="activities in the batch")
    parser.add_argument("--config", default=os.path.join(HERE, "durable.yaml"))
    parser.add_argument("--hub", help="overrides the file's hub")
    parser.add_argument("--store", help="overrides the file's store URL")
    parser.add_argument("--address", default="auto", help="the Ray cluster (a job: auto)")
    parser.add_argument("--shutdown", action="store_true", help="stop the hub at the end")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one batch on the cluster's hub; print and return what it did."""
    args = parse(argv)
    overrides = {k: v for k, v in (("hub", args.hub), ("store", args.store)) if v}
    rt = Runtime.start(
        config=args.config, address=args.address, register=[batch, score], **overrides
    )
    try:
        started = time.perf_counter()
        iid = rt.client.start_new(batch, input=args.n)
        state = rt.client.wait_for_completion(iid, timeout=3_600)
        elapsed = time.perf_counter() - started
        ok = state.output is not None and state.output["total"] == expected(args.n)
        print(f"hub:        {rt.config.hub}")
        print(f"instance:   {iid}")
        print(f"status:     {state.runtime_status}")
        print(f"result:     {state.output}")
        print(f"check:      total {'matches' if ok else 'DIFFERS'}")
        print(f"throughput: {args.n / elapsed:.0f} activities/s ({elapsed:.1f} s)")
        return {"status": str(state.runtime_status), "output": state.output, "ok": ok}
    finally:
        if args.shutdown:
            rt.shutdown()


if __name__ == "__main__":
    main()
