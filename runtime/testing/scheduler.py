"""The test environment's loop: work in arrival order, timers by time, a clock that skips.

Everything runs in the caller's thread, one piece of work at a time, so a test is
deterministic. Time stands still while there is work; it moves only when a caller asks to
wait (``run(..., skip=True)``: it jumps to the next due timer when nothing else can run)
or to ``advance``.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from datetime import datetime

from ..errors import DurableError


class NoProgressError(DurableError):
    """A test waits for something that nothing in the environment can bring about."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class StepLimitError(DurableError):
    """The environment ran more steps than its limit: most likely a loop that never waits."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit

    def __str__(self) -> str:
        return (
            f"the test environment ran {self.limit} steps without reaching what the test "
            "waits for: an orchestration or entity most likely loops without end (an eternal "
            "orchestration on a timer: wait for something else, or raise max_steps)"
        )


_Timer = tuple[datetime, int, Callable[[], bool], Callable[[], None]]


class Scheduler:
    """Soon-work in FIFO order and timers in time order, under a time-skipping clock."""

    def __init__(self, start: datetime, max_steps: int) -> None:
        self.now = start
        self.max_steps = max_steps
        self._soon: deque[Callable[[], None]] = deque()
        self._timers: list[_Timer] = []
        self._order = itertools.count()
        self._steps = 0

    def call_soon(self, work: Callable[[], None]) -> None:
        """Run ``work`` after the work queued before it."""
        self._soon.append(work)

    def call_at(self, when: datetime, work: Callable[[], None], alive: Callable[[], bool]) -> None:
        """Run ``work`` once the clock reaches ``when``, if ``alive()`` still holds then."""
        heapq.heappush(self._timers, (when, next(self._order), alive, work))

    def count_step(self) -> None:
        """Count work done inside one piece of work (a chain of continue-as-new)."""
        self._steps += 1
        if self._steps > self.max_steps:
            raise StepLimitError(self.max_steps)

    def next_timer(self) -> datetime | None:
        """When the next timer that still matters is due (timers of ended executions drop)."""
        while self._timers and not self._timers[0][2]():
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def run_until_idle(self) -> None:
        """Run queued work and the timers due now, never moving the clock."""
        self._steps = 0
        self._drain()

    def run(self, done: Callable[[], bool], skip: bool, deadline: datetime | None = None) -> bool:
        """Work until ``done()``; with ``skip``, jump to each next timer when idle.

        False when nothing is left to run (or the next timer is past ``deadline``, where the
        clock then stands) and ``done()`` still does not hold.
        """
        self._steps = 0
        self._drain()
        while not done():
            due = self.next_timer() if skip else None
            if due is None:
                return False
            if deadline is not None and due > deadline:
                self.now = max(self.now, deadline)
                return False
            self.now = max(self.now, due)
            self._drain()
        return True

    def advance_to(self, when: datetime) -> None:
        """Move the clock to ``when``, firing each timer due on the way at its own time."""
        self._steps = 0
        self._drain()
        while (due := self.next_timer()) is not None and due <= when:
            self.now = max(self.now, due)
            self._drain()
        self.now = max(self.now, when)

    def _drain(self) -> None:
        while True:
            while self._timers and self._timers[0][0] <= self.now:
                _, _, alive, work = heapq.heappop(self._timers)
                if alive():
                    self._soon.append(work)
            if not self._soon:
                return
            self.count_step()
            self._soon.popleft()()
