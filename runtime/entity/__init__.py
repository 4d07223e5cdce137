"""The pure entity core: admission, locks, per-sender order and deduplication (no Ray)."""

from .core import (
    LOCK,
    UNLOCK,
    Delivery,
    EntityMachine,
    EntityRow,
    EntityType,
    Loader,
    Record,
    Round,
    SenderRow,
)

__all__ = [
    "LOCK",
    "UNLOCK",
    "Delivery",
    "EntityMachine",
    "EntityRow",
    "EntityType",
    "Loader",
    "Record",
    "Round",
    "SenderRow",
]
