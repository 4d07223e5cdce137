"""The app of ``durable serve --app serve_app`` in test_serve.py (imported by Ray workers)."""

from __future__ import annotations

from entities import entity
from runtime import activity, orchestrator


@activity
def serve_greet(name: str) -> str:
    return f"Hello {name}!"


@orchestrator
def serve_hello(ctx, names):
    greetings = []
    for name in names:
        greetings.append((yield ctx.call_activity(serve_greet, name)))
    return greetings


@orchestrator
def serve_wait(ctx, request):
    approval = yield ctx.wait_for_external_event("Approve")
    return {"request": request, "approval": approval}


@entity
class ServeTally:
    def __init__(self):
        self.total = 0

    def add(self, amount: int) -> None:
        self.total += amount
