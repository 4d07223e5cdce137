"""Function chaining: an orchestrator calls activities one after another.

The Durable Functions "HelloCities" sample: greet Tokyo, Seattle and London in sequence
(London through the activity's registered name), then join the greetings.
Run from the repository root: ``python examples/chaining.py``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from runtime import OrchestrationContext, Runtime, Task, activity, orchestrator


@activity(name="SayHello")
def say_hello(city: str) -> str:
    """Greet one city."""
    return f"Hello {city}!"


@activity
def join_greetings(greetings: list[str]) -> str:
    """Join the greetings into one sentence."""
    return " ".join(greetings)


@orchestrator
def hello_cities(ctx: OrchestrationContext, cities: list[str]) -> Generator[Task, Any, str]:
    """Greet each city in order, then join the greetings."""
    tokyo = yield ctx.call_activity(say_hello, cities[0])
    seattle = yield ctx.call_activity(say_hello, cities[1])
    # By name: this works only because "SayHello" is registered with the hub (see main).
    london = yield ctx.call_activity("SayHello", cities[2])
    ctx.set_custom_status({"greeted": len(cities)})
    return (yield ctx.call_activity(join_greetings, [tokyo, seattle, london]))


def main() -> None:
    """Start the hub, run one chain and print its outcome."""
    rt = Runtime.start(hub="example-chaining", register=[say_hello, join_greetings])
    try:
        iid = rt.client.start_new(hello_cities, input=["Tokyo", "Seattle", "London"])
        state = rt.client.wait_for_completion(iid, timeout=120)
        print(f"instance:      {iid}")
        print(f"status:        {state.runtime_status}")
        print(f"custom status: {state.custom_status}")
        print(f"output:        {state.output}")
    finally:
        rt.shutdown()


if __name__ == "__main__":
    main()
