"""An app module for ``durable serve --app cli_app`` in the CLI tests (imported by Ray workers)."""

from __future__ import annotations

from entities import Entity, entity
from runtime import Activity, activity, orchestrator


@activity
def shout(text: str) -> str:
    return text.upper() + "!"


@orchestrator
def cli_app_flow(ctx, text):
    return (yield ctx.call_activity(shout, text))


@entity
class Tally:
    def __init__(self):
        self.total = 0

    def add(self, amount: int) -> None:
        self.total += amount


# The classes themselves carry ``kind`` too; serve must register instances only.
EXPORTED_TYPES = (Activity, Entity)
