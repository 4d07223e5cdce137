"""ray-durable: durable orchestrations for Ray."""

from .client import (
    DurableClient,
    EntityMetadata,
    EntityOperationFailedError,
    EntityStateResponse,
    OrchestrationState,
)
from .config import HubConfig
from .entity_id import EntityId, InvalidEntityIdError
from .errors import (
    ActivityNotFoundError,
    ClusterNotFoundError,
    DurableError,
    FailureDetails,
    HubConfigError,
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidOperationError,
    NonDeterminismError,
    NotRegisteredError,
    OrchestrationFailedError,
    OrchestratorNotFoundError,
    SerializationError,
    TaskFailedError,
)
from .hub import Runtime
from .orchestration import (
    EventTimeoutError,
    OrchestrationContext,
    OrchestrationStatus,
    RetryPolicy,
    Task,
)
from .registry import Activity, Orchestrator, activity, orchestrator

__all__ = [
    "Activity",
    "ActivityNotFoundError",
    "ClusterNotFoundError",
    "DurableClient",
    "DurableError",
    "EntityId",
    "EntityMetadata",
    "EntityOperationFailedError",
    "EntityStateResponse",
    "EventTimeoutError",
    "FailureDetails",
    "HubConfig",
    "HubConfigError",
    "InstanceExistsError",
    "InstanceNotFoundError",
    "InvalidEntityIdError",
    "InvalidOperationError",
    "NonDeterminismError",
    "NotRegisteredError",
    "OrchestrationContext",
    "OrchestrationFailedError",
    "OrchestrationState",
    "OrchestrationStatus",
    "Orchestrator",
    "OrchestratorNotFoundError",
    "RetryPolicy",
    "Runtime",
    "SerializationError",
    "Task",
    "TaskFailedError",
    "activity",
    "orchestrator",
]
