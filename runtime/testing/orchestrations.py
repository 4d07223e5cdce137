"""Orchestrations in the test environment: what a host and the supervisor do, in-process.

Each instance keeps a live executor (the real engine), as a host does: arriving events are
queued per instance and applied together in one ``execute`` (one episode, stamped with the
environment's clock), the step's events are encoded with the real codec into the memory
store, and only then are its actions dispatched: activities run in-process, timers go to
the scheduler, children start, entity messages go to ``Entities``. Every event that
crosses from one part to another travels as a copy, decoded from its encoded form, as it
would between processes. When an execution ends, its recorded history is replayed with a
fresh executor: an orchestrator that would not replay (it reads the wall clock, draws
random numbers, ...) fails the test there instead of in production.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    DurableError,
    InstanceExistsError,
    NonDeterminismError,
    SerializationError,
)
from ..messages import Outcome, SenderId
from ..orchestration import history as h
from ..orchestration.codec import decode_event, encode_event
from ..orchestration.engine import OrchestrationExecutor, Step
from ..orchestration.status import OrchestrationStatus
from ..registry import Orchestrator
from ..serialization import dumps, failure_of
from ..store.base import InstanceRecord
from .code import Code
from .entities import Entities
from .memory_store import MemoryStore
from .replayer import replay_events
from .scheduler import Scheduler

PENDING, RUNNING = str(OrchestrationStatus.PENDING), str(OrchestrationStatus.RUNNING)


@dataclass
class _Live:
    instance_id: str
    execution_id: str
    orchestrator: Orchestrator
    executor: OrchestrationExecutor
    inbox: list[tuple[str | None, h.HistoryEvent]] = field(default_factory=list)
    queued: bool = False
    replace_history: bool = False


class Orchestrations:
    """Every orchestration instance of one test environment."""

    def __init__(
        self,
        store: MemoryStore,
        scheduler: Scheduler,
        code: Code,
        entities: Entities,
        activity_retry: Any = None,
        check_replay: bool = True,
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._code = code
        self._entities = entities
        self._activity_retry = activity_retry
        self._check_replay = check_replay
        self.live: dict[str, _Live] = {}

    # -- starting and delivering ------------------------------------------------------

    def start(
        self,
        orchestrator: Any,
        input: Any = None,
        instance_id: str | None = None,
        version: str | None = None,
        parent: tuple[str, int] | None = None,
    ) -> str:
        """Create an instance and queue its start; nothing is stored if anything is refused."""
        orch = self._code.orchestrator(orchestrator, version)
        iid = instance_id or uuid.uuid4().hex
        existing = self._store.load_instance(iid)
        if existing is not None and not OrchestrationStatus(existing.status).is_terminal:
            raise InstanceExistsError(iid, existing.status)
        started = h.ExecutionStarted(
            orch.name, input, orch.version, parent[0] if parent else None, self._activity_retry
        )
        blob = encode_event(started, "orchestration input")
        now = self._scheduler.now.timestamp()
        record = InstanceRecord(
            instance_id=iid,
            name=orch.name,
            version=orch.version,
            status=PENDING,
            execution_id=uuid.uuid4().hex,
            created_time=now,
            last_updated_time=now,
            input=dumps(input, "orchestration input"),
            parent_instance_id=parent[0] if parent else None,
            parent_seq=parent[1] if parent else None,
        )
        self._store.create_instance(record)
        executor = OrchestrationExecutor(orch.fn, iid)
        self.live[iid] = _Live(iid, record.execution_id, orch, executor)
        self.deliver(iid, decode_event(blob))
        return iid

    def deliver(
        self, instance_id: str, event: h.HistoryEvent, execution: str | None = None
    ) -> None:
        """Queue an event for a live instance (``execution``: only for that execution)."""
        live = self.live.get(instance_id)
        if live is None:
            return  # ended: a late answer, or a timer of a finished execution
        live.inbox.append((execution, event))
        if not live.queued:
            live.queued = True
            self._scheduler.call_soon(functools.partial(self._process, instance_id))

    def is_alive(self, instance_id: str, execution_id: str) -> bool:
        """True while that execution of the instance runs."""
        live = self.live.get(instance_id)
        return live is not None and live.execution_id == execution_id

    # -- one episode ----------------------------------------------------------------------

    def _process(self, instance_id: str) -> None:
        live = self.live.get(instance_id)
        if live is None:
            return
        live.queued = False
        arrivals, live.inbox = live.inbox, []
        events = [e for x, e in arrivals if x is None or x == live.execution_id]
        if not events:
            return
        step = self._record(live, live.executor.execute([], [self._stamp(), *events]))
        while step.continued_as_new is not None:
            self._scheduler.count_step()
            step = self._record(live, self._continue_as_new(live, step.continued_as_new))

    def _stamp(self) -> h.OrchestratorStarted:
        return h.OrchestratorStarted(self._scheduler.now)

    def _continue_as_new(self, live: _Live, cont: h.ContinuedAsNew) -> Step:
        previous = live.executor
        live.execution_id = uuid.uuid4().hex
        live.executor = OrchestrationExecutor(previous.fn, live.instance_id)
        # Clients keep seeing the last custom status until the new execution sets one.
        live.executor.custom_status = previous.custom_status
        live.replace_history = True
        record = self._store.instances[live.instance_id]
        start = h.ExecutionStarted(
            live.orchestrator.name,
            cont.input,
            live.orchestrator.version,
            record.parent_instance_id,
            previous.activity_retry,
            generation=previous.generation + 1,
        )
        self._store.update(
            live.instance_id,
            execution_id=live.execution_id,
            input=dumps(cont.input, "orchestration input"),
        )
        return live.executor.execute([], [self._stamp(), start, *cont.carried])

    def _record(self, live: _Live, step: Step) -> Step:
        """Commit the step's events (the real codec) and state, then dispatch its actions."""
        broken = False
        try:
            blobs = [encode_event(e) for e in step.new_events]
            custom = dumps(step.custom_status, "custom status")
            output = dumps(step.output, "orchestration output") if step.is_terminal else None
        except SerializationError as exc:
            # As on a host: the value that does not pickle fails the instance, nothing else.
            broken = True
            step = Step(status=OrchestrationStatus.FAILED, failure=failure_of(exc))
            step.new_events = [h.ExecutionCompleted(OrchestrationStatus.FAILED, None, step.failure)]
            blobs, custom, output = [encode_event(step.new_events[0])], None, dumps(None)
        self._store.append_history(live.instance_id, blobs, live.replace_history)
        live.replace_history = False
        fields: dict[str, Any] = {
            "status": str(step.status),
            "custom_status": custom,
            "last_updated_time": self._scheduler.now.timestamp(),
        }
        if step.is_terminal and step.continued_as_new is None:
            fields.update(output=output, failure=dumps(step.failure) if step.failure else None)
        elif step.continued_as_new is not None:
            fields["status"] = RUNNING  # the next execution starts at once
        self._store.update(live.instance_id, **fields)
        for blob in blobs:
            self._dispatch(live, decode_event(blob))
        if step.is_terminal:
            if self._check_replay and not broken:
                self._replay(live)
            if step.continued_as_new is None:
                self._end(live, step)
        return step

    def _replay(self, live: _Live) -> None:
        events = [decode_event(b) for b in self._store.load_history(live.instance_id)]
        result = replay_events(live.executor.fn, events, live.instance_id, live.orchestrator.name)
        if not result.ok:
            raise NonDeterminismError(
                f"instance {live.instance_id!r} ({live.orchestrator.name}) ran, but its recorded "
                f"history does not replay: {result.error}. An orchestrator must make the same "
                "calls on every replay: take time from ctx.current_utc_datetime, ids from "
                "ctx.new_uuid(), and anything else nondeterministic from an activity"
            )

    def _end(self, live: _Live, step: Step) -> None:
        self.live.pop(live.instance_id, None)
        record = self._store.instances[live.instance_id]
        if record.parent_instance_id is None:
            return
        seq = record.parent_seq or 0
        answer: h.HistoryEvent
        if step.status == OrchestrationStatus.COMPLETED:
            answer = h.SubOrchestrationCompleted(seq, step.output)
        else:
            failure = step.failure or failure_of(
                DurableError(f"child {step.status}: {step.output}")
            )
            answer = h.SubOrchestrationFailed(seq, failure)
        self.deliver(record.parent_instance_id, decode_event(encode_event(answer)))

    # -- dispatching actions ------------------------------------------------------------

    def _dispatch(self, live: _Live, action: h.HistoryEvent) -> None:
        iid, execution = live.instance_id, live.execution_id
        target = live.executor.targets.get(getattr(action, "seq", -1))
        soon = self._scheduler.call_soon
        if isinstance(action, h.TaskScheduled):
            soon(functools.partial(self._run_activity, iid, execution, action, target))
        elif isinstance(action, h.SubOrchestrationCreated):
            soon(functools.partial(self._start_child, iid, action, target))
        elif isinstance(action, h.TimerCreated):
            fired = h.TimerFired(action.seq, action.fire_at)
            self._scheduler.call_at(
                action.fire_at,
                functools.partial(self.deliver, iid, fired, execution),
                functools.partial(self.is_alive, iid, execution),
            )
        elif isinstance(action, h.EntityCalled):
            reply = self._entity_reply(iid, execution, action.seq)
            self._entities.from_orchestration(SenderId(iid, execution), action, reply)
        elif isinstance(action, h.EntitySignaled):
            self._entities.from_orchestration(SenderId(iid, execution), action, None)
        elif isinstance(action, h.LockRequested):
            granted = functools.partial(self.deliver, iid, h.LockGranted(action.seq), execution)
            self._entities.acquire(SenderId(iid, execution), action, granted)
        elif isinstance(action, h.LockReleased):
            self._entities.release(SenderId(iid, execution), action)

    def _entity_reply(self, iid: str, execution: str, seq: int) -> Callable[[Outcome], None]:
        def reply(outcome: Outcome) -> None:
            event: h.HistoryEvent = (
                h.EntityResponded(seq, outcome.value)
                if outcome.failure is None
                else h.EntityFailed(seq, outcome.failure)
            )
            self.deliver(iid, event, execution)

        return reply

    def _run_activity(self, iid: str, execution: str, action: h.TaskScheduled, target: Any) -> None:
        try:
            activity = self._code.activity(action.name, target)
        except DurableError as exc:
            self.deliver(iid, h.TaskFailed(action.seq, failure_of(exc)), execution)
            return
        inline = activity.inline if action.inline is None else action.inline
        # An inline activity is no Ray task: Ray's retries never apply to it. (Its timeout
        # is not enforced here: the environment runs every activity on the caller's thread.)
        retries = _ray_retries({} if inline else activity.options)
        calls = self._code.calls.setdefault(action.name, [])
        while True:
            calls.append(action.input)
            try:
                event: h.HistoryEvent = h.TaskCompleted(action.seq, activity.run(action.input))
                # The result crosses from the worker to the host: a copy, or a failure.
                event = decode_event(encode_event(event, f"result of activity {action.name!r}"))
            except Exception as exc:
                if retries(exc):
                    continue  # Ray's own retry of the task (max_retries, retry_exceptions)
                event = h.TaskFailed(action.seq, failure_of(exc))
            break
        self.deliver(iid, event, execution)

    def _start_child(self, parent: str, action: h.SubOrchestrationCreated, target: Any) -> None:
        try:
            self.start(
                target if target is not None else action.name,
                action.input,
                action.instance_id,
                action.version or None,
                (parent, action.seq),
            )
        except DurableError as exc:
            self.deliver(parent, h.SubOrchestrationFailed(action.seq, failure_of(exc)))

    # -- what a stuck instance waits for ---------------------------------------------------

    def waits_for(self, instance_id: str) -> list[str]:
        """What a live instance waits for, in words (for NoProgressError)."""
        live = self.live.get(instance_id)
        if live is None:
            return []
        executor = live.executor
        waits = [
            f"external event {name!r} (env.raise_event)"
            for name, queue in getattr(executor, "_waiters", {}).items()
            if any(not task.is_complete for task in queue)
        ]
        for action in executor.open_actions():
            if isinstance(action, h.SubOrchestrationCreated):
                waits.append(f"sub-orchestration {action.name!r} ({action.instance_id})")
            elif isinstance(action, h.EntityCalled):
                waits.append(f"operation {action.operation!r} of entity {action.entity}")
            elif isinstance(action, h.LockRequested):
                holders = {e: self._entities.holder(e) for e in action.entities}
                held = [
                    f"{e} (held by {o})" for e, o in holders.items() if o not in (None, instance_id)
                ]
                waits.append(f"a lock on {', '.join(held or action.entities)}")
        if executor.suspended:
            waits.append("env.resume (it is suspended)")
        return waits


def _ray_retries(options: dict[str, Any]) -> Callable[[BaseException], bool]:
    """Whether Ray would run a failed activity again (``retry_exceptions``, ``max_retries``)."""
    allowed = options.get("retry_exceptions", False)
    limit = options.get("max_retries", 3)
    left = [limit if limit >= 0 else 1000]  # -1: Ray retries forever; a test stops somewhere

    def again(exc: BaseException) -> bool:
        if not allowed or left[0] == 0:
            return False
        if isinstance(allowed, (list, tuple)) and not isinstance(exc, tuple(allowed)):
            return False
        left[0] -= 1
        return True

    return again
