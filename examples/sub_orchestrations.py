"""Sub-orchestrations: a parent fans out to 100 child orchestrations and aggregates them.

Each child is a full orchestration of its own (its own instance id, history and status,
visible to clients as ``<parent id>:<n>``): it takes an inventory of one warehouse with
two activities in a row. The parent starts every child at once with
``ctx.call_sub_orchestrator``, waits for them all with ``ctx.task_all`` and adds up
their reports. The hub uses ``placement="pooled"``, so the 101 instances share a few
host actors instead of starting a Ray actor each.
Run from the repository root: ``python examples/sub_orchestrations.py``.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from runtime import OrchestrationContext, Runtime, Task, activity, orchestrator


@activity(name="CountStock")
def count_stock(warehouse: int) -> list[int]:
    """Count the items on each shelf of one warehouse (a made-up, repeatable inventory)."""
    return [(warehouse * 7 + shelf * 3) % 11 for shelf in range(5)]


@activity(name="PriceStock")
def price_stock(counts: list[int]) -> int:
    """Value a warehouse's stock at 2 per item."""
    return 2 * sum(counts)


@orchestrator
def warehouse_inventory(
    ctx: OrchestrationContext, warehouse: int
) -> Generator[Task, Any, dict[str, int]]:
    """Child: count one warehouse's stock, then price it."""
    counts = yield ctx.call_activity(count_stock, warehouse)
    value = yield ctx.call_activity(price_stock, counts)
    return {"warehouse": warehouse, "items": sum(counts), "value": value}


@orchestrator
def inventory(ctx: OrchestrationContext, warehouses: int) -> Generator[Task, Any, dict[str, int]]:
    """Parent: one child orchestration per warehouse, all at once, then the totals."""
    ctx.set_custom_status({"stage": "fan-out", "children": warehouses})
    reports = yield ctx.task_all(
        [ctx.call_sub_orchestrator(warehouse_inventory, w) for w in range(warehouses)]
    )
    ctx.set_custom_status({"stage": "done"})
    return {
        "children": len(reports),
        "items": sum(r["items"] for r in reports),
        "value": sum(r["value"] for r in reports),
    }


def expected_totals(warehouses: int) -> dict[str, int]:
    """The totals computed in this process, to check the orchestration's answer."""
    items = sum(sum(count_stock(w)) for w in range(warehouses))
    return {"children": warehouses, "items": items, "value": 2 * items}


def main(
    hub: str = "example-sub-orchestrations",
    store: str | None = None,
    n: int = 100,
    pool_size: int = 4,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Run the parent over ``n`` children on a pooled hub; return its output and timing."""
    rt = Runtime.start(hub=hub, store=store, placement="pooled", pool_size=pool_size)
    try:
        started = time.perf_counter()
        iid = rt.client.start_new(inventory, input=n)
        state = rt.client.wait_for_completion(iid, timeout=timeout)
        elapsed = time.perf_counter() - started
        expected = expected_totals(n)
        children = rt.client.get_status_by(instance_id_prefix=f"{iid}:")
        completed = sum(c.runtime_status == "Completed" for c in children)
        print(f"parent:    {iid} {state.runtime_status}")
        print(f"children:  {completed} of {len(children)} completed")
        print(f"output:    {state.output}")
        print(f"check:     {'matches' if state.output == expected else 'DIFFERS from'} {expected}")
        print(f"elapsed:   {elapsed:.2f} s for {n} children ({2 * n} activities)")
        return {
            "instance_id": iid,
            "status": str(state.runtime_status),
            "output": state.output,
            "expected": expected,
            "children_completed": completed,
            "elapsed": elapsed,
        }
    finally:
        rt.shutdown()


if __name__ == "__main__":
    main()
