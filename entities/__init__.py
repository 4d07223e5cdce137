"""Durable entities: small pieces of state you signal and call from anywhere."""

from runtime.entity_id import EntityId, InvalidEntityIdError

from .model import (
    Entity,
    EntityContext,
    NoEntityContextError,
    UnknownOperationError,
    current_context,
    entity,
)

__all__ = [
    "Entity",
    "EntityContext",
    "EntityId",
    "InvalidEntityIdError",
    "NoEntityContextError",
    "UnknownOperationError",
    "current_context",
    "entity",
]
