"""The hub's durable timers: fired from the store, whatever process created them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timezone

from ... import metrics
from ...orchestration import history as h
from ...orchestration.codec import encode_event
from ...orchestration.status import OrchestrationStatus
from ...store import Store

#: The longest the service sleeps without looking at the store (seconds).
MAX_TIMER_SLEEP_SECONDS = 60.0


class TimerService:
    """Turns due timers into TimerFired messages, in one store transaction per round."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float],
        poke: Callable[[str, str], None],
        tags: dict[str, str],
    ) -> None:
        self.store = store
        self.clock = clock
        self.poke = poke
        self._tags = tags
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A timer was created or the clock moved: look again now."""
        self._wake.set()

    def fire_due(self) -> None:
        """Fire every timer due now; a timer of an execution that is gone just drops."""
        due = self.store.due_timers(self.clock())
        if not due:
            return
        messages: list[bytes | None] = []
        targets = set()
        for timer in due:
            record = self.store.load_instance(timer.instance_id)
            live = (
                record is not None
                and record.execution_id == timer.execution_id
                and not OrchestrationStatus(record.status).is_terminal
            )
            fire_at = datetime.fromtimestamp(timer.fire_at, tz=timezone.utc)
            messages.append(encode_event(h.TimerFired(timer.seq, fire_at)) if live else None)
            if live and record is not None and record.host:
                targets.add((record.host, timer.instance_id))
        self.store.fire_timers(due, messages)
        for host, instance_id in targets:
            self.poke(host, instance_id)

    def round(self) -> float:
        """Fire what is due; returns how long to sleep before the next timer is due."""
        self._wake.clear()  # before looking: a timer created meanwhile wakes the next sleep
        self.fire_due()
        pending, nxt = self.store.timer_stats()
        metrics.set_gauge("pending_timers", self._tags, pending)
        if nxt is None:
            return MAX_TIMER_SLEEP_SECONDS
        return max(0.0, min(MAX_TIMER_SLEEP_SECONDS, nxt - self.clock()))

    async def sleep(self, seconds: float) -> None:
        """Sleep until ``seconds`` pass or someone wakes the service."""
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass
