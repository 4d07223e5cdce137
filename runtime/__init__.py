"""ray-durable: durable orchestrations for Ray.

The names below are imported on first use (PEP 562): the pure parts (``runtime.orchestration``,
``runtime.errors``, ``runtime.serialization``) import without Ray, the rest brings it in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and editors see; at run time, __getattr__ below
    from .config import HubConfig
    from .driver.client import DurableClient
    from .driver.hub import Runtime
    from .entity_id import EntityId, InvalidEntityIdError
    from .errors import (
        ActivityNotFoundError,
        ActivityTimeoutError,
        ArgumentTypeError,
        ClusterNotFoundError,
        DurableError,
        EntityUnavailableError,
        FailureDetails,
        HubConfigError,
        HubUnavailableError,
        InlinePoolExhaustedError,
        InstanceExistsError,
        InstanceNotFoundError,
        InternalError,
        InvalidArgumentError,
        InvalidOperationError,
        NonDeterminismError,
        NotRegisteredError,
        OperationTimeoutError,
        OrchestrationFailedError,
        OrchestratorNotFoundError,
        QuarantinedError,
        QuarantineItemNotFoundError,
        SerializationError,
        StoreUnavailableError,
        TaskFailedError,
        UnavailableError,
        UnknownOperationError,
    )
    from .orchestration import (
        EventTimeoutError,
        OrchestrationContext,
        OrchestrationStatus,
        RetryPolicy,
        Task,
    )
    from .registry import Activity, Orchestrator, activity, orchestrator
    from .states import (
        EntityMetadata,
        EntityOperationFailedError,
        EntityStateResponse,
        OrchestrationState,
    )

#: The module that defines each exported name.
_MODULES: dict[str, tuple[str, ...]] = {
    ".driver.client": ("DurableClient",),
    ".states": (
        "EntityMetadata",
        "EntityOperationFailedError",
        "EntityStateResponse",
        "OrchestrationState",
    ),
    ".config": ("HubConfig",),
    ".entity_id": ("EntityId", "InvalidEntityIdError"),
    ".errors": (
        "ActivityNotFoundError",
        "ActivityTimeoutError",
        "ArgumentTypeError",
        "ClusterNotFoundError",
        "DurableError",
        "EntityUnavailableError",
        "FailureDetails",
        "HubConfigError",
        "HubUnavailableError",
        "InlinePoolExhaustedError",
        "InstanceExistsError",
        "InstanceNotFoundError",
        "InternalError",
        "InvalidArgumentError",
        "InvalidOperationError",
        "NonDeterminismError",
        "NotRegisteredError",
        "OperationTimeoutError",
        "OrchestrationFailedError",
        "OrchestratorNotFoundError",
        "QuarantinedError",
        "QuarantineItemNotFoundError",
        "SerializationError",
        "StoreUnavailableError",
        "TaskFailedError",
        "UnavailableError",
        "UnknownOperationError",
    ),
    ".driver.hub": ("Runtime",),
    ".orchestration": (
        "EventTimeoutError",
        "OrchestrationContext",
        "OrchestrationStatus",
        "RetryPolicy",
        "Task",
    ),
    ".registry": ("Activity", "Orchestrator", "activity", "orchestrator"),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "Activity",
    "ActivityNotFoundError",
    "ActivityTimeoutError",
    "ArgumentTypeError",
    "ClusterNotFoundError",
    "DurableClient",
    "DurableError",
    "EntityId",
    "EntityMetadata",
    "EntityOperationFailedError",
    "EntityStateResponse",
    "EntityUnavailableError",
    "EventTimeoutError",
    "FailureDetails",
    "HubConfig",
    "HubConfigError",
    "HubUnavailableError",
    "InlinePoolExhaustedError",
    "InstanceExistsError",
    "InstanceNotFoundError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidEntityIdError",
    "InvalidOperationError",
    "NonDeterminismError",
    "NotRegisteredError",
    "OperationTimeoutError",
    "OrchestrationContext",
    "OrchestrationFailedError",
    "OrchestrationState",
    "OrchestrationStatus",
    "Orchestrator",
    "OrchestratorNotFoundError",
    "QuarantineItemNotFoundError",
    "QuarantinedError",
    "RetryPolicy",
    "Runtime",
    "SerializationError",
    "StoreUnavailableError",
    "Task",
    "TaskFailedError",
    "UnavailableError",
    "UnknownOperationError",
    "activity",
    "orchestrator",
]


def __getattr__(name: str) -> Any:
    """An exported name, imported from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """The module's names, the lazy exports included."""
    return sorted(set(globals()) | set(__all__))
