"""Test helpers for users' own orchestrations: a hub clock you move by hand.

``Runtime.start(..., clock=ManualClock(start=...))`` makes the supervisor's timer service
and every ``ctx.current_utc_datetime`` follow the clock, in whatever process they run, so
a 72-hour timeout is tested in well under a second with the production timer code.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta, timezone
from typing import Any

import ray

from .routing import NAMESPACE
from .supervisor import supervisor_name


class ManualClock:
    """A clock shared by the processes of one machine; ``advance`` moves it for all."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(timezone.utc)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        # A file, not memory: hosts and the supervisor are other processes.
        fd, self.path = tempfile.mkstemp(prefix="durable-clock-")
        os.close(fd)
        self.hubs: list[str] = []
        self._write(start.timestamp())

    def __call__(self) -> float:
        """Seconds since the epoch, as this clock tells it."""
        with open(self.path) as f:
            return float(f.read())

    def now(self) -> datetime:
        """The clock's time as an aware UTC datetime."""
        return datetime.fromtimestamp(self(), tz=timezone.utc)

    def advance(self, delta: timedelta) -> None:
        """Move time forward and let each attached hub fire the timers now due."""
        if delta < timedelta(0):
            raise ValueError("time only moves forward")
        self._write(self() + delta.total_seconds())
        for hub in self.hubs:
            supervisor = ray.get_actor(supervisor_name(hub), namespace=NAMESPACE)
            ray.get(supervisor.fire_timers.remote())

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
        return (_restore, (self.path, list(self.hubs)))


def _restore(path: str, hubs: list[str]) -> ManualClock:
    clock = ManualClock.__new__(ManualClock)
    clock.path, clock.hubs = path, hubs
    return clock
