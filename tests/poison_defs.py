"""Work that kills its own host while a flag file exists (imported by Ray workers)."""

from __future__ import annotations

import os

from workflows import inc

from entities import entity
from runtime import EntityId, TaskFailedError, orchestrator


def _die_if(flag: str) -> None:
    if os.path.exists(flag):
        os._exit(1)  # the whole host process, as a segfault in a C extension would


@orchestrator
def poison_step(ctx, flag: str):
    """Kills its host at its second step, on every replay, while ``flag`` exists."""
    first = yield ctx.call_activity(inc, 1)
    _die_if(flag)
    second = yield ctx.call_activity(inc, first)
    return second


@entity
class Bomb:
    def __init__(self):
        self.value = 0

    def explode(self, flag: str) -> None:
        _die_if(flag)
        self.value += 100

    def add(self, amount: int) -> None:
        self.value += amount

    def get(self) -> int:
        return self.value


@orchestrator
def calls_bomb(ctx, args):
    """Calls the poison operation and reports how it failed: the orchestration goes on."""
    key, flag = args
    try:
        yield ctx.call_entity(EntityId("Bomb", key), "explode", flag)
    except TaskFailedError as exc:
        after = yield ctx.call_entity(EntityId("Bomb", key), "get")
        return exc.details.error_type, after
    return "exploded", None


ALL = [poison_step, Bomb, calls_bomb]
