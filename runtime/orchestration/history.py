"""History events: the append-only record of one orchestration execution.

Events are small frozen dataclasses. Payloads (inputs, results) are kept as Python
values here; ``codec`` gives them their stored form (a stable kind name per class). Events
that carry a ``seq`` answer or record the orchestrator's action with that sequence number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import FailureDetails


@dataclass(frozen=True)
class HistoryEvent:
    """Base class of every history event."""


@dataclass(frozen=True)
class ExecutionStarted(HistoryEvent):
    """The first event of an execution: what to run and with which input."""

    name: str
    input: Any = None
    version: str = ""
    parent_instance_id: str | None = None
    #: The hub's ``activity_defaults.retry`` when the execution started; recorded here so
    #: replay sees the policy the first run used, whatever the hub's settings are now.
    activity_retry: Any = None
    #: W3C traceparent of the span that started this execution (a client's start_new,
    #: a parent's sub-orchestration call): the execution's span is its child.
    trace: str | None = None
    #: which execution of the instance this is: 2 after the first continue-as-new (None: 1)
    generation: int | None = None


@dataclass(frozen=True)
class OrchestratorStarted(HistoryEvent):
    """Opens one episode; its timestamp is ``ctx.current_utc_datetime`` for the episode."""

    timestamp: datetime


@dataclass(frozen=True)
class TaskScheduled(HistoryEvent):
    """The orchestrator called an activity; also the outbox entry to dispatch it.

    ``inline`` and ``timeout`` are the call's own choice (None: as the activity was
    declared); recorded, so a call re-run after a crash runs where it first did.
    ``attempt`` numbers the tries of a retried call (None: not retried, or the first).
    """

    seq: int
    name: str
    input: Any = None
    inline: bool | None = None
    timeout: float | None = None
    attempt: int | None = None


@dataclass(frozen=True)
class TaskCompleted(HistoryEvent):
    """The activity with ``seq`` returned ``result``."""

    seq: int
    result: Any = None


@dataclass(frozen=True)
class TaskFailed(HistoryEvent):
    """The activity with ``seq`` raised."""

    seq: int
    failure: FailureDetails


@dataclass(frozen=True)
class TimerCreated(HistoryEvent):
    """The orchestrator created a durable timer due at ``fire_at`` (UTC)."""

    seq: int
    fire_at: datetime


@dataclass(frozen=True)
class TimerFired(HistoryEvent):
    """The timer with ``seq`` is due."""

    seq: int
    fire_at: datetime


@dataclass(frozen=True)
class EventRaised(HistoryEvent):
    """An external event arrived (kept until the orchestrator waits for it)."""

    name: str
    data: Any = None


@dataclass(frozen=True)
class SubOrchestrationCreated(HistoryEvent):
    """The orchestrator started a child orchestration."""

    seq: int
    name: str
    instance_id: str
    input: Any = None
    version: str = ""


@dataclass(frozen=True)
class SubOrchestrationCompleted(HistoryEvent):
    """The child started with ``seq`` completed with ``result``."""

    seq: int
    result: Any = None


@dataclass(frozen=True)
class SubOrchestrationFailed(HistoryEvent):
    """The child started with ``seq`` failed."""

    seq: int
    failure: FailureDetails


@dataclass(frozen=True)
class EntityCalled(HistoryEvent):
    """The orchestrator called an entity operation (two-way); ``counter`` orders its calls."""

    seq: int
    entity: str
    operation: str
    input: Any = None
    counter: int = 0


@dataclass(frozen=True)
class EntityResponded(HistoryEvent):
    """The entity call with ``seq`` returned ``result``."""

    seq: int
    result: Any = None


@dataclass(frozen=True)
class EntityFailed(HistoryEvent):
    """The entity call with ``seq`` raised."""

    seq: int
    failure: FailureDetails


@dataclass(frozen=True)
class EntitySignaled(HistoryEvent):
    """The orchestrator sent a one-way operation; ``counter`` orders it with its calls."""

    seq: int
    entity: str
    operation: str
    input: Any = None
    counter: int = 0


@dataclass(frozen=True)
class LockRequested(HistoryEvent):
    """The orchestrator asked for exclusive use of entities (taken in this order)."""

    seq: int
    entities: tuple[str, ...]
    counters: tuple[int, ...]


@dataclass(frozen=True)
class LockGranted(HistoryEvent):
    """Every entity of the lock request ``seq`` is held."""

    seq: int


@dataclass(frozen=True)
class LockFailed(HistoryEvent):
    """An entity of the lock request ``seq`` refused it (e.g. its type is not registered);
    the entities taken so far are released."""

    seq: int
    failure: FailureDetails


@dataclass(frozen=True)
class LockReleased(HistoryEvent):
    """The critical section of lock ``lock_seq`` ended (unlocks go through the outbox)."""

    seq: int
    entities: tuple[str, ...]
    lock_seq: int
    counters: tuple[int, ...] = ()


@dataclass(frozen=True)
class ExecutionTerminated(HistoryEvent):
    """A client terminated the instance."""

    reason: str = ""


@dataclass(frozen=True)
class ExecutionSuspended(HistoryEvent):
    """A client suspended the instance: later events wait until it is resumed."""

    reason: str = ""


@dataclass(frozen=True)
class ExecutionResumed(HistoryEvent):
    """A client resumed a suspended instance."""

    reason: str = ""


@dataclass(frozen=True)
class ExecutionCompleted(HistoryEvent):
    """The last event of an execution: its terminal status and outcome."""

    status: str
    output: Any = None
    failure: FailureDetails | None = None


@dataclass(frozen=True)
class ContinuedAsNew(HistoryEvent):
    """The orchestrator restarted itself with ``input``; ``carried`` events move over."""

    input: Any = None
    carried: tuple[HistoryEvent, ...] = ()


#: Events that answer an action and so must match exactly one scheduling event.
COMPLETIONS = (
    TaskCompleted,
    TaskFailed,
    TimerFired,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    EntityResponded,
    EntityFailed,
    LockGranted,
    LockFailed,
)
