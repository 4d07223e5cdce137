"""Entities shared by the entity tests (imported by Ray workers)."""

from __future__ import annotations

from entities import EntityContext, EntityId, current_context, entity
from runtime import orchestrator


@entity
class Counter:
    def __init__(self):
        self.value = 0

    def add(self, amount: int) -> None:
        self.value += amount

    def get(self) -> int:
        return self.value

    def add_then_fail(self, amount: int) -> None:
        self.value += amount
        raise ValueError("rejected after changing state")

    def whoami(self) -> str:
        return str(current_context().entity_id)

    def forward(self, target: str) -> None:
        current_context().signal_entity(target, "add", self.value)

    def keep_unpicklable(self) -> None:
        import threading

        self.value = threading.Lock()


@entity(name="Account")
def account(ctx: EntityContext):
    balance = ctx.get_state(lambda: 0)
    if ctx.operation_name == "deposit":
        ctx.set_state(balance + ctx.get_input())
    elif ctx.operation_name == "withdraw":
        if ctx.get_input() > balance:
            raise ValueError("insufficient funds")
        ctx.set_state(balance - ctx.get_input())
    elif ctx.operation_name == "balance":
        ctx.set_result(balance)
    elif ctx.operation_name == "close":
        ctx.delete_state()
    else:
        raise ValueError(f"unknown operation {ctx.operation_name}")


@orchestrator
def counter_user(ctx, key):
    counter = EntityId("Counter", key)
    ctx.signal_entity(counter, "add", 5)
    ctx.signal_entity(counter, "add", 6)
    return (yield ctx.call_entity(counter, "get"))


@orchestrator
def transfer(ctx, args):
    source, target, amount = args
    with (yield ctx.lock(source, target)):
        balance = yield ctx.call_entity(source, "balance")
        if balance < amount:
            return False
        yield ctx.call_entity(source, "withdraw", amount)
        yield ctx.call_entity(target, "deposit", amount)
        return True


@orchestrator
def hold(ctx, entity):
    with (yield ctx.lock(entity)):
        yield ctx.call_entity(entity, "deposit", 1)
        ctx.set_custom_status("holding")
        yield ctx.wait_for_external_event("release")
    return "released"


class _Sleeper:
    """Leaves memory half a second after its last operation."""

    def __init__(self):
        self.value = 0

    def add(self, amount: int) -> None:
        self.value += amount

    def get(self) -> int:
        return self.value


@entity(placement="dedicated", passivate_after=0.5)
class Sleepy(_Sleeper):
    """Its own actor, which is retired when it passivates."""


@entity(placement="pooled", passivate_after=0.5)
class PooledSleepy(_Sleeper):
    """Shares a pool host, which stays."""


@orchestrator
def signal_then_end(ctx, args):
    """Signals in the step that ends each execution (issue: such signals were dropped)."""
    key, ending, n = args
    ctx.signal_entity(EntityId("Counter", key), "add", n)
    if ending == "failure":
        raise ValueError("failed after signalling")
    if ending == "continue_as_new" and n < 3:
        ctx.continue_as_new([key, ending, n + 1])
    return n


ALL = [Counter, account, counter_user, transfer, hold, Sleepy, PooledSleepy, signal_then_end]
