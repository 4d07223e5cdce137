"""Durable entity: a counter you signal and call from drivers and orchestrations.

``Counter`` is a plain class decorated with ``@entity``: its public methods are its
operations, and its instance is the state, committed after every operation. The driver
signals it (one-way: returns once the operation is durably applied), calls it (two-way:
returns the result), and starts an orchestration that signals and calls the same counter
durably. Operations on one entity run one at a time, in order per sender, so the
orchestration's ``get`` sees its own two ``add`` signals.
Run from the repository root: ``python examples/counter_entity.py``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from entities import EntityId, entity
from runtime import OrchestrationContext, Runtime, Task, orchestrator


@entity
class Counter:
    """A number that only goes up by ``add``, until ``reset``."""

    def __init__(self) -> None:
        self.value = 0

    def add(self, amount: int) -> None:
        """Add ``amount`` to the count."""
        self.value += amount

    def reset(self) -> None:
        """Set the count back to zero."""
        self.value = 0

    def get(self) -> int:
        """The current count."""
        return self.value


@orchestrator
def add_and_read(ctx: OrchestrationContext, key: str) -> Generator[Task, Any, int]:
    """Signal two additions to the counter, then call it for the count."""
    counter = EntityId("Counter", key)
    ctx.signal_entity(counter, "add", 5)
    ctx.signal_entity(counter, "add", 6)
    return (yield ctx.call_entity(counter, "get"))


def main(
    hub: str = "example-counter-entity",
    store: str | None = None,
    key: str = "example",
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Signal, call and orchestrate one counter; return what each step saw."""
    rt = Runtime.start(hub=hub, store=store, register=[Counter])
    client = rt.client
    counter = EntityId("Counter", key)
    try:
        # The store outlives the run: start from zero so every run prints the same.
        client.signal_entity(counter, "reset")
        for amount in range(1, 11):
            client.signal_entity(counter, "add", amount)
        after_signals = client.call_entity(counter, "get")
        print(f"{counter}")
        print(f"  after signals add(1) .. add(10): {after_signals}")

        iid = client.start_new(add_and_read, input=key)
        from_orchestration = client.wait_for_completion(iid, timeout=timeout).output
        print(f"  seen by an orchestration:        {from_orchestration}")

        client.call_entity(counter, "add", 100)
        state = client.read_entity_state(counter)
        value = state.entity_state.value if state.entity_exists else None
        print(f"  state read after call add(100):  {value}")
        return {
            "after_signals": after_signals,
            "orchestration_output": from_orchestration,
            "entity_exists": state.entity_exists,
            "state_value": value,
        }
    finally:
        rt.shutdown()


if __name__ == "__main__":
    main()
