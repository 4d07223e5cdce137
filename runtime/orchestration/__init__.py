"""The pure replay engine: history events, tasks, the context and the executor."""

from .engine import OrchestrationContext, OrchestrationExecutor, RetryPolicy, Step
from .status import OrchestrationStatus
from .tasks import EventTimeoutError, Task

__all__ = [
    "EventTimeoutError",
    "OrchestrationContext",
    "OrchestrationExecutor",
    "OrchestrationStatus",
    "RetryPolicy",
    "Step",
    "Task",
]
