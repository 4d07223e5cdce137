"""From an engine step to a store checkpoint: what a host commits for each operation.

Pure: no store, no Ray. The host commits what these functions build, then dispatches.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ...entity_id import EntityId
from ...errors import DurableError, SerializationError
from ...messages import LockOwner, OrderedSignal, SenderId, Unlock, encode_message
from ...orchestration import history as h
from ...orchestration.codec import encode_event
from ...orchestration.engine import OrchestrationExecutor, Step
from ...orchestration.spans import InstanceTrace, SpanRecord
from ...orchestration.status import OrchestrationStatus
from ...serialization import dumps, failure_of
from ...store import Checkpoint


@dataclass
class Live:
    """An instance held in a host's memory."""

    instance_id: str
    execution_id: str
    name: str
    version: str
    executor: OrchestrationExecutor
    history_length: int
    parent_instance_id: str | None = None
    parent_seq: int | None = None
    last_message_id: int = 0
    done: bool = False
    unlocks: list[tuple[str, str, bytes]] = field(default_factory=list)
    #: activities submitted to Ray and not answered yet, and those waiting for a slot
    in_flight: int = 0
    waiting: deque[h.TaskScheduled] = field(default_factory=deque)
    #: the execution's spans when tracing is on, and those its uncommitted steps finished
    trace: InstanceTrace | None = None
    spans: list[SpanRecord] = field(default_factory=list)

    def traced(self, events: list[h.HistoryEvent]) -> None:
        """Build the spans ``events`` finish (exported once their step is committed)."""
        if self.trace is not None:
            self.spans += self.trace.observe(events)


@dataclass
class Arrival:
    """An event for an instance: from its inbox (``message_id``) or a result it awaited."""

    instance_id: str
    execution_id: str | None
    event: h.HistoryEvent
    message_id: int | None = None


def now_utc(clock: Callable[[], float] | None = None) -> datetime:
    """The hub's current time as an aware UTC datetime."""
    return datetime.fromtimestamp((clock or time.time)(), tz=timezone.utc)


def continue_as_new(live: Live, step: Step, clock: Callable[[], float] | None) -> Step:
    """Restart the execution in place; the checkpoint will replace the history."""
    while step.continued_as_new is not None:
        cont = step.continued_as_new
        # The ending execution's messages are sent by its id, so compute them now.
        live.unlocks.extend(outbox_rows(live, step.new_events, final=True))
        live.traced(step.new_events)
        live.execution_id = uuid.uuid4().hex
        under = None
        if live.trace is not None:  # the next execution is a sibling in the same trace
            under = live.trace.started_under
            live.trace = InstanceTrace(live.instance_id, live.execution_id)
        live.history_length = 0
        live.waiting.clear()  # the ended execution's activities are never needed now
        previous = live.executor
        live.executor = OrchestrationExecutor(previous.fn, live.instance_id)
        # Clients keep seeing the last custom status until the new execution sets one.
        live.executor.custom_status = previous.custom_status
        start = [
            h.OrchestratorStarted(now_utc(clock)),
            h.ExecutionStarted(
                live.name,
                cont.input,
                live.version,
                live.parent_instance_id,
                previous.activity_retry,
                under,
                previous.generation + 1,
            ),
            *cont.carried,
        ]
        step = live.executor.execute([], start)
        if step.continued_as_new is None:
            step.continued_as_new = cont  # tells checkpoint to replace the history
            break
    return step


def checkpoint(live: Live, step: Step, consumed: list[int]) -> Checkpoint:
    """The checkpoint of one step: events, status, timers, outbox, the answer to a parent."""
    ran = step.new_events
    try:
        events = [encode_event(e) for e in step.new_events]
        custom = dumps(step.custom_status, "custom status")
        output = dumps(step.output, "orchestration output") if step.is_terminal else None
    except SerializationError as exc:
        # The value that does not pickle fails this instance; nothing half-written.
        live.executor = OrchestrationExecutor(live.executor.fn, live.instance_id)
        step.status, step.output, step.failure = (
            OrchestrationStatus.FAILED,
            None,
            failure_of(exc),
        )
        step.new_events = [h.ExecutionCompleted(OrchestrationStatus.FAILED, None, step.failure)]
        step.continued_as_new = None
        events = [encode_event(step.new_events[0])]
        custom, output = None, dumps(None)
    if ran is not step.new_events:  # the execution span still starts where the step did
        live.traced([e for e in ran if isinstance(e, _OPENING)])
    live.traced(step.new_events)
    cp = Checkpoint(
        instance_id=live.instance_id,
        execution_id=live.execution_id,
        events=events,
        first_index=live.history_length,
        custom_status=custom,
        consumed_inbox=consumed,
        status=str(step.status),
        output=output,
        failure=dumps(step.failure) if step.failure else None,
        timers=[
            (e.seq, e.fire_at.timestamp()) for e in step.new_events if isinstance(e, h.TimerCreated)
        ],
    )
    outbox = outbox_rows(live, step.new_events, final=step.is_terminal)
    cp.outbox, live.unlocks = [*live.unlocks, *outbox], []
    if step.continued_as_new is not None:
        cp.replace_history, cp.first_index = True, 0
        cp.input = dumps(step.continued_as_new.input)
    if step.is_terminal and live.parent_instance_id is not None:
        answer = encode_event(answer_parent(live, step))
        cp.outgoing.append((live.parent_instance_id, answer))
    live.history_length = cp.first_index + len(events)
    return cp


#: What a step that fails on an unpicklable value keeps of itself, for its trace.
_OPENING = (h.OrchestratorStarted, h.ExecutionStarted)


def outbox_rows(
    live: Live, events: list[h.HistoryEvent], final: bool
) -> list[tuple[str, str, bytes]]:
    """Outbox rows: unlocks of ended critical sections, and the signals of a final step.

    A running execution re-sends its signals when it is activated again; one that has
    ended never is, so the signals of its last step travel in the outbox.
    """
    sender = SenderId(live.instance_id, live.execution_id)
    rows = []
    for e in events:
        if isinstance(e, h.LockReleased):
            rows += unlock_rows(sender, [e])
        elif final and isinstance(e, h.EntitySignaled):
            target, blob = EntityId.parse(e.entity), dumps(e.input, "entity input")
            signal = OrderedSignal(target, e.operation, blob, sender, e.counter)
            rows.append(encode_message(signal))
    return rows


def unlock_rows(sender: SenderId, releases: list[h.LockReleased]) -> list[tuple[str, str, bytes]]:
    """The outbox rows that unlock each entity of ``releases`` for ``sender``."""
    return [
        encode_message(Unlock(EntityId.parse(entity), LockOwner(sender, e.lock_seq), counter))
        for e in releases
        for entity, counter in zip(e.entities, e.counters)
    ]


def answer_parent(live: Live, step: Step) -> h.HistoryEvent:
    """A child's terminal step, as its parent's history records it."""
    if step.status == OrchestrationStatus.COMPLETED:
        return h.SubOrchestrationCompleted(live.parent_seq or 0, step.output)
    failure = step.failure or failure_of(DurableError(f"child {step.status}: {step.output}"))
    return h.SubOrchestrationFailed(live.parent_seq or 0, failure)
