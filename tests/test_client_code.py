"""A client's own logic, without a hub: the code it ships (each object once, a changed one
again) and the pipelines that carry many calls per Ray call."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import runtime.driver.client
from runtime import orchestrator
from runtime.driver.client import DurableClient, _Pipeline
from runtime.errors import InternalError
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


def test_a_pipeline_sends_no_cancelled_call_and_outlives_a_wrong_answer(monkeypatch):
    client = DurableClient("h", object())
    gate, entered = threading.Event(), threading.Event()
    sent: list[list[str]] = []
    answers = iter([lambda items: [f"ok-{i}" for i in items], lambda items: []] * 2)

    def call(_method: Any, items: list[str]) -> list[str]:
        entered.set()
        gate.wait(10)
        sent.append(items)
        return next(answers)(items)

    monkeypatch.setattr(client, "_call", call)
    pipeline = _Pipeline(client, lambda handle, items: None, "test-pipeline")
    first = pipeline.add("a")
    assert entered.wait(10)  # "a" is on its way: the next ones queue behind it
    cancelled, third = pipeline.add("b"), pipeline.add("c")
    assert cancelled.cancel()
    gate.set()
    assert first.result(10) == "ok-a"
    with pytest.raises(InternalError, match="1 items"):
        third.result(10)  # the answer was one short: this batch fails, not the thread
    assert pipeline.add("d").result(10) == "ok-d"
    assert sent == [["a"], ["c"], ["d"]]
