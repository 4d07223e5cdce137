"""What a client ships of the code it starts: each object once, a changed one again."""

from __future__ import annotations

from typing import Any

import runtime.driver.client
from runtime import orchestrator
from runtime.driver.client import DurableClient
from runtime.orchestration.engine import _takes_input

PURE = True


@orchestrator(name="wf")
def first(ctx: Any) -> int:
    """One definition of "wf"."""
    return 1


@orchestrator(name="wf")
def second(ctx: Any) -> int:
    """ "wf" defined anew: the same name, other code."""
    return 2


def test_an_object_is_pickled_once_and_one_defined_anew_is_shipped(monkeypatch):
    client = DurableClient("h", object())
    sent: list[list[tuple[str, ...]]] = []
    encoded: list[Any] = []
    real = runtime.driver.client.encode_code
    monkeypatch.setattr(client, "_call", lambda _method, items: sent.append(items))
    monkeypatch.setattr(
        runtime.driver.client, "encode_code", lambda obj: encoded.append(obj) or real(obj)
    )
    for _ in range(3):
        client.register(first)  # as start_new does on every call
    assert encoded == [first] and len(sent) == 1
    client.register(second)
    assert encoded == [first, second] and len(sent) == 2
    client.register(first)  # back to the first: its code is not the hub's latest any more
    assert len(sent) == 3 and sent[2][0][3] == sent[0][0][3]
    client.register(first)
    assert len(sent) == 3


def test_whether_an_orchestrator_takes_input_is_known_for_unhashable_callables_too():
    class Callable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, ctx: Any, value: int) -> int:
            return value

    assert _takes_input(Callable()) and _takes_input(lambda ctx, x: x)
    assert not _takes_input(lambda ctx: 1)
