"""Where an entity lives: one Ray actor of its own, or a pool host chosen by hash."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from ..entity_id import EntityId
from .ray_seam import NAMESPACE, HostHandle, find_actor, get

__all__ = ["NAMESPACE", "EntityRouter", "entity_host", "pool_host", "pool_index"]


def pool_host(hub: str, index: int) -> str:
    """The Ray actor name of a hub's pool host."""
    return f"{hub}/pool-{index}"


def pool_index(key: str, pool_size: int) -> int:
    """Stable across processes and restarts (Python's hash() is not)."""
    return zlib.crc32(key.encode()) % pool_size


def entity_host(hub: str, eid: EntityId) -> str:
    """The Ray actor name of a dedicated entity's host."""
    return f"{hub}/entity-{eid}"


class EntityRouter:
    """Caches entity routes and host handles; asks the supervisor only on a miss.

    ``supervisor`` gives what answers ``entity_route`` and ``entity_host``: a
    SupervisorHandle (their answers are Ray ObjectRefs), or the supervisor's own directory
    of entities (coroutines) when the supervisor routes.
    """

    def __init__(self, supervisor: Callable[[], Any]) -> None:
        self._supervisor = supervisor
        self._routes: dict[str, tuple[str, list[str]]] = {}
        self._handles: dict[str, HostHandle] = {}

    async def ahandle(self, eid: EntityId) -> HostHandle:
        """The host handle of ``eid`` (from async code)."""
        route = self._routes.get(eid.name)
        if route is None:
            # Called on a handle held in a local: Ray 2.40 loses a call made on a temporary
            # handle ("Lost reference to actor").
            supervisor = self._supervisor()
            route = self._routes[eid.name] = await supervisor.entity_route(eid.name)
        name = self._host_name(eid, route)
        handle = self._handles.get(name)
        if handle is None:
            supervisor = self._supervisor()
            handle = await supervisor.entity_host(str(eid), name)
            self._handles[name] = handle
        return handle

    def handle(self, eid: EntityId, get: Callable[[Any], Any] = get) -> HostHandle:
        """The host handle of ``eid`` (from a synchronous driver)."""
        route = self._routes.get(eid.name)
        if route is None:
            supervisor = self._supervisor()  # held in a local, as in ahandle
            route = self._routes[eid.name] = get(supervisor.entity_route(eid.name))
        name = self._host_name(eid, route)
        handle = self._handles.get(name)
        if handle is None:
            actor = find_actor(name)
            if actor is not None:
                handle = HostHandle(actor)
            else:
                supervisor = self._supervisor()
                handle = get(supervisor.entity_host(str(eid), name))
            self._handles[name] = handle
        return handle

    def forget(self, eid: EntityId) -> None:
        """Drop cached routes after the host died for good."""
        route = self._routes.pop(eid.name, None)
        if route is not None:
            self._handles.pop(self._host_name(eid, route), None)

    @staticmethod
    def _host_name(eid: EntityId, route: tuple[str, list[str]]) -> str:
        kind, names = route
        if kind == "pooled":
            return names[pool_index(str(eid), len(names))]
        return entity_host(names[0], eid)  # dedicated: names holds the hub
