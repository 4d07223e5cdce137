"""What a client reports: instance states, entity states and rows, an entity call's failure.

Pure (no Ray), so the in-process test environment returns the very same classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .entity_id import EntityId
from .errors import DurableError, FailureDetails
from .orchestration import history as h
from .orchestration.codec import decode_event
from .orchestration.status import OrchestrationStatus
from .serialization import loads
from .store.base import InstanceRecord

__all__ = [
    "EntityMetadata",
    "EntityOperationFailedError",
    "EntityStateResponse",
    "OrchestrationState",
    "state_of",
]


@dataclass(frozen=True)
class EntityStateResponse:
    """What ``read_entity_state`` returns (Durable Functions' shape)."""

    entity_exists: bool
    entity_state: Any = None


@dataclass(frozen=True)
class EntityMetadata:
    """One row of ``get_entities``."""

    entity_id: EntityId
    exists: bool
    last_modified_time: datetime


class EntityOperationFailedError(DurableError):
    """An entity operation called with ``call_entity`` raised."""

    def __init__(self, entity: str, operation: str, details: FailureDetails) -> None:
        super().__init__(entity, operation, details)
        self.entity, self.operation, self.details = entity, operation, details

    def __str__(self) -> str:
        return f"operation {self.operation!r} of entity {self.entity} failed: {self.details}"


@dataclass
class OrchestrationState:
    """The status of one instance, as Durable Functions reports it."""

    instance_id: str
    name: str
    runtime_status: OrchestrationStatus
    input: Any
    output: Any
    custom_status: Any
    created_time: datetime
    last_updated_time: datetime
    failure_details: FailureDetails | None = None
    version: str = ""
    history: list[h.HistoryEvent] | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the instance completed, failed or was terminated."""
        return self.runtime_status.is_terminal


def state_of(record: InstanceRecord, history: list[bytes] | None = None) -> OrchestrationState:
    """The state of a stored instance, its values decoded."""
    return OrchestrationState(
        instance_id=record.instance_id,
        name=record.name,
        runtime_status=OrchestrationStatus(record.status),
        input=loads(record.input, "input"),
        output=loads(record.output, "output"),
        custom_status=loads(record.custom_status, "custom status"),
        created_time=datetime.fromtimestamp(record.created_time, tz=timezone.utc),
        last_updated_time=datetime.fromtimestamp(record.last_updated_time, tz=timezone.utc),
        failure_details=loads(record.failure, "failure details"),
        version=record.version,
        history=None if history is None else [decode_event(b) for b in history],
    )
