"""The pure replay engine: what orchestrator code uses (the context, tasks, retry policies).

Internals (the executor, history events, per-event handlers) live in their modules:
``runtime.orchestration.engine``, ``.history``, ``.tasks``, ``.status``.
"""

from .engine import OrchestrationContext, RetryPolicy
from .engine import OrchestrationExecutor as OrchestrationExecutor  # not public: see below
from .status import OrchestrationStatus
from .tasks import EventTimeoutError, Task

# OrchestrationExecutor is not public (absent from __all__); it stays importable here only
# for callers written before its home, ``runtime.orchestration.engine``, was the one to use.
__all__ = [
    "EventTimeoutError",
    "OrchestrationContext",
    "OrchestrationStatus",
    "RetryPolicy",
    "Task",
]
