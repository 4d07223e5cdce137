"""The supervisor's directory of entities: where each type lives, and what is stored."""

from __future__ import annotations

from typing import Any

from ...config import HubConfig
from ...entity_id import EntityId
from ...registry import CodeCache
from ...store import Store
from ..ray_seam import HostHandle
from ..routing import entity_host, pool_host
from .pool import HostPool


class EntityDirectory:
    """Routes entity types to hosts (creating them with the type's Ray resources)."""

    def __init__(self, config: HubConfig, store: Store, code: CodeCache, pool: HostPool) -> None:
        self.config = config
        self.store = store
        self.code = code
        self.pool = pool

    async def entity_route(self, name: str) -> tuple[str, list[str]]:
        """("pooled", pool host names) or ("dedicated", [hub]) for an entity type."""
        etype = self.code.get("entity", name)
        if (etype.placement or self.config.placement) == "pooled":
            names = [pool_host(self.config.hub, i) for i in range(self.config.pool_size)]
            for host in names:
                self.pool.host(host)
            return "pooled", names
        return "dedicated", [self.config.hub]

    async def entity_operations(self, name: str) -> tuple[str, ...] | None:
        """The operations of an entity type; None for a function entity (any public name)."""
        etype = self.code.get("entity", name)
        return etype.operations() if etype.is_class else None

    async def entity_host(self, eid: str, name: str) -> HostHandle:
        """The host of an entity, created with the entity type's Ray resources."""
        entity = EntityId.parse(eid)
        resources = None
        if name == entity_host(self.config.hub, entity):
            resources = dict(self.code.get("entity", entity.name).options)
        return self.pool.host(name, resources)

    async def read_entity(self, eid: str) -> tuple[bytes | None, bool] | None:
        """(state, exists) of an entity as last committed."""
        entity = EntityId.parse(eid)
        row = self.store.load_entity(entity.name, entity.key)
        return None if row is None else (row[0], row[1])

    async def entity_record(self, eid: str) -> tuple[bytes | None, bool, str | None] | None:
        """(state, exists, lock owner) of an entity as last committed."""
        entity = EntityId.parse(eid)
        return self.store.load_entity(entity.name, entity.key)

    async def last_sequence(self, eid: str, sender: str) -> int:
        """The last number the entity recorded from ``sender`` (0: none)."""
        entity = EntityId.parse(eid)
        row = self.store.load_sender(entity.name, entity.key, sender)
        return 0 if row is None else int(row[0])

    async def list_entities(self, name: str | None, limit: int, offset: int) -> list[Any]:
        """Stored entities, a page at a time."""
        return self.store.list_entities(name, limit, offset)

    async def clean_entities(self) -> int:
        """Remove entities without state."""
        return self.store.clean_entities()

    async def retire_idle_host(self, name: str) -> bool:
        """Stop a dedicated entity's host whose entity passivated; True if it was running."""
        if name not in self.pool.hosts:
            return False
        self.pool.kill(name)
        return True
