"""What the test environment reports: the shapes the Ray client returns, without Ray.

``InstanceState`` has the fields of ``runtime.driver.client.OrchestrationState`` and
``EntityState`` those of ``runtime.driver.client.EntityStateResponse`` (a test pins both), so a
test reads an in-process result as it reads a hub's. They live here because the client
module imports Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import FailureDetails
from ..orchestration import history as h
from ..orchestration.codec import decode_event
from ..orchestration.status import OrchestrationStatus
from ..serialization import loads
from ..store.base import InstanceRecord


@dataclass
class InstanceState:
    """The status of one instance, as ``DurableClient.get_status`` reports it."""

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


@dataclass(frozen=True)
class EntityState:
    """What ``read_entity_state`` returns (Durable Functions' shape)."""

    entity_exists: bool
    entity_state: Any = None


def instance_state(record: InstanceRecord, history: list[bytes] | None = None) -> InstanceState:
    """The state of a stored instance, its values decoded (copies, as a client gets)."""
    return InstanceState(
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
