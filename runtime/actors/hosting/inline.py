"""Inline activities: run in the host's own process, on a bounded pool of its threads.

No Ray task, no worker process, no object store: the host calls the function and commits
its result as it commits a dispatched activity's, before the orchestration sees it. The
host's event loop never waits on one: each runs on a thread of the pool, at most
``INLINE_THREADS`` at once per host, the rest queued. One that runs past its timeout fails
with ``ActivityTimeoutError``; Python cannot stop a thread, so it is abandoned (logged,
counted) and its pool slot given to the next, while the thread itself runs on until its
function returns. One that was still waiting for a thread when its time ran out never
runs.

The input is a copy (unpickled from the history's form) and so is the result, so the
function and the orchestration see the same values as with a dispatched activity or a
replay, and a result that cannot be stored fails the activity, not the instance.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ... import logs, metrics
from ...errors import ActivityTimeoutError, DurableError, InlinePoolExhaustedError
from ...registry import Activity
from ...serialization import dumps, failure_of, loads
from .poison import Work

log = logging.getLogger("ray_durable.host")

#: Inline activities one host runs at once; more wait for a free thread.
INLINE_THREADS = 8
#: Threads of timed-out activities a host keeps room for beside its pool; while that many
#: still run, new inline activities fail at once with InlinePoolExhaustedError.
MAX_ABANDONED = 32


class InlineRunner:
    """A host's pool for inline activities; ``on_running`` tells the crash marker what runs.

    Its threads name the activity they start and end in the marker (under a lock: the
    marker's inline region has several writers), so a host that dies blames exactly the
    inline activities that were running, never one still waiting for a thread.
    """

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
        self._lock = threading.Lock()
        #: activities that ran past their timeout, and of those, the threads still running
        self.abandoned = 0
        self.stuck = 0

    @property
    def idle(self) -> bool:
        """No inline activity runs, not even one given up on."""
        with self._lock:
            return not self._running and self.stuck == 0

    async def run(
        self,
        activity: Activity,
        input: Any,
        timeout: float,
        work: Work,
        wanted: Callable[[], bool] = lambda: True,
    ) -> tuple[bool, Any]:
        """Run ``activity`` on ``input`` within ``timeout`` seconds: (True, result) or
        (False, failure). ``work`` names it in the crash marker; ``wanted`` is asked once
        a thread is free (an ended execution's activity is not run)."""
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
            if not wanted():
                return False, failure_of(DurableError("not run: its execution has ended"))
            if self.stuck >= MAX_ABANDONED:
                return False, failure_of(InlinePoolExhaustedError(activity.name, self.stuck))
            call = _Call(activity, blob, work)
            future = asyncio.get_running_loop().run_in_executor(self._pool, self._call, call)
            try:
                return await asyncio.wait_for(asyncio.shield(future), timeout)
            except asyncio.TimeoutError:
                self._abandon(call, future, timeout, work.target)
                return False, failure_of(ActivityTimeoutError(activity.name, timeout))

    def _call(self, call: _Call) -> tuple[bool, Any]:
        """On a pool thread: mark, run, unmark (a call given up before it started: skip)."""
        with self._lock:
            if call.given_up:
                return False, None
            self._next += 1
            token = self._next
            self._running[token] = call.work
            self._tell()
        try:
            return _run(call.activity, call.blob)
        finally:
            with self._lock:
                del self._running[token]
                self._tell()

    def _tell(self) -> None:
        if self._on_running is not None:
            self._on_running(list(self._running.values()))

    def _abandon(self, call: _Call, future: asyncio.Future, timeout: float, iid: str) -> None:
        with self._lock:
            call.given_up = True  # if no thread has taken it yet, none will run it
        self.abandoned += 1
        self.stuck += 1

        def returned(_: asyncio.Future) -> None:
            self.stuck -= 1

        future.add_done_callback(returned)
        logs.event(
            log,
            logging.WARNING,
            "inline activity timed out; its thread is abandoned and runs on",
            hub=self.hub,
            instance_id=iid,
            activity=call.activity.name,
            timeout=timeout,
            stuck=self.stuck,
        )
        metrics.inc("inline_activities_abandoned", {"hub": self.hub})


@dataclass
class _Call:
    activity: Activity
    blob: bytes
    work: Work
    given_up: bool = False


def _run(activity: Activity, blob: bytes) -> tuple[bool, Any]:
    """One call on a pool thread: (True, result) or (False, failure details)."""
    try:
        result = activity.run(loads(blob, f"input of activity {activity.name}"))
        return True, loads(dumps(result, f"result of activity {activity.name}"))
    except BaseException as exc:  # SystemExit too: on a thread, it must not reach the loop
        return False, failure_of(exc)
