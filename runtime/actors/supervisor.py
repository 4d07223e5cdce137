"""The supervisor: one named, detached Ray actor per task hub.

The actor only forwards, each call once recovery is done; its parts and their guarantees
are in ``runtime.actors.supervision`` (the composition and its guarantees: ``supervision.core``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .. import logs
from ..config import HubConfig
from ..errors import HubLeaseHeldError
from ..store import InstanceQuery, InstanceRecord
from .ray_seam import HostHandle, actor_class, supervisor_name
from .supervision.core import SupervisorCore

__all__ = ["Supervisor", "SupervisorCore", "supervisor_name"]


@actor_class
class Supervisor:
    """The Ray actor around SupervisorCore."""

    def __init__(self, config: dict[str, Any], clock: Callable[[], float] | None = None) -> None:
        logs.configure()
        # A constructor that raises reaches the driver as an untyped ActorDiedError; the
        # refusal is kept and raised by ready and hub_config (Runtime.start kills us then).
        self.refused: HubLeaseHeldError | None = None
        try:
            self._core = SupervisorCore(HubConfig(**config), clock)
        except HubLeaseHeldError as exc:
            self.refused = exc

    async def _ready(self) -> SupervisorCore:
        if self.refused is not None:
            raise self.refused
        await self._core.ready
        return self._core

    async def ready(self) -> None:
        """Returns once recovery from the store is done."""
        await self._ready()

    async def hub_config(self) -> dict[str, Any]:
        """This hub's settings (answered during recovery: Runtime.start checks them first)."""
        if self.refused is not None:
            raise self.refused
        return self._core.config.to_dict()

    async def pid(self) -> int:
        """The supervisor's process id (failure tests kill it)."""
        return os.getpid()

    async def register(self, items: list[tuple[str, str, str, bytes]]) -> None:
        """Store registered code."""
        await (await self._ready()).register(items)

    async def shutdown(self) -> None:
        """Stop the hub's hosts."""
        await (await self._ready()).shutdown()

    # -- instances ------------------------------------------------------------------------

    async def start_new(
        self,
        name: str,
        version: str | None,
        input_blob: bytes,
        start_blob: bytes,
        iid: str,
        start_id: str | None = None,
    ) -> str:
        """Create and activate an instance."""
        control = (await self._ready()).control
        return await control.start_new(
            name, version, input_blob, start_blob, iid, start_id=start_id
        )

    async def start_child(self, *args: Any) -> None:
        """Start a sub-orchestration for a host."""
        await (await self._ready()).control.start_child(*args)

    async def deliver(
        self, instance_id: str, event_blob: bytes, message_id: str | None = None
    ) -> None:
        """Route a message to an instance."""
        await (await self._ready()).control.deliver(instance_id, event_blob, message_id)

    async def start_many(self, starts: list[tuple[Any, ...]]) -> list[Any]:
        """Create and activate instances together; each one's id or refusal (a DurableError)."""
        return await (await self._ready()).control.start_many(starts)

    async def deliver_many(self, events: list[tuple[str, bytes, str]]) -> list[Any]:
        """Route messages in order; each one's refusal (a DurableError) or None."""
        return await (await self._ready()).control.deliver_many(events)

    async def terminate(self, instance_id: str, reason: str, recursive: bool = True) -> None:
        """Terminate an instance."""
        await (await self._ready()).control.terminate(instance_id, reason, recursive)

    async def suspend(self, instance_id: str, reason: str) -> None:
        """Suspend an instance."""
        await (await self._ready()).control.suspend(instance_id, reason)

    async def resume(self, instance_id: str, reason: str) -> None:
        """Resume an instance."""
        await (await self._ready()).control.resume(instance_id, reason)

    async def purge(self, instance_id: str) -> int:
        """Purge one instance."""
        return await (await self._ready()).control.purge(instance_id)

    async def purge_by(self, query: InstanceQuery) -> int:
        """Purge instances matching a query."""
        return await (await self._ready()).control.purge_by(query)

    async def restart(self, instance_id: str, new_instance_id: str | None) -> str:
        """Restart an instance."""
        return await (await self._ready()).control.restart(instance_id, new_instance_id)

    async def instance_done(self, *args: Any) -> None:
        """A host reports a terminal instance."""
        await (await self._ready()).completions.instance_done(*args)

    async def get_status(self, instance_id: str, show_history: bool = False) -> Any:
        """An instance row (and history)."""
        return await (await self._ready()).completions.get_status(instance_id, show_history)

    async def query(self, query: InstanceQuery) -> list[InstanceRecord]:
        """Instances matching a query."""
        return await (await self._ready()).completions.query(query)

    async def wait(self, instance_id: str, timeout: float | None) -> InstanceRecord | None:
        """Wait for a terminal status."""
        return await (await self._ready()).completions.wait(instance_id, timeout)

    async def overview(self, window: float, ask_hosts: bool = True) -> Any:
        """The hub's counts for the dashboard (with activities in flight: ``ask_hosts``)."""
        return await (await self._ready()).completions.overview(window, ask_hosts)

    async def host_of(self, instance_id: str) -> Any:
        """The host actor of an instance."""
        return await (await self._ready()).completions.host_of(instance_id)

    # -- timers and hosts -----------------------------------------------------------------

    async def fire_timers(self) -> None:
        """Fire due timers now."""
        await (await self._ready()).fire_timers()

    async def timer_hint(self, fire_at: float) -> None:
        """Wake the timer service."""
        (await self._ready()).timers.wake()

    async def retire_idle_host(self, name: str) -> None:
        """A dedicated entity's host has nothing in memory."""
        await (await self._ready()).retire_idle_host(name)

    async def flush_outbox(self) -> None:
        """Deliver committed outbox messages."""
        await (await self._ready()).outbox.flush()

    # -- entities -------------------------------------------------------------------------

    async def entity_route(self, name: str) -> tuple[str, list[str]]:
        """How an entity type is placed."""
        return await (await self._ready()).entities.entity_route(name)

    async def entity_operations(self, name: str) -> tuple[str, ...] | None:
        """The operations of an entity type (None: a function entity)."""
        return await (await self._ready()).entities.entity_operations(name)

    async def entity_host(self, eid: str, name: str) -> HostHandle:
        """The host of an entity."""
        return await (await self._ready()).entities.entity_host(eid, name)

    async def read_entity(self, eid: str) -> Any:
        """An entity's committed state."""
        return await (await self._ready()).entities.read_entity(eid)

    async def list_entities(self, name: str | None, limit: int, offset: int) -> list[Any]:
        """Stored entities."""
        return await (await self._ready()).entities.list_entities(name, limit, offset)

    async def clean_entities(self) -> int:
        """Remove entities without state."""
        return await (await self._ready()).entities.clean_entities()

    async def entity_record(self, eid: str) -> Any:
        """An entity's committed state, existence and lock owner."""
        return await (await self._ready()).entities.entity_record(eid)

    async def last_sequence(self, eid: str, sender: str) -> int:
        """The last number an entity recorded from a sender."""
        return await (await self._ready()).entities.last_sequence(eid, sender)

    # -- quarantine -----------------------------------------------------------------------

    async def quarantined(self) -> list[Any]:
        """Quarantined work, oldest first."""
        return await (await self._ready()).quarantine.list()

    async def release_quarantined(self, item_id: str, retry: bool) -> Any:
        """Retry or discard one quarantined item."""
        return await (await self._ready()).quarantine.release(item_id, retry)
