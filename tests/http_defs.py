"""Orchestrators, activities and an entity for the HTTP API tests (imported by Ray workers)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from entities import EntityContext, entity
from runtime import activity, orchestrator


def unwrap(value: Any) -> Any:
    """Decode what the official Python client sends: JSON text inside a JSON string."""
    return json.loads(value) if isinstance(value, str) else value


@dataclass
class Point:
    x: int
    y: int


@activity
def greet(name: str) -> str:
    return f"Hello {name}!"


@orchestrator
def hello_http(ctx, names):
    greetings = []
    for name in names:
        greetings.append((yield ctx.call_activity(greet, name)))
    ctx.set_custom_status({"greeted": len(names)})
    return greetings


@orchestrator
def wait_approval(ctx, request):
    approval = yield ctx.wait_for_external_event("Approve")
    return {"request": request, "approval": approval}


@orchestrator
def fails(ctx, message):
    raise ValueError(message)


@orchestrator
def odd_output(ctx, _):
    """An output JSON cannot show as is: tuples, sets, complex numbers, bytes, a dataclass."""
    return {"tuple": (1, 2), "set": {3}, "complex": 1 + 2j, "bytes": b"x", "point": Point(1, 2)}


@orchestrator
def sdk_sum(ctx, payload):
    """Add the numbers of an event to the input's ``a`` (as sent by the official client)."""
    start = unwrap(payload)
    event = yield ctx.wait_for_external_event("Add")
    return start["a"] + unwrap(event)


@entity(name="HttpCounter")
def http_counter(ctx: EntityContext):
    value = ctx.get_state(lambda: 0)
    if ctx.operation_name == "add":
        ctx.set_state(value + unwrap(ctx.get_input()))
    elif ctx.operation_name == "set":
        ctx.set_state(ctx.get_input())
    elif ctx.operation_name == "delete":
        ctx.delete_state()
    else:
        raise ValueError(f"unknown operation {ctx.operation_name}")


@entity(name="HttpTally")
class HttpTally:
    """A class entity: its public methods are its only operations."""

    def __init__(self):
        self.total = 0

    def add(self, amount):
        self.total += unwrap(amount)

    def get(self):
        return self.total


ALL = [greet, hello_http, wait_approval, fails, odd_output, sdk_sum, http_counter, HttpTally]
