"""Workflows for re-delivery tests (imported by Ray workers)."""

from __future__ import annotations

from workflows import chain

from entities import current_context, entity
from runtime import EntityId, TaskFailedError, orchestrator


@orchestrator
def generations(ctx, n):
    """Calls a child under the default child id (the same in every execution), then goes on
    as a new execution: each execution must get a child run of its own."""
    out = yield ctx.call_sub_orchestrator(chain, n)
    if n > 0:
        ctx.continue_as_new(n - 1)
        return None
    return out


@entity
class Launcher:
    def __init__(self):
        self.started: list[str] = []

    def launch(self, x: int) -> str:
        iid = current_context().start_new_orchestration(chain, x)
        self.started.append(iid)
        return iid


ALL = [generations, Launcher]


@orchestrator
def locks_unknown(ctx, _):
    """Locks an entity whose type is not registered: the lock fails, and says why."""
    try:
        with (yield ctx.lock(EntityId("Nope", "a"), EntityId("Launcher", "l"))):
            return "locked"
    except TaskFailedError as exc:
        locked = yield ctx.call_entity(EntityId("Launcher", "l"), "launch", 1)
        return exc.details.error_type, bool(locked)


ALL.append(locks_unknown)


@orchestrator
def two_events(ctx, _):
    """The values of two external events, in arrival order."""
    first = yield ctx.wait_for_external_event("e")
    second = yield ctx.wait_for_external_event("e")
    return [first, second]


ALL.append(two_events)
