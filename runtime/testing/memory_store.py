"""The test environment's store: instance rows, codec-encoded histories and entity states.

Histories hold the blobs ``runtime.orchestration.codec`` writes, exactly what the SQLite
store holds, so what a test runs is what production records (and replays). Nothing here is
durable: an environment lives as long as its test.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..store.base import InstanceRecord


class MemoryStore:
    """Instances, histories and entity states of one test environment, in memory."""

    def __init__(self) -> None:
        self.instances: dict[str, InstanceRecord] = {}
        self.histories: dict[str, list[bytes]] = {}
        self.entities: dict[str, tuple[bytes | None, bool, str | None]] = {}
        self.senders: dict[tuple[str, str], tuple[int, bytes | None]] = {}

    def create_instance(self, record: InstanceRecord) -> None:
        """Insert an instance (replacing an ended one of the same id) with an empty history."""
        self.instances[record.instance_id] = record
        self.histories[record.instance_id] = []

    def load_instance(self, instance_id: str) -> InstanceRecord | None:
        """The instance row, or None."""
        return self.instances.get(instance_id)

    def load_history(self, instance_id: str) -> list[bytes]:
        """The encoded events of the instance's current execution, in order."""
        return list(self.histories.get(instance_id, []))

    def append_history(self, instance_id: str, blobs: list[bytes], replace: bool = False) -> None:
        """Append events; with ``replace`` (continue-as-new) they start a new history."""
        if replace:
            self.histories[instance_id] = []
        self.histories[instance_id].extend(blobs)
        record = self.instances[instance_id]
        record.history_length = len(self.histories[instance_id])

    def update(self, instance_id: str, **fields: Any) -> None:
        """Change fields of an instance row."""
        self.instances[instance_id] = dataclasses.replace(self.instances[instance_id], **fields)

    def children(self, instance_id: str) -> list[InstanceRecord]:
        """Sub-orchestrations started by the instance."""
        return [r for r in self.instances.values() if r.parent_instance_id == instance_id]

    def load_entity(self, entity_id: str) -> tuple[bytes | None, bool, str | None] | None:
        """(state blob, exists, lock owner) of an entity; None if it never ran."""
        return self.entities.get(entity_id)

    def save_entity(
        self, entity_id: str, state: bytes | None, exists: bool, locked_by: str | None
    ) -> None:
        """Record an entity's row after an operation."""
        self.entities[entity_id] = (state if exists else None, exists, locked_by)

    def load_sender(self, entity_id: str, sender: str) -> tuple[int, bytes | None] | None:
        """(last number, its encoded outcome) the entity recorded for ``sender``."""
        return self.senders.get((entity_id, sender))

    def save_sender(self, entity_id: str, sender: str, seq: int, result: bytes) -> None:
        """Record the sender's last number on the entity, with the operation's outcome."""
        self.senders[(entity_id, sender)] = (seq, result)
