"""Test helpers for users' own orchestrations: a hub clock you move by hand.

``Runtime.start(..., clock=ManualClock(start=...))`` makes the supervisor's timer service
and every ``ctx.current_utc_datetime`` follow the clock, in whatever process they run, so
a 72-hour timeout is tested in well under a second with the production timer code.

The clock lives in a small temporary file, removed when the process that created the clock
exits (or at ``close()``); copies in other processes never remove it.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from datetime import datetime, timedelta, timezone
from typing import Any

from ..actors.ray_seam import find_supervisor, get
from ..errors import ArgumentTypeError, InvalidArgumentError, InvalidOperationError


class ManualClock:
    """A clock shared by the processes of one machine; ``advance`` moves it for all."""

    def __init__(self, start: datetime | None = None) -> None:
        start = datetime.now(timezone.utc) if start is None else start
        if not isinstance(start, datetime):
            raise ArgumentTypeError.of("ManualClock(start)", "a timezone-aware datetime", start)
        if start.tzinfo is None:
            raise InvalidArgumentError.of("ManualClock(start)", "a timezone-aware datetime", start)
        # A file, not memory: hosts and the supervisor are other processes.
        fd, self.path = tempfile.mkstemp(prefix="durable-clock-")
        os.close(fd)
        self.hubs: list[str] = []
        self._last = start.timestamp()
        self._write(self._last)
        _created[self.path] = os.getpid()  # only the creator removes it: others hold copies

    def __call__(self) -> float:
        """Seconds since the epoch, as this clock tells it."""
        try:
            with open(self.path) as f:
                self._last = float(f.read())
        except FileNotFoundError:
            pass  # closed, or its creator exited: time stands where it was last seen
        return self._last

    def now(self) -> datetime:
        """The clock's time as an aware UTC datetime."""
        return datetime.fromtimestamp(self(), tz=timezone.utc)

    def advance(self, delta: timedelta) -> None:
        """Move time forward and let each attached hub fire the timers now due."""
        if not isinstance(delta, timedelta):
            raise ArgumentTypeError.of("ManualClock.advance(delta)", "a timedelta", delta)
        if delta < timedelta(0):
            raise InvalidArgumentError.of(
                "ManualClock.advance(delta)",
                "a timedelta of zero or more (time only moves forward)",
                delta,
            )
        if not os.path.exists(self.path):
            raise InvalidOperationError(
                "this ManualClock is closed (or the process that created it exited): "
                "it no longer moves"
            )
        self._write(self() + delta.total_seconds())
        for hub in self.hubs:
            supervisor = find_supervisor(hub)
            if supervisor is not None:
                get(supervisor.fire_timers())

    def close(self) -> None:
        """Remove the clock's file; the clock then stands still at its last time."""
        self._last = self()
        _created.pop(self.path, None)
        _remove(self.path)

    def attach(self, hub: str) -> None:
        """Called by Runtime.start: ``advance`` will wake this hub's timer service."""
        if hub not in self.hubs:
            self.hubs.append(hub)

    def _write(self, value: float) -> None:
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            f.write(repr(value))
        os.replace(tmp, self.path)

    def __reduce__(self) -> Any:
        return (_restore, (self.path, list(self.hubs), self._last))


def _restore(path: str, hubs: list[str], last: float) -> ManualClock:
    clock = ManualClock.__new__(ManualClock)
    clock.path, clock.hubs, clock._last = path, hubs, last
    return clock


#: Files of the clocks this process created and has not closed, with the creator's pid (a
#: forked child inherits the mapping but must leave its parent's clocks alone).
_created: dict[str, int] = {}


def _remove(path: str) -> None:
    for name in (path, f"{path}.tmp"):
        try:
            os.remove(name)
        except FileNotFoundError:
            pass


@atexit.register
def _remove_created() -> None:
    for path, pid in list(_created.items()):
        if pid == os.getpid():
            _remove(path)
