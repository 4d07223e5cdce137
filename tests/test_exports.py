"""The public surface: the names each package exports, pinned, and what imports without Ray.

A change to these lists is a change to the public API: make it here on purpose (after
Temporal's tests/test_workflow_exports.py).
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import entities
import runtime
import runtime.orchestration
from runtime.driver.client import DurableClient

RUNTIME = [
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
ORCHESTRATION = [
    "EventTimeoutError",
    "OrchestrationContext",
    "OrchestrationStatus",
    "RetryPolicy",
    "Task",
]
ENTITIES = [
    "Entity",
    "EntityContext",
    "EntityId",
    "InvalidEntityIdError",
    "NoEntityContextError",
    "UnknownOperationError",
    "current_context",
    "entity",
]


@pytest.mark.parametrize(
    "package, names",
    [(runtime, RUNTIME), (runtime.orchestration, ORCHESTRATION), (entities, ENTITIES)],
    ids=["runtime", "runtime.orchestration", "entities"],
)
def test_exported_names_are_pinned_and_resolve(package, names):
    assert sorted(package.__all__) == names
    for name in names:
        assert getattr(package, name) is not None, name


def test_lazy_exports_name_the_module_that_defines_each_name():
    assert sorted(runtime._EXPORTS) == RUNTIME
    for name, module in runtime._EXPORTS.items():
        defined = importlib.import_module(module, "runtime")
        assert getattr(runtime, name) is getattr(defined, name), name
    assert set(RUNTIME) <= set(dir(runtime))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        runtime.no_such_name  # noqa: B018


def test_the_pure_parts_import_without_ray():
    code = (
        "import sys\n"
        "import runtime.orchestration, runtime.errors, runtime.serialization, entities\n"
        "from runtime import OrchestrationContext, RetryPolicy, DurableError\n"
        "from runtime.orchestration import engine, history, status, tasks\n"
        "import runtime.entity, runtime.messages, runtime.states, runtime.testing\n"
        "from runtime.actors.hosting import steps  # the pure half of a host\n"
        "loaded = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "assert not loaded, loaded[:3]\n"
        "import runtime\n"
        "runtime.Runtime\n"
        "assert 'ray' in sys.modules  # the driver side still brings Ray in\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_internals_stay_importable_by_their_module_paths():
    from runtime.orchestration.engine import OrchestrationExecutor, Step
    from runtime.orchestration.history import HistoryEvent

    assert OrchestrationExecutor and Step and HistoryEvent
    assert "OrchestrationExecutor" not in runtime.orchestration.__all__


def test_the_client_reaches_the_supervisor_by_typed_methods_only():
    assert not hasattr(DurableClient, "call_async")
    for name in ("get_record_async", "query_records_async", "read_entity_record_async"):
        assert callable(getattr(DurableClient, name)), name
