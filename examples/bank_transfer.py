"""Bank transfers: function-based entities and a critical section across two of them.

Each account is an ``Account`` entity written as a function of its context. A transfer is
an orchestration that locks both accounts (``with (yield ctx.lock(src, dst)):``), checks
the balance, withdraws and deposits; no other operation can touch either account in
between, so concurrent transfers never lose or create money. Locks are taken in one
global order, so two transfers over the same pair cannot deadlock. ``main`` runs many
random transfers at once between a few accounts and checks that the total is conserved.
Run from the repository root: ``python examples/bank_transfer.py``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Generator
from typing import Any

from entities import EntityContext, EntityId, entity
from runtime import OrchestrationContext, Runtime, Task, orchestrator

OPENING_BALANCE = 100


@entity(name="Account")
def account(ctx: EntityContext) -> None:
    """An account balance: ``deposit``, ``withdraw`` (never below zero), ``balance``."""
    balance = ctx.get_state(lambda: 0)
    amount = ctx.get_input()
    if ctx.operation_name == "deposit":
        ctx.set_state(balance + amount)
    elif ctx.operation_name == "withdraw":
        if amount > balance:
            raise ValueError(f"insufficient funds: {amount} > {balance}")
        ctx.set_state(balance - amount)
    elif ctx.operation_name == "balance":
        ctx.set_result(balance)
    else:
        raise ValueError(f"unknown operation {ctx.operation_name!r}")


@orchestrator
def transfer(ctx: OrchestrationContext, order: dict[str, Any]) -> Generator[Task, Any, bool]:
    """Move ``amount`` from ``source`` to ``target`` if it is covered; True if it moved."""
    source, target, amount = order["source"], order["target"], order["amount"]
    with (yield ctx.lock(source, target)):
        # Inside the lock the balance cannot change between this read and the withdrawal.
        balance = yield ctx.call_entity(source, "balance")
        if balance < amount:
            return False
        yield ctx.call_entity(source, "withdraw", amount)
        yield ctx.call_entity(target, "deposit", amount)
        return True


def random_orders(accounts: list[str], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` transfers between distinct random accounts, some larger than a balance."""
    rng = random.Random(seed)
    orders = []
    for _ in range(n):
        source, target = rng.sample(accounts, 2)
        orders.append({"source": source, "target": target, "amount": rng.randint(1, 80)})
    return orders


def main(
    hub: str = "example-bank-transfer",
    store: str | None = None,
    accounts: int = 5,
    transfers: int = 50,
    seed: int = 7,
    pool_size: int = 2,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Run concurrent random transfers; return balances and totals before and after."""
    # Pooled: 50 transfers and 5 accounts share a couple of host actors.
    rt = Runtime.start(
        hub=hub, store=store, placement="pooled", pool_size=pool_size, register=[account]
    )
    client = rt.client
    ids = [str(EntityId("Account", f"acct-{i}")) for i in range(accounts)]
    try:
        for acct in ids:
            # The store outlives the run: open each account once, keep later balances.
            if not client.read_entity_state(acct).entity_exists:
                client.signal_entity(acct, "deposit", OPENING_BALANCE)
        before = {acct: client.call_entity(acct, "balance") for acct in ids}

        started = time.perf_counter()
        instances = [
            client.start_new(transfer, input=o) for o in random_orders(ids, transfers, seed)
        ]
        outcomes = [client.wait_for_completion(i, timeout=timeout) for i in instances]
        elapsed = time.perf_counter() - started

        after = {acct: client.call_entity(acct, "balance") for acct in ids}
        statuses: dict[str, int] = {}
        for o in outcomes:
            statuses[str(o.runtime_status)] = statuses.get(str(o.runtime_status), 0) + 1
        moved = sum(o.output is True for o in outcomes)
        refused = sum(o.output is False for o in outcomes)

        print(f"{transfers} concurrent transfers between {accounts} accounts in {elapsed:.2f} s")
        print(f"  statuses:  {statuses}")
        print(f"  moved:     {moved}, refused for insufficient funds: {refused}")
        for acct in ids:
            print(f"  {acct}: {before[acct]:>4} -> {after[acct]:>4}")
        total_before, total_after = sum(before.values()), sum(after.values())
        verdict = "conserved" if total_before == total_after else "NOT conserved"
        print(f"  total:     {total_before} -> {total_after} ({verdict})")
        return {
            "statuses": statuses,
            "moved": moved,
            "refused": refused,
            "before": before,
            "after": after,
            "total_before": total_before,
            "total_after": total_after,
            "elapsed": elapsed,
        }
    finally:
        rt.shutdown()


if __name__ == "__main__":
    main()
