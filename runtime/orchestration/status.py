"""Runtime statuses of an orchestration instance (Durable Functions names)."""

from __future__ import annotations

from enum import Enum


class OrchestrationStatus(str, Enum):
    """The ``runtime_status`` of an instance."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    TERMINATED = "Terminated"
    CONTINUED_AS_NEW = "ContinuedAsNew"
    SUSPENDED = "Suspended"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """True for statuses an instance never leaves by itself."""
        return self in TERMINAL


TERMINAL = frozenset(
    {OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED, OrchestrationStatus.TERMINATED}
)

#: Stored statuses that end an instance: it takes no more messages.
ENDED = tuple(str(s) for s in OrchestrationStatus if s.is_terminal)
#: Stored statuses of an instance that takes messages (ContinuedAsNew is never stored: the
#: next execution is Running at once; it is listed so that no status is left unanswered).
LIVE = tuple(str(s) for s in OrchestrationStatus if not s.is_terminal)
