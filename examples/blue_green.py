"""Blue/green deployment with task hubs: v2 takes new orders while v1 drains.

Version 1 of an order workflow runs as task hub ``orders-blue``. While its orders are in
flight, version 2 (which adds a bulk discount) is deployed as hub ``orders-green`` on the
same store file. New orders go to green; blue finishes the orders it started, with its own
code, and is shut down once nothing is left running. Both hubs use the orchestrator name
``process_order`` and the same instance-id scheme, yet never see each other's instances.
Run from the repository root: ``python examples/blue_green.py``; the store is
``.durable/blue-green.db``.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Generator
from typing import Any

from runtime import OrchestrationContext, Runtime, Task, activity, orchestrator

#: Pooled placement keeps the demo small: one host actor per hub.
HUB_SETTINGS: dict[str, Any] = {"placement": "pooled", "pool_size": 1, "warm_hosts": 0}


@activity
def reserve_stock(order: dict[str, Any]) -> str:
    """Pretend to reserve the order's item (slow enough to catch orders in flight)."""
    time.sleep(0.3)
    return f"reserved {order['quantity']} x {order['item']}"


@activity
def charge(payment: dict[str, Any]) -> float:
    """Pretend to charge the customer; returns the amount charged."""
    time.sleep(0.3)
    return round(payment["amount"], 2)


@orchestrator(name="process_order")
def process_order_v1(
    ctx: OrchestrationContext, order: dict[str, Any]
) -> Generator[Task, Any, dict[str, Any]]:
    """v1: reserve, then charge the full price."""
    yield ctx.call_activity(reserve_stock, order)
    amount = order["quantity"] * order["price"]
    charged = yield ctx.call_activity(charge, {"order": order["id"], "amount": amount})
    return {"version": "v1", "charged": charged}


@orchestrator(name="process_order")
def process_order_v2(
    ctx: OrchestrationContext, order: dict[str, Any]
) -> Generator[Task, Any, dict[str, Any]]:
    """v2: reserve, then charge with 10% off orders of ten items or more."""
    yield ctx.call_activity(reserve_stock, order)
    amount = order["quantity"] * order["price"]
    if order["quantity"] >= 10:
        amount *= 0.9
    charged = yield ctx.call_activity(charge, {"order": order["id"], "amount": amount})
    return {"version": "v2", "charged": charged}


def deploy(hub: str, store: str, orchestrator_code: Any) -> Runtime:
    """Start one hub with one version of the workflow registered."""
    return Runtime.start(
        hub, store=store, register=[reserve_stock, charge, orchestrator_code], **HUB_SETTINGS
    )


def place_orders(rt: Runtime, batch: str, n: int) -> list[str]:
    """Start ``n`` orders on a hub; the instance id is the order id."""
    ids = []
    for i in range(1, n + 1):
        order = {"id": f"{batch}-{i}", "item": "widget", "quantity": 5 * i, "price": 4.0}
        ids.append(rt.client.start_new("process_order", input=order, instance_id=order["id"]))
    return ids


def drain(rt: Runtime, timeout: float = 120.0) -> None:
    """Wait until the hub has no running instance left (what a deployment script polls)."""
    deadline = time.monotonic() + timeout
    while True:
        running = rt.client.get_status_by(runtime_status=["Pending", "Running", "Suspended"])
        if not running:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"hub {rt.config.hub!r} still runs {len(running)} instances")
        print(f"  {rt.config.hub}: {len(running)} orders still running")
        time.sleep(0.5)


def main() -> None:
    """Deploy blue, then green beside it; route new work to green while blue drains."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3, help="orders per deployment")
    args = parser.parse_args()
    store = f"sqlite:///{os.path.join(os.getcwd(), '.durable', 'blue-green.db')}"
    run = uuid.uuid4().hex[:4]

    blue = deploy("orders-blue", store, process_order_v1)
    green = None
    blue_running = True
    try:
        blue_ids = place_orders(blue, f"{run}-A", args.orders)
        print(f"orders-blue  (v1): started {', '.join(blue_ids)}")

        green = deploy("orders-green", store, process_order_v2)
        green_ids = place_orders(green, f"{run}-B", args.orders)
        print(f"orders-green (v2): deployed on the same store, took {', '.join(green_ids)}")

        print("draining orders-blue:")
        drain(blue)
        finished = [(blue, blue.client.get_status(iid)) for iid in blue_ids]
        blue.shutdown()
        blue_running = False
        print("orders-blue drained and shut down (its history stays in the store)")
        finished += [(green, green.client.wait_for_completion(i, timeout=120)) for i in green_ids]
        unknown = green.client.get_status(blue_ids[0]) is None
        print(f"orders-green knows nothing of {blue_ids[0]}: {unknown}")

        print(f"\n{'order':<10} {'hub':<13} {'status':<10} {'version':<8} charged")
        for rt, state in finished:
            out = state.output
            print(
                f"{state.instance_id:<10} {rt.config.hub:<13} {state.runtime_status!s:<10} "
                f"{out['version']:<8} {out['charged']:.2f}"
            )
    finally:
        if green is not None:
            green.shutdown()
        if blue_running:
            blue.shutdown()


if __name__ == "__main__":
    main()
