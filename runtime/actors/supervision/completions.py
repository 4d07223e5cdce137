"""Who waits for which instance to end, and what hosts report when one does."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from ...config import HubConfig
from ...errors import InstanceNotFoundError
from ...orchestration.status import OrchestrationStatus
from ...store import HubOverview, InstanceQuery, InstanceRecord, Store
from ..ray_seam import HostNotCreated
from .pool import HostPool

#: The longest a waiter trusts the hosts' reports before it reads the store again (seconds).
RECHECK_SECONDS = 5.0
#: How long the overview waits for a host's count of activities in flight.
ASK_SECONDS = 1.0


class Completions:
    """Answers readers; wakes waiters when a host reports an end (the store decides)."""

    def __init__(self, config: HubConfig, store: Store, pool: HostPool) -> None:
        self.config = config
        self.store = store
        self.pool = pool
        self.waiters: dict[str, list[asyncio.Future[None]]] = {}

    async def instance_done(
        self,
        instance_id: str,
        status: str,
        parent_id: str | None = None,
        host: str | None = None,
        reusable: bool = False,
    ) -> None:
        """An instance reached a terminal status; ``host``: the dedicated host that says so
        (``reusable``: it may serve the next instance)."""
        for future in self.waiters.pop(instance_id, []):
            if not future.done():
                future.set_result(None)
        if parent_id is not None:
            self.pool.poke_instance(parent_id)
        if self.config.placement == "dedicated":
            if host is None:  # not the host's own word: the host the store names now
                record = self.store.load_instance(instance_id)
                host = None if record is None else record.host
            if host:
                self.pool.recycle(host, reusable)

    async def wait(self, instance_id: str, timeout: float | None) -> InstanceRecord | None:
        """The instance once terminal; None if ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            future = asyncio.get_event_loop().create_future()
            self.waiters.setdefault(instance_id, []).append(future)
            record = self.store.load_instance(instance_id)
            if record is None:
                raise InstanceNotFoundError(instance_id)
            if OrchestrationStatus(record.status).is_terminal:
                return record
            left = RECHECK_SECONDS if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return None
            # The re-check covers a host that died between its commit and its report.
            try:
                await asyncio.wait_for(future, min(left, RECHECK_SECONDS))
            except asyncio.TimeoutError:
                pass

    async def get_status(
        self, instance_id: str, show_history: bool = False
    ) -> tuple[InstanceRecord | None, list[bytes] | None]:
        """The instance row, and its history if asked."""
        record = self.store.load_instance(instance_id)
        history = self.store.load_history(instance_id) if record and show_history else None
        return record, history

    async def query(self, query: InstanceQuery) -> list[InstanceRecord]:
        """Instances matching a query."""
        return self.store.query(query)

    async def overview(self, window: float, ask_hosts: bool = True) -> HubOverview:
        """The store's counts for the dashboard, with per-minute rates over ``window`` s;
        every host this supervisor runs is listed, idle ones with 0. ``ask_hosts``: one
        call to each host for its activities in flight (a dedicated hub has a host per
        running instance: pages that do not show them pass False)."""
        ov = self.store.overview(time.time() - window)
        hosts = {name: 0 for name in self.pool.hosts}
        in_flight = await self._in_flight() if ask_hosts else {}
        return dataclasses.replace(
            ov, live_by_host={**hosts, **ov.live_by_host}, in_flight_by_host=in_flight
        )

    async def _in_flight(self) -> dict[str, int | None]:
        """Each host's activities in flight, asked of all at once; None: no answer in time."""

        async def ask(handle: Any) -> int | None:
            try:
                return int(await asyncio.wait_for(handle.activities_in_flight(), ASK_SECONDS))
            except Exception:
                return None  # restarting, or busy: the page says so rather than wait

        names = list(self.pool.hosts)
        counts = await asyncio.gather(*(ask(self.pool.hosts[n]) for n in names))
        return dict(zip(names, counts))

    async def host_of(self, instance_id: str) -> object:
        """The raw actor handle of an instance's host (tests kill it); None once retired."""
        record = self.store.load_instance(instance_id)
        if record is None or record.host is None:
            return None
        # Only look: creating the host of a finished dedicated instance would leak an actor.
        handle = self.pool.hosts.get(record.host)
        if handle is None:
            return None
        try:
            return (await handle.created()).actor
        except HostNotCreated:
            return None
