"""GroupCommit: callers that write at the same time share one write (pure: no Ray)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from helpers import event_loop

from runtime.actors.supervision.group_commit import GroupCommit
from runtime.errors import DurableError, StoreUnavailableError

PURE = True


class Refused(DurableError):
    pass


def test_callers_that_arrive_during_a_write_share_the_next_one_each_with_its_outcome():
    batches: list[list[int]] = []
    release = threading.Event()

    def write(items: Sequence[int]) -> list[int | DurableError]:
        if not batches:
            release.wait(5)  # the first write is slow: the others gather behind it
        batches.append(list(items))
        return [Refused(f"odd {n}") if n % 2 else n * 10 for n in items]

    group = GroupCommit(write)

    async def main() -> list[object]:
        first = asyncio.ensure_future(group(0))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(group(n)) for n in range(1, 6)]
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    with event_loop() as loop:
        answers = loop.run_until_complete(main())
    assert batches == [[0], [1, 2, 3, 4, 5]]
    assert answers[0] == 0 and answers[2] == 20 and answers[4] == 40
    assert [str(a) for a in answers[1::2]] == ["odd 1", "odd 3", "odd 5"]


def test_a_write_that_fails_fails_its_whole_batch_and_the_next_caller_writes_again():
    calls: list[Sequence[str]] = []

    def write(items: Sequence[str]) -> list[str | DurableError]:
        calls.append(items)
        if len(calls) == 1:
            raise StoreUnavailableError("sqlite:///hub.db", 0.0, "the database went away")
        return list(items)

    group = GroupCommit(write)
    with event_loop() as loop:
        with pytest.raises(StoreUnavailableError):
            loop.run_until_complete(group("a"))
        assert loop.run_until_complete(group("b")) == "b"
    assert calls == [["a"], ["b"]]
