"""Inline activities: run in the host's own process, on a bounded pool of its threads.

No Ray task, no worker process, no object store: the host calls the function and commits
its result as it commits a dispatched activity's, before the orchestration sees it. The
host's event loop never waits on one: each runs on a thread of the pool, at most
``INLINE_THREADS`` at once per host, the rest queued. One that runs past its timeout fails
with ``ActivityTimeoutError``; Python cannot stop a thread, so it is abandoned (logged,
counted) and its pool slot given to the next, while the thread itself runs on until its
function returns.

The input is a copy (unpickled from the history's form) and so is the result, so the
function and the orchestration see the same values as with a dispatched activity or a
replay, and a result that cannot be stored fails the activity, not the instance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ... import logs, metrics
from ...errors import ActivityTimeoutError
from ...registry import Activity
from ...serialization import dumps, failure_of, loads
from .poison import Work

log = logging.getLogger("ray_durable.host")

#: Inline activities one host runs at once; more wait for a free thread.
INLINE_THREADS = 8
#: Threads of timed-out activities a host keeps room for beside its pool; past that, new
#: inline activities wait behind them (the host logs each one abandoned).
MAX_ABANDONED = 32


def _run(activity: Activity, blob: bytes) -> tuple[bool, Any]:
    """One call on a pool thread: (True, result) or (False, failure details)."""
    try:
        result = activity.run(loads(blob, f"input of activity {activity.name}"))
        return True, loads(dumps(result, f"result of activity {activity.name}"))
    except Exception as exc:
        return False, failure_of(exc)


class InlineRunner:
    """A host's pool for inline activities; ``running`` tells the crash marker what runs."""

    def __init__(
        self,
        hub: str,
        on_running: Callable[[list[Work]], None] | None = None,
        threads: int = INLINE_THREADS,
    ) -> None:
        self.hub = hub
        self._on_running = on_running
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._running: dict[int, Work] = {}
        self._next = 0
        self.abandoned = 0

    async def run(
        self, activity: Activity, input: Any, timeout: float, iid: str
    ) -> tuple[bool, Any]:
        """Run ``activity`` on ``input`` within ``timeout`` seconds, for instance ``iid``."""
        try:
            blob = dumps(input, f"input of activity {activity.name}")
        except Exception as exc:
            return False, failure_of(exc)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self._threads + MAX_ABANDONED, thread_name_prefix="inline-activity"
            )
            self._slots = asyncio.Semaphore(self._threads)
        assert self._slots is not None
        async with self._slots:
            token = self._started(Work("orchestration", iid, f"inline activity {activity.name}"))
            future = asyncio.get_running_loop().run_in_executor(self._pool, _run, activity, blob)
            future.add_done_callback(lambda _: self._ended(token))
            try:
                return await asyncio.wait_for(asyncio.shield(future), timeout)
            except asyncio.TimeoutError:
                self._abandon(activity.name, iid, timeout)
                return False, failure_of(ActivityTimeoutError(activity.name, timeout))

    # Both on the host's event loop: the marker is written by one thread only.
    def _started(self, work: Work) -> int:
        self._next += 1
        self._running[self._next] = work
        self._tell()
        return self._next

    def _ended(self, token: int) -> None:
        if self._running.pop(token, None) is not None:
            self._tell()

    def _tell(self) -> None:
        if self._on_running is not None:
            self._on_running(list(self._running.values()))

    def _abandon(self, name: str, iid: str, timeout: float) -> None:
        self.abandoned += 1
        logs.event(
            log,
            logging.WARNING,
            "inline activity timed out; its thread is abandoned and runs on",
            hub=self.hub,
            instance_id=iid,
            activity=name,
            timeout=timeout,
            abandoned=self.abandoned,
        )
        metrics.inc("inline_activities_abandoned", {"hub": self.hub})

    def close(self) -> None:
        """Stop taking work; running threads are not waited for."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
