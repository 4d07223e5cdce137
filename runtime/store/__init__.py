"""Durable storage of task hubs."""

from .base import (
    Checkpoint,
    DueTimer,
    EntityCheckpoint,
    HubHealth,
    HubOverview,
    InboxMessage,
    InstanceQuery,
    InstanceRecord,
    OutboxMessage,
    Quarantined,
    Store,
)
from .factory import node_local, open_store

__all__ = [
    "Checkpoint",
    "DueTimer",
    "EntityCheckpoint",
    "HubHealth",
    "HubOverview",
    "InboxMessage",
    "InstanceQuery",
    "InstanceRecord",
    "OutboxMessage",
    "Quarantined",
    "Store",
    "node_local",
    "open_store",
]
