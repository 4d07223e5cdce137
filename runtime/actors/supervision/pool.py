"""The hub's host actors: placement, creation, watching, revival and retirement."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ... import logs, metrics
from ...config import HubConfig
from ...orchestration.status import ENDED
from ...store import Store
from ..ray_seam import (
    HOST_ACTIVATION,
    ActorSystem,
    HostHandle,
    first_line,
    must_replace,
    root_cause,
)
from ..routing import pool_host, pool_index

log = logging.getLogger("ray_durable.supervisor")


class HostPool:
    """Where instances live, and the host actors they live in.

    Guarantees: every host this pool created is watched, and when one dies the
    ``on_failed`` callback runs, then the instances the store places on it are activated
    again until some incarnation of it takes them (a new incarnation also activates them
    by itself, from the store). A retired host is never revived.
    """

    def __init__(
        self,
        config: HubConfig,
        store: Store,
        actors: ActorSystem,
        host_class: Any,
        host_args: Callable[[], tuple[Any, ...]],
        on_failed: Callable[[str], Awaitable[None]],
    ) -> None:
        self.config = config
        self.store = store
        self.actors = actors
        self.host_class = host_class
        self.host_args = host_args
        self.on_failed = on_failed
        self.hosts: dict[str, HostHandle] = {}
        self.spares: list[str] = []
        self.retired: set[str] = set()
        #: dedicated hosts given to a start whose instance is not committed yet
        self.placing: set[str] = set()
        #: instances to activate on each host once the call on its way there has returned
        self._to_activate: dict[str, list[str]] = {}
        self._tags = {"hub": config.hub}

    # -- placement ----------------------------------------------------------------------

    def place(self, instance_id: str) -> str:
        """The host a new instance goes to: its pool host, or a (warm) dedicated one."""
        if self.config.placement == "pooled":
            return pool_host(self.config.hub, pool_index(instance_id, self.config.pool_size))
        return self.spares.pop(0) if self.spares else self._dedicated_name()

    def placed(self, name: str) -> None:
        """The start ``place`` chose ``name`` for has committed (or refused) its instance."""
        self.placing.discard(name)

    def _dedicated_name(self) -> str:
        return f"{self.config.hub}/host-{uuid.uuid4().hex[:12]}"

    def _kept(self, name: str) -> bool:
        """A dedicated orchestration host: created by its node's keeper (ActorSystem)."""
        return name.startswith(f"{self.config.hub}/host-")

    def unplace(self, name: str) -> None:
        """A start refused after ``place``: its dedicated host goes back to the spares."""
        if self.config.placement == "dedicated":
            self.placing.discard(name)
            self.spares.insert(0, name)

    def recycle(self, name: str, reusable: bool = True) -> None:
        """A dedicated host whose instance ended: back to the spares, or stopped.

        Kept while the spares number at most ``warm_hosts``: the next instance then finds
        a live process whose code and workers are warm (Azure Functions keeps its workers
        warm across invocations the same way), and a chain of starts one after another
        makes no new process at all. Still one instance per host at a time: it is a spare
        only once no live instance is placed on it.
        """
        if name in self.spares or name in self.retired or name in self.placing:
            return
        if self.store.active_instances(host=name):
            return  # placed again meanwhile: it hosts that instance now
        if not reusable or len(self.spares) > self.config.warm_hosts:
            self.kill(name)
            return
        self.spares.insert(0, name)  # ready now, unlike a spare still starting

    def refill_spares(self) -> None:
        """Keep ``warm_hosts`` dedicated hosts started ahead of need."""
        # A warm spare hides the half second a new worker process takes from start_new.
        if self.config.placement != "dedicated":
            return
        while len(self.spares) < self.config.warm_hosts:
            name = self._dedicated_name()
            self.host(name)
            self.spares.append(name)

    async def retire_unplaced(self, in_use: set[str | None]) -> None:
        """Hosts an earlier supervisor started that no live instance uses: stop them.

        Every dedicated host a keeper holds: its spares, one whose instance ended while no
        supervisor ran (its report was lost), and one made for a start the crash cut short.
        The keepers know them all, so the spares need no record in the store.
        """
        for name in sorted(set(await self.actors.kept_hosts()) - in_use):
            self.kill(name)

    # -- host lifecycle -------------------------------------------------------------------

    def host(self, name: str, resources: dict[str, Any] | None = None) -> HostHandle:
        """The host of that name: known, found alive under its name, or created; watched."""
        handle = self.hosts.get(name)
        if handle is None:
            self.retired.discard(name)
            handle = self.actors.host(
                self.host_class, name, resources, *self.host_args(), kept=self._kept(name)
            )
            self.hosts[name] = handle
            asyncio.get_event_loop().create_task(self._watch(name, handle))
        return handle

    def poke(self, name: str, instance_id: str) -> None:
        """Nudge an instance's host to read its inbox (the message is already stored)."""
        self.host(name).poke(instance_id)

    def poke_instance(self, instance_id: str) -> None:
        """Nudge a live instance's host, wherever the store places it."""
        record = self.store.load_instance(instance_id)
        if record is not None and record.host and record.status not in ENDED:
            self.poke(record.host, instance_id)

    async def _watch(self, name: str, handle: HostHandle) -> None:
        while name not in self.retired:
            try:
                await handle.watch()
            except Exception as exc:
                if name in self.retired:
                    return
                logs.event(
                    log,
                    logging.WARNING,
                    "host failed; recovering its instances",
                    hub=self.config.hub,
                    host=name,
                    error=type(exc).__name__,
                )
                metrics.inc("recoveries", {**self._tags, "kind": "host"})
                await self.on_failed(name)
                await self.activate_on(name, None)
                if self.hosts.get(name) is not handle:
                    return  # replaced by a new actor, which has a watcher of its own

    def activate_soon(self, name: str, ids: list[str]) -> None:
        """Activate ``ids`` on a host in the background, retried until taken (activate_on).

        One call at a time per host: the instances asked for while one is on its way go
        together in the next, so a burst of starts costs each host a few calls, not one each.
        """
        queued = self._to_activate.get(name)
        if queued is not None:
            queued.extend(ids)
            return
        self._to_activate[name] = list(ids)
        asyncio.get_event_loop().create_task(self._activate_queued(name))

    async def _activate_queued(self, name: str) -> None:
        try:
            while self._to_activate[name]:
                ids, self._to_activate[name] = self._to_activate[name], []
                await self.activate_on(name, ids)
        finally:  # cancelled (the supervisor stops): the host activates from the store itself
            self._to_activate.pop(name, None)

    async def activate_on(self, name: str, ids: list[str] | None) -> None:
        """Activate instances on a host until one of its incarnations has taken them.

        ``None`` means every instance the store places there, read again at each try: an
        instance started while the host was dying is then found as well. A new incarnation
        also activates what the store assigns it by itself (HostCore), so a call lost with
        an incarnation that dies after this returns loses nothing.
        """
        attempt = 0
        while name not in self.retired:
            todo = ids
            if todo is None:
                todo = [r.instance_id for r in self.store.active_instances(host=name)]
            try:
                await self.host(name).activate(todo)
                return
            except Exception as exc:
                if must_replace(exc):
                    self._replace(name)
                # else restarting: the next try reaches its new incarnation
                last = exc
            attempt += 1
            if attempt % 60 == 0:  # unreachable, or an instance's code cannot load there
                logs.event(
                    log,
                    logging.WARNING,
                    "host still does not activate its instances",
                    hub=self.config.hub,
                    host=name,
                    error=first_line(root_cause(last))[:300],
                )
            await asyncio.sleep(HOST_ACTIVATION.wait(attempt, Exception()))

    def _replace(self, name: str) -> None:
        """Forget a host that will not come back: the next ``host(name)`` creates it anew.

        An actor pinned to a lost node is still registered under its name: it is killed
        (only through the handle we hold, never by name: that may be its successor).
        """
        handle = self.hosts.pop(name, None)
        if handle is not None:
            self.actors.kill(name, handle)

    def kill(self, name: str) -> None:
        """Stop a host for good; it is not revived."""
        self.retired.add(name)
        self.actors.kill(name, self.hosts.pop(name, None))

    def kill_all(self) -> None:
        """Stop every host, spares included, and the keepers (the store keeps everything)."""
        for name in list(self.hosts) + self.spares:
            self.kill(name)
        self.spares.clear()
        self.actors.stop_keepers()
