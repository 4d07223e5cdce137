"""Durable storage of task hubs."""

from .base import (
    Checkpoint,
    DueTimer,
    InboxMessage,
    InstanceQuery,
    InstanceRecord,
    Store,
    open_store,
)

__all__ = [
    "Checkpoint",
    "DueTimer",
    "InboxMessage",
    "InstanceQuery",
    "InstanceRecord",
    "Store",
    "open_store",
]
