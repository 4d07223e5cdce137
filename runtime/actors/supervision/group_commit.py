"""Group commit: callers that write at the same time share one store transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from ...errors import DurableError

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class GroupCommit(Generic[Item, Outcome]):
    """Batches the items of concurrent callers into one ``write`` run off the event loop.

    No timer: a batch is whatever arrived while the previous write ran, so a lone caller
    waits for one transaction, as it would alone, and a burst of a thousand starts pays for
    a few fsyncs instead of a thousand (the loop stays free to take them meanwhile).
    ``write`` returns one outcome per item, a ``DurableError`` for an item it refused; an
    exception it raises fails the whole batch (nothing of it was committed).
    """

    def __init__(self, write: Callable[[Sequence[Item]], Sequence[Outcome | DurableError]]):
        self._write = write
        self._waiting: list[tuple[Item, asyncio.Future[Outcome]]] = []
        self._writing = False

    async def __call__(self, item: Item) -> Outcome:
        """Write ``item`` with whatever else is waiting; its own outcome, or its error."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._writing:
            self._writing = True
            asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    outcomes = await loop.run_in_executor(
                        None, self._write, [item for item, _ in batch]
                    )
                except Exception as exc:
                    outcomes = [exc] * len(batch)  # type: ignore[list-item]
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue  # its caller was cancelled; the write stands
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._writing = False
