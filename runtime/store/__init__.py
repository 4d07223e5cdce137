"""Durable storage of task hubs."""

from .base import (
    Checkpoint,
    DueTimer,
    EntityCheckpoint,
    InboxMessage,
    InstanceQuery,
    InstanceRecord,
    OutboxMessage,
    Store,
)
from .factory import node_local, open_store

__all__ = [
    "Checkpoint",
    "DueTimer",
    "EntityCheckpoint",
    "InboxMessage",
    "InstanceQuery",
    "InstanceRecord",
    "OutboxMessage",
    "Store",
    "node_local",
    "open_store",
]
