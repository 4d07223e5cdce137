"""Orchestrations and entities of the multi-node tests (imported by Ray workers)."""

from __future__ import annotations

import time

import ray

from entities import entity
from runtime import activity, orchestrator


@activity
def where(seconds: float) -> str:
    """The node this activity ran on, after keeping its CPU busy for a while."""
    time.sleep(seconds)
    return str(ray.get_runtime_context().get_node_id())


@orchestrator
def spread_out(ctx, n: int):
    nodes = yield ctx.task_all([ctx.call_activity(where, 0.5) for _ in range(n)])
    return sorted(set(nodes))


@activity
def step(args: tuple[int, float]) -> int:
    value, seconds = args
    time.sleep(seconds)
    return value + 1


@orchestrator
def slow_chain(ctx, args: tuple[int, float]):
    steps, seconds = args
    value = 0
    for _ in range(steps):
        value = yield ctx.call_activity(step, (value, seconds))
    return value


@orchestrator
def slow_fan_out(ctx, args: tuple[int, float]):
    n, seconds = args
    values = yield ctx.task_all([ctx.call_activity(step, (i, seconds)) for i in range(n)])
    return sum(values)


@orchestrator
def wait_for_go(ctx, _):
    value = yield ctx.wait_for_external_event("go")
    return value


class TallyState:
    def __init__(self):
        self.value = 0

    def add(self, amount: int) -> None:
        self.value += amount

    def get(self) -> int:
        return self.value

    def node(self) -> str:
        return str(ray.get_runtime_context().get_node_id())


Tally = entity(name="Tally")(TallyState)
#: A dedicated entity that lives only where a "zone" resource is.
ZoneTally = entity(name="ZoneTally", placement="dedicated", resources={"zone": 0.01})(TallyState)

ALL = [where, spread_out, step, slow_chain, slow_fan_out, wait_for_go, Tally, ZoneTally]
