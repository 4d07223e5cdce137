"""Durable storage of task hubs."""

from .base import (
    Checkpoint,
    DueTimer,
    EntityCheckpoint,
    GuardedMessage,
    HubHealth,
    HubOverview,
    InboxMessage,
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    OutboxMessage,
    Quarantined,
    Store,
)
from .factory import node_local, open_store

__all__ = [
    "Checkpoint",
    "DueTimer",
    "EntityCheckpoint",
    "GuardedMessage",
    "HubHealth",
    "HubOverview",
    "InboxMessage",
    "InstanceQuery",
    "InstanceRecord",
    "NewInstance",
    "OutboxMessage",
    "Quarantined",
    "Store",
    "node_local",
    "open_store",
]
