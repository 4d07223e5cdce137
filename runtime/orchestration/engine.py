"""The pure replay engine.

``OrchestrationExecutor`` runs one execution of an orchestrator generator against its
history. It imports neither Ray nor sqlite3 and reads no clock: time arrives in
``OrchestratorStarted`` events. A host keeps one executor per live instance and feeds it
only new events, so the normal path never replays; replay happens once, on activation,
and costs O(history).

``execute`` never raises for a user's error: failures become an ``ExecutionCompleted``
event with status ``Failed``.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..entity_id import EntityId
from ..errors import (
    ArgumentTypeError,
    FailureDetails,
    InvalidArgumentError,
    InvalidOperationError,
    NonDeterminismError,
    TaskFailedError,
)
from ..registry import check_inline
from ..serialization import failure_of
from . import history as h
from .status import OrchestrationStatus
from .tasks import (
    ActivityTask,
    EntityTask,
    EventTimeoutError,
    ExternalEventTask,
    SubOrchestrationTask,
    Task,
    TimerTask,
    WhenAllTask,
    WhenAnyTask,
)

_UUID_NAMESPACE = uuid.UUID("9e952958-5e33-4daf-827f-2fa12937b875")


@dataclass(frozen=True)
class RetryPolicy:
    """How ``call_activity_with_retry`` retries; the waits are durable timers."""

    first_retry_interval: timedelta
    max_number_of_attempts: int
    backoff_coefficient: float = 1.0
    max_retry_interval: timedelta | None = None
    retry_timeout: timedelta | None = None

    def __post_init__(self) -> None:
        _timedelta("RetryPolicy.first_retry_interval", self.first_retry_interval)
        if self.first_retry_interval <= timedelta(0):
            raise InvalidArgumentError.of(
                "RetryPolicy.first_retry_interval",
                "a positive timedelta",
                self.first_retry_interval,
            )
        attempts = self.max_number_of_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise ArgumentTypeError.of("RetryPolicy.max_number_of_attempts", "an integer", attempts)
        if attempts < 1:
            raise InvalidArgumentError.of(
                "RetryPolicy.max_number_of_attempts", "at least 1", attempts
            )
        backoff = self.backoff_coefficient
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)):
            raise ArgumentTypeError.of("RetryPolicy.backoff_coefficient", "a number", backoff)
        if not backoff >= 1.0:  # also refuses NaN
            raise InvalidArgumentError.of(
                "RetryPolicy.backoff_coefficient", "at least 1.0", backoff
            )
        _timedelta("RetryPolicy.max_retry_interval", self.max_retry_interval, optional=True)
        _timedelta("RetryPolicy.retry_timeout", self.retry_timeout, optional=True)

    def delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        delay = self.first_retry_interval * (self.backoff_coefficient ** (attempt - 1))
        if self.max_retry_interval is not None:
            delay = min(delay, self.max_retry_interval)
        return delay


@dataclass
class Step:
    """What one ``execute`` call produced: events to append and the resulting status."""

    new_events: list[h.HistoryEvent] = field(default_factory=list)
    status: str = OrchestrationStatus.RUNNING
    output: Any = None
    failure: FailureDetails | None = None
    custom_status: Any = None
    continued_as_new: h.ContinuedAsNew | None = None

    @property
    def is_terminal(self) -> bool:
        """True if the execution ended (including by continue-as-new)."""
        return self.status not in (OrchestrationStatus.RUNNING, OrchestrationStatus.SUSPENDED)


class _RetryableTask(Task):
    """An activity or child with retries; each attempt and wait is its own action."""

    def __init__(
        self, ctx: OrchestrationContext, policy: RetryPolicy, attempt: Callable[[int], Task]
    ) -> None:
        super().__init__()
        self._ctx = ctx
        self._policy = policy
        self._start_attempt = attempt
        self._attempts = 0
        self._started = ctx.current_utc_datetime
        self._next()

    def _next(self) -> None:
        self._attempts += 1
        child = self._start_attempt(self._attempts)
        child._parents.append(self)  # type: ignore[arg-type]
        if child.is_complete:
            self._on_child_done(child)

    def _on_child_done(self, child: Task) -> None:
        if isinstance(child, TimerTask):
            self._next()
        elif not child.is_failed:
            self._complete(child._result)
        elif self._may_retry():
            timer = self._ctx.create_timer(
                self._ctx.current_utc_datetime + self._policy.delay(self._attempts)
            )
            timer._parents.append(self)  # type: ignore[arg-type]
        else:
            self._fail(child.get_exception())  # type: ignore[arg-type]

    def _may_retry(self) -> bool:
        if self._attempts >= self._policy.max_number_of_attempts:
            return False
        timeout = self._policy.retry_timeout
        if timeout is None:
            return True
        waited = self._ctx.current_utc_datetime - self._started
        return waited + self._policy.delay(self._attempts) <= timeout


class OrchestrationContext:
    """What an orchestrator function sees: its input, deterministic time and actions."""

    def __init__(self, executor: OrchestrationExecutor) -> None:
        self._ex = executor

    @property
    def instance_id(self) -> str:
        """This instance's id."""
        return self._ex.instance_id

    @property
    def is_replaying(self) -> bool:
        """True while the engine re-runs code for events already in history."""
        return self._ex.is_replaying

    @property
    def current_utc_datetime(self) -> datetime:
        """The time of the current episode, the same on every replay."""
        return self._ex.current_time

    def get_input(self) -> Any:
        """The input the instance was started (or continued as new) with."""
        return self._ex.input

    def new_uuid(self) -> str:
        """A UUID that is the same on every replay of this point of the code."""
        self._ex.uuid_counter += 1
        name = f"{self.instance_id}_{self.current_utc_datetime.isoformat()}"
        return str(uuid.uuid5(_UUID_NAMESPACE, f"{name}_{self._ex.uuid_counter}"))

    def set_custom_status(self, value: Any) -> None:
        """Publish a value that clients see in the instance's status while it runs."""
        self._ex.custom_status = value

    def call_activity(
        self,
        activity: Any,
        input: Any = None,
        *,
        inline: bool | None = None,
        timeout: float | None = None,
    ) -> Task:
        """Schedule an activity (an ``@activity`` function or its registered name);
        ``inline=True`` runs it in the host's process, within ``timeout`` seconds."""
        check_inline(inline, timeout, "call_activity")
        if self._ex.activity_retry is not None:  # the hub's default policy
            return self._retried(activity, self._ex.activity_retry, input, inline, timeout)
        return self._schedule_activity(activity, input, inline, timeout)

    def _schedule_activity(
        self,
        activity: Any,
        input: Any,
        inline: bool | None,
        timeout: float | None,
        attempt: int | None = None,
    ) -> Task:
        name = _name_of(activity, "call_activity(activity)")
        task = ActivityTask(name)
        action = h.TaskScheduled(self._ex.next_seq(), name, input, inline, timeout, attempt)
        self._ex.schedule(action, task, activity)
        return task

    def call_activity_with_retry(
        self,
        activity: Any,
        retry_policy: RetryPolicy,
        input: Any = None,
        *,
        inline: bool | None = None,
        timeout: float | None = None,
    ) -> Task:
        """Schedule an activity that is retried after durable waits when it fails."""
        _policy(retry_policy, "call_activity_with_retry")
        check_inline(inline, timeout, "call_activity_with_retry")
        return self._retried(activity, retry_policy, input, inline, timeout)

    def _retried(
        self,
        activity: Any,
        policy: RetryPolicy,
        input: Any,
        inline: bool | None,
        timeout: float | None,
    ) -> Task:
        def attempt(number: int) -> Task:
            # The first try is recorded as an unretried call is (no attempt field).
            tried = number if number > 1 else None
            return self._schedule_activity(activity, input, inline, timeout, tried)

        return _RetryableTask(self, policy, attempt)

    def call_sub_orchestrator(
        self,
        orchestrator: Any,
        input: Any = None,
        instance_id: str | None = None,
        version: str = "",
    ) -> Task:
        """Start a child orchestration and wait for its output."""
        name = _name_of(orchestrator, "call_sub_orchestrator(orchestrator)")
        if instance_id is not None:
            _non_empty("call_sub_orchestrator(instance_id)", instance_id)
        if not isinstance(version, str):
            raise InvalidArgumentError.of("call_sub_orchestrator(version)", "a string", version)
        seq = self._ex.next_seq()
        child_id = instance_id or f"{self.instance_id}:{seq}"
        task = SubOrchestrationTask(name)
        event = h.SubOrchestrationCreated(seq, name, child_id, input, version)
        self._ex.schedule(event, task, orchestrator)
        return task

    def call_sub_orchestrator_with_retry(
        self,
        orchestrator: Any,
        retry_policy: RetryPolicy,
        input: Any = None,
        instance_id: str | None = None,
    ) -> Task:
        """Start a child orchestration, retried (as a new child) when it fails."""
        _policy(retry_policy, "call_sub_orchestrator_with_retry")
        if instance_id is not None:
            _non_empty("call_sub_orchestrator_with_retry(instance_id)", instance_id)

        def attempt(number: int) -> Task:
            child_id = None if instance_id is None else f"{instance_id}:{self._ex.seq}"
            return self.call_sub_orchestrator(orchestrator, input, child_id)

        return _RetryableTask(self, retry_policy, attempt)

    def create_timer(self, fire_at: datetime | timedelta) -> TimerTask:
        """A durable timer due at ``fire_at`` (an aware datetime, or a delay from now)."""
        if isinstance(fire_at, timedelta):
            fire_at = self.current_utc_datetime + fire_at
        expected = "a timezone-aware datetime (UTC) or a timedelta"
        if not isinstance(fire_at, datetime):
            raise ArgumentTypeError.of("create_timer(fire_at)", expected, fire_at)
        if fire_at.tzinfo is None:
            raise InvalidArgumentError.of("create_timer(fire_at)", expected, fire_at)
        task = TimerTask(fire_at)
        self._ex.schedule(h.TimerCreated(self._ex.next_seq(), fire_at), task, None)
        return task

    def wait_for_external_event(self, name: str, timeout: timedelta | None = None) -> Task:
        """The data of the next event ``name`` (case-insensitive), in arrival order."""
        _non_empty("wait_for_external_event(name)", name)
        _timedelta("wait_for_external_event(timeout)", timeout, optional=True)
        task = ExternalEventTask(name)
        self._ex.wait_for_event(task)
        if timeout is None or task.is_complete:
            return task
        timer = self.create_timer(timeout)
        return _EventWithTimeout(task, timer)

    def call_entity(self, entity_id: Any, operation: str, input: Any = None) -> Task:
        """Call an entity operation and wait for its result (durable both ways)."""
        target = str(EntityId.of(entity_id))
        _non_empty("call_entity(operation)", operation)
        task = EntityTask(target)
        action = h.EntityCalled(
            self._ex.next_seq(), target, operation, input, self._ex.next_counter(target)
        )
        self._ex.schedule(action, task, None)
        return task

    def signal_entity(self, entity_id: Any, operation: str, input: Any = None) -> None:
        """Send a one-way operation to an entity, delivered once this step commits."""
        target = str(EntityId.of(entity_id))
        _non_empty("signal_entity(operation)", operation)
        action = h.EntitySignaled(
            self._ex.next_seq(), target, operation, input, self._ex.next_counter(target)
        )
        self._ex.schedule(action, None, None)

    def lock(self, *entity_ids: Any) -> Task:
        """A task that resolves, once every entity is held, to a context manager.

        ``with (yield ctx.lock(a, b)):`` runs the block while other senders' operations on
        ``a`` and ``b`` wait. Entities are taken in one global order, so two orchestrations
        locking the same entities cannot deadlock.
        """
        if self._ex.held_lock is not None:
            raise InvalidOperationError("a critical section cannot be entered inside another one")
        targets = tuple(sorted({str(EntityId.of(e)) for e in entity_ids}))
        if not targets:
            raise InvalidArgumentError("lock(*entity_ids)", "at least one entity", "none")
        task = LockTask(targets)
        counters = tuple(self._ex.next_counter(t) for t in targets)
        self._ex.schedule(h.LockRequested(self._ex.next_seq(), targets, counters), task, None)
        return task

    def task_all(self, tasks: Iterable[Task]) -> WhenAllTask:
        """A task that completes with every result, or fails with the first failure."""
        return WhenAllTask(_tasks(tasks, "task_all(tasks)"))

    def task_any(self, tasks: Iterable[Task]) -> WhenAnyTask:
        """A task that completes with the first of ``tasks`` to complete."""
        return WhenAnyTask(_tasks(tasks, "task_any(tasks)"))

    def continue_as_new(self, input: Any = None, save_events: bool = True) -> None:
        """End this execution and start the instance afresh with ``input``."""
        self._ex.continue_as_new(input, save_events)


class LockTask(Task):
    """The result of ``ctx.lock``: resolves to a CriticalSection."""

    def __init__(self, entities: tuple[str, ...]) -> None:
        super().__init__()
        self.entities = entities

    def _fail_with(self, details: FailureDetails) -> None:
        self._fail(TaskFailedError(f"lock on {', '.join(self.entities)} failed", details))


class CriticalSection:
    """Held entities; leaving the ``with`` block releases them."""

    def __init__(self, executor: OrchestrationExecutor) -> None:
        self._ex = executor

    def __enter__(self) -> CriticalSection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._ex.release_lock()


class _EventWithTimeout(Task):
    """An external event task that fails with EventTimeoutError when its timer fires."""

    def __init__(self, event: ExternalEventTask, timer: TimerTask) -> None:
        super().__init__()
        self.name = event.name
        self._event = event
        self._timer = timer
        event._parents.append(self)  # type: ignore[arg-type]
        timer._parents.append(self)  # type: ignore[arg-type]

    def _on_child_done(self, child: Task) -> None:
        if child is self._event:
            self._timer.cancel()
            self._complete(child._result)
        else:
            self._event._fail(EventTimeoutError(self.name))
            self._fail(EventTimeoutError(self.name))


def _name_of(target: Any, argument: str) -> str:
    expected = "a registered function or its name"
    if isinstance(target, str):
        if not target or "\x00" in target:  # a store's text cannot hold NUL (PostgreSQL)
            raise InvalidArgumentError.of(argument, expected, target)
        return target
    name = getattr(target, "name", None) or getattr(target, "__name__", None)
    if not isinstance(name, str):
        raise ArgumentTypeError.of(argument, expected, target)
    return name


def _non_empty(argument: str, value: Any) -> None:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidArgumentError.of(argument, "a non-empty string without NUL", value)


def _timedelta(argument: str, value: Any, optional: bool = False) -> None:
    if not isinstance(value, timedelta) and not (optional and value is None):
        expected = "a timedelta or None" if optional else "a timedelta"
        raise ArgumentTypeError.of(argument, expected, value)


def _policy(value: Any, call: str) -> None:
    if not isinstance(value, RetryPolicy):
        raise ArgumentTypeError.of(f"{call}(retry_policy)", "a RetryPolicy", value)


def _tasks(tasks: Any, argument: str) -> list[Task]:
    if not isinstance(tasks, Iterable) or isinstance(tasks, (str, bytes, Task)):
        raise ArgumentTypeError.of(argument, "an iterable of tasks from the context", tasks)
    checked: list[Task] = []
    for task in list(tasks):
        if not isinstance(task, Task):
            raise ArgumentTypeError.of(argument, "tasks from the context", task)
        checked.append(task)
    return checked


class _ExecutionState:
    """What one execution knows, and what its context asks of it while the generator runs."""

    def __init__(self, fn: Callable[..., Any], instance_id: str) -> None:
        self.fn = fn
        self.instance_id = instance_id
        self.input: Any = None
        self.current_time = datetime.min
        self.is_replaying = False
        self.custom_status: Any = None
        self.uuid_counter = 0
        self.seq = 0
        self._gen: Any = None
        self._awaiting: Task | None = None
        self._open: dict[int, Task] = {}
        self._scheduled: dict[int, h.HistoryEvent] = {}
        self._pending: dict[int, h.HistoryEvent] = {}
        self.targets: dict[int, Any] = {}
        self.entity_counters: dict[str, int] = {}
        self.held_lock: h.LockRequested | None = None
        self._lock_requests: dict[int, h.LockRequested] = {}
        self.activity_retry: Any = None
        #: which execution of the instance this is (ExecutionStarted.generation)
        self.generation = 1
        self._waiters: dict[str, deque[ExternalEventTask]] = {}
        self._inbox: dict[str, deque[h.EventRaised]] = {}
        self._done: Step | None = None
        self.suspended = False
        self._held: list[h.HistoryEvent] = []
        self._held_answers: set[int] = set()
        self._continue: h.ContinuedAsNew | None = None
        #: the end the code reached while replaying, until history shows it recorded there
        self._ending: h.HistoryEvent | None = None
        self._out: list[h.HistoryEvent] = []

    # -- called by the context -------------------------------------------------------

    def next_seq(self) -> int:
        """The sequence number of the next action."""
        seq = self.seq
        self.seq += 1
        return seq

    def next_counter(self, entity: str) -> int:
        """The next message number to ``entity`` (entities apply them in this order)."""
        self.entity_counters[entity] = self.entity_counters.get(entity, 0) + 1
        return self.entity_counters[entity]

    def schedule(self, action: h.HistoryEvent, task: Task | None, target: Any) -> None:
        """Record an action the orchestrator took; it matches history or becomes new."""
        seq = action.seq  # type: ignore[attr-defined]
        if task is not None:
            self._open[seq] = task
        if isinstance(action, h.LockRequested):
            self._lock_requests[seq] = action
        self._pending[seq] = action
        if target is not None and not isinstance(target, str):
            self.targets[seq] = target

    def wait_for_event(self, task: ExternalEventTask) -> None:
        """Complete ``task`` with a buffered event, or queue it for the next one."""
        key = task.name.casefold()
        buffered = self._inbox.get(key)
        if buffered:
            task._complete(buffered.popleft().data)
        else:
            self._waiters.setdefault(key, deque()).append(task)

    def continue_as_new(self, input: Any, save_events: bool) -> None:
        """Mark the execution to restart with ``input`` when the generator next pauses."""
        carried: tuple[h.EventRaised, ...] = ()
        if save_events:
            carried = tuple(e for queue in self._inbox.values() for e in queue)
        self._continue = h.ContinuedAsNew(input, carried)

    def _carry_over(self, rest: Sequence[h.HistoryEvent]) -> None:
        """Messages that arrive after continue-as-new belong to the next execution."""
        done = self._done
        cont = done.continued_as_new if done is not None else None
        if done is None or cont is None:
            return
        moved = tuple(e for e in rest if not isinstance(e, (*h.COMPLETIONS, h.OrchestratorStarted)))
        cont = h.ContinuedAsNew(cont.input, cont.carried + moved)
        done.continued_as_new = cont
        self._out[-1] = cont


class OrchestrationExecutor(_ExecutionState):
    """Runs one execution of an orchestrator function against its history."""

    def __init__(self, fn: Callable[..., Any], instance_id: str) -> None:
        super().__init__(fn, instance_id)
        self._ctx = OrchestrationContext(self)

    # -- the entry point --------------------------------------------------------------

    def execute(
        self, old_events: Sequence[h.HistoryEvent], new_events: Sequence[h.HistoryEvent]
    ) -> Step:
        """Replay ``old_events``, apply ``new_events``; return what to append and status.

        ``old_events`` are already stored; ``new_events`` are appended unless they are
        duplicates (a completion for an action that is already complete).
        """
        self._out = []
        try:
            self.is_replaying = True
            for event in old_events:
                self._apply(event, replay=True)
            self._check_episode_matched()
            self.is_replaying = False
            for index, event in enumerate(new_events):
                if self._done is not None:
                    self._carry_over(new_events[index:])
                    break
                # Recorded before its handler runs, so the events it causes follow it.
                self._out.append(event)
                if not self._apply(event, replay=False):
                    self._out.pop()
            self._flush_actions()
        except NonDeterminismError as exc:
            self.is_replaying = False
            self._pending.clear()  # what a diverged replay asked for is never sent
            self._finish_failed(exc)
        return self._step()

    def open_actions(self) -> list[h.HistoryEvent]:
        """Actions recorded in history but not answered yet (to re-dispatch on activation)."""
        return list(self._scheduled.values())

    # -- applying events --------------------------------------------------------------

    def _apply(self, event: h.HistoryEvent, replay: bool) -> bool:
        if self.suspended and not isinstance(event, _NEVER_HELD):
            # Recorded now, applied on resume: replay holds and releases them the same way.
            if isinstance(event, h.COMPLETIONS):
                seq = event.seq
                late = seq not in self._scheduled or seq in self._held_answers
                if late and not replay:
                    return False  # a late or repeated answer: recorded once, as when running
                self._held_answers.add(seq)
            self._held.append(event)
            return True
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise NonDeterminismError(f"unknown history event type {type(event).__name__}")
        return handler(self, event, replay)

    def _on_execution_started(self, event: h.ExecutionStarted, replay: bool) -> bool:
        self.input = event.input
        self.activity_retry = event.activity_retry
        self.generation = event.generation or 1
        self._start()
        return True

    def _on_orchestrator_started(self, event: h.OrchestratorStarted, replay: bool) -> bool:
        if replay:
            self._check_episode_matched()
        self.current_time = event.timestamp
        return True

    def _on_scheduled(self, event: Any, replay: bool) -> bool:
        seq = event.seq
        action = self._pending.pop(seq, None)
        if action is None or type(action) is not type(event) or _key(action) != _key(event):
            raise NonDeterminismError(_mismatch(seq, event, action))
        if seq in self._open:  # one-way actions (signals) await no answer
            self._scheduled[seq] = event
        return True

    def _on_completion(self, event: Any, replay: bool) -> bool:
        task = self._open.pop(event.seq, None)
        self.targets.pop(event.seq, None)  # dispatched: a wide fan-out would keep one per task
        if self._scheduled.pop(event.seq, None) is None:
            if replay:
                raise NonDeterminismError(
                    f"history answers action #{event.seq}, which the code did not take"
                )
            return False  # a late or repeated answer: already recorded, keep it once
        if task is None:
            return True
        if isinstance(event, h.LockFailed):
            # Release what the request took before it was refused (an unlock of an entity
            # it never reached is harmless: see runtime/entity/core.py).
            self.schedule(self._released(self._lock_requests.pop(event.seq)), None, None)
            task._fail_with(event.failure)  # type: ignore[attr-defined]
        elif isinstance(event, (h.TaskFailed, h.SubOrchestrationFailed, h.EntityFailed)):
            task._fail_with(event.failure)  # type: ignore[attr-defined]
        elif isinstance(event, h.LockGranted):
            self.held_lock = self._lock_requests.pop(event.seq)
            task._complete(CriticalSection(self))
        elif isinstance(event, h.TimerFired):
            if not task.is_cancelled:  # type: ignore[attr-defined]
                task._complete(None)
        else:
            task._complete(event.result)
        self._resume()
        return True

    def _on_event_raised(self, event: h.EventRaised, replay: bool) -> bool:
        key = event.name.casefold()
        waiters = self._waiters.get(key)
        while waiters:
            task = waiters.popleft()
            if not task.is_complete:
                task._complete(event.data)
                self._resume()
                return True
        self._inbox.setdefault(key, deque()).append(event)
        return True

    def _on_terminated(self, event: h.ExecutionTerminated, replay: bool) -> bool:
        self._close_generator()
        self._done = Step(status=OrchestrationStatus.TERMINATED, output=event.reason)
        self._out_terminal(h.ExecutionCompleted(OrchestrationStatus.TERMINATED, event.reason))
        return True

    def _on_suspended(self, event: h.ExecutionSuspended, replay: bool) -> bool:
        self.suspended = True
        return True

    def _on_resumed(self, event: h.ExecutionResumed, replay: bool) -> bool:
        if not self.suspended:
            return True
        self.suspended = False
        held, self._held = self._held, []
        self._held_answers.clear()
        for waiting in held:
            if self._done is None:
                self._apply_held(waiting, replay)
        return True

    def _apply_held(self, event: h.HistoryEvent, replay: bool) -> None:
        # A held completion that turns out to be a duplicate is simply ignored: it was
        # recorded when it arrived, and replay makes the same decision.
        handler = _HANDLERS[type(event)]
        try:
            handler(self, event, replay)
        except NonDeterminismError:
            if not replay:
                raise

    def _on_ended(self, event: h.HistoryEvent, replay: bool) -> bool:
        # Where the execution ends is checked here; how it ends (its status, its output) is
        # the Replayer's to compare, with the code's own failure in its report.
        ending, self._ending = self._ending, None
        if ending is None:
            raise NonDeterminismError(
                f"non-deterministic orchestrator: the history recorded the execution ending "
                f"({_end_of(event)}) but the code now goes on there. {_CAUSE}"
            )
        if isinstance(event, h.ContinuedAsNew) and self._done is not None:
            if self._done.continued_as_new is not None:
                # The record also carries what arrived after the code continued as new (see
                # _carry_over), which replaying the code alone cannot know.
                self._done.continued_as_new = event
        return True

    # -- running the generator --------------------------------------------------------

    def _start(self) -> None:
        try:
            result = self.fn(self._ctx, self.input) if _takes_input(self.fn) else self.fn(self._ctx)
        except Exception as exc:
            self._finish_failed(exc)
            return
        if inspect.isgenerator(result):
            self._gen = result
            self._advance(lambda: next(self._gen))
            self._resume()  # its first yield may be a task complete already (task_all([]))
        else:
            self._finish(result)

    def _resume(self) -> None:
        while self._done is None and self._awaiting is not None and self._awaiting.is_complete:
            task, self._awaiting = self._awaiting, None
            if task.is_failed:
                self._advance(functools.partial(self._gen.throw, task.get_exception()))
            else:
                self._advance(functools.partial(self._gen.send, task._result))

    def _advance(self, step: Callable[[], Any]) -> None:
        try:
            yielded = step()
        except StopIteration as stop:
            self._finish(stop.value)
            return
        except Exception as exc:
            self._finish_failed(exc)
            return
        if self._continue is not None:
            self._finish(None)
        elif not isinstance(yielded, Task):
            self._close_generator()
            self._finish_failed(
                ArgumentTypeError.of(
                    "yield",
                    "a task from the context (orchestrators must yield tasks, such as "
                    "ctx.call_activity(...), not values)",
                    yielded,
                )
            )
        else:
            self._awaiting = yielded

    def _finish(self, output: Any) -> None:
        if self._continue is not None:
            self._done = Step(
                status=OrchestrationStatus.CONTINUED_AS_NEW, continued_as_new=self._continue
            )
            self._out_terminal(self._continue)
            return
        self._done = Step(status=OrchestrationStatus.COMPLETED, output=output)
        self._out_terminal(h.ExecutionCompleted(OrchestrationStatus.COMPLETED, output))

    def _finish_failed(self, exc: BaseException) -> None:
        details = failure_of(exc)
        self._done = Step(status=OrchestrationStatus.FAILED, failure=details)
        self._out_terminal(h.ExecutionCompleted(OrchestrationStatus.FAILED, None, details))

    def release_lock(self) -> None:
        """End the critical section: its entities are unlocked once this step commits."""
        lock, self.held_lock = self.held_lock, None
        if lock is not None:
            self.schedule(self._released(lock), None, None)

    def _released(self, lock: h.LockRequested) -> h.LockReleased:
        return h.LockReleased(self.next_seq(), lock.entities, lock.seq, lock.counters)

    def _out_terminal(self, event: h.HistoryEvent) -> None:
        # Actions the code took but did not await die with the execution, as in Temporal;
        # one-way messages do not: signals and the releases of critical sections (run by
        # closing the generator) were sent by the step that ends the execution.
        sent = {s: a for s, a in self._pending.items() if isinstance(a, _ONE_WAY)}
        unsent = set(self._pending) - set(sent)
        self._pending.clear()
        # An execution never ends holding entities, nor with a grant still on its way; a
        # request that dies unsent with this step was never seen by its entities.
        held = [self.held_lock] if self.held_lock is not None else []
        asked = [r for seq, r in self._lock_requests.items() if seq not in unsent]
        self.held_lock = None
        self._lock_requests.clear()
        for lock in [*held, *asked]:
            release = self._released(lock)
            sent[release.seq] = release
        if self.is_replaying:
            self._pending.update(sent)  # matched by the recorded events that follow
            self._ending = event
        else:
            self._out.extend(sent[seq] for seq in sorted(sent))
            self._out.append(event)

    def _close_generator(self) -> None:
        if self._gen is not None:
            self._gen.close()

    def _flush_actions(self) -> None:
        for seq in sorted(self._pending):
            action = self._pending[seq]
            if seq in self._open:
                self._scheduled[seq] = action
            self._out.append(action)
        self._pending.clear()

    def _check_episode_matched(self) -> None:
        if self._pending:
            seq = min(self._pending)
            raise NonDeterminismError(_mismatch(seq, None, self._pending[seq]))
        if self._ending is not None:
            raise NonDeterminismError(
                f"non-deterministic orchestrator: the code now ends the execution "
                f"({_end_of(self._ending)}) where the history recorded it going on. {_CAUSE}"
            )

    def _step(self) -> Step:
        step = self._done or Step(
            status=OrchestrationStatus.SUSPENDED if self.suspended else OrchestrationStatus.RUNNING
        )
        step.new_events = self._out
        step.custom_status = self.custom_status
        return step


#: Actions that are messages, not tasks: kept when the step that sends them ends the execution.
_ONE_WAY = (h.EntitySignaled, h.LockReleased)

#: What a suspension does not hold back: the client's controls, episode starts, and the
#: records of what the code itself did (a step that is suspended after its completion ran
#: the code still records the actions that completion caused, and replay must match them).
_NEVER_HELD = (
    h.ExecutionResumed,
    h.ExecutionTerminated,
    h.OrchestratorStarted,
    h.TaskScheduled,
    h.TimerCreated,
    h.SubOrchestrationCreated,
    h.EntityCalled,
    h.EntitySignaled,
    h.LockRequested,
    h.LockReleased,
    h.ExecutionCompleted,
    h.ContinuedAsNew,
)


def _takes_input(fn: Callable[..., Any]) -> bool:
    try:
        return _takes_input_of(fn)
    except TypeError:  # an unhashable callable object: not cached
        return _takes_input_of.__wrapped__(fn)


@functools.lru_cache(maxsize=1024)  # once per orchestrator function, not per instance
def _takes_input_of(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _key(action: Any) -> tuple[Any, ...]:
    if isinstance(action, h.TimerCreated):
        # A timer due at another time diverges too: the code would go on when it did not ask.
        return (action.fire_at,)
    if isinstance(action, (h.EntityCalled, h.EntitySignaled)):
        return (action.entity, action.operation)
    if isinstance(action, (h.LockRequested, h.LockReleased)):
        return (action.entities,)
    if isinstance(action, h.SubOrchestrationCreated):
        return (action.name, action.instance_id)
    return (action.name,)


def _describe(action: Any, timed: bool = False) -> str:
    if action is None:
        return "nothing"
    if isinstance(action, h.TimerCreated):
        return f"a durable timer due {action.fire_at.isoformat()}" if timed else "a durable timer"
    if isinstance(action, h.SubOrchestrationCreated):
        return f"sub-orchestration {action.name!r} ({action.instance_id})"
    if isinstance(action, (h.EntityCalled, h.EntitySignaled)):
        return f"entity operation {action.operation!r} on {action.entity}"
    if isinstance(action, h.LockRequested):
        return f"a lock on {', '.join(action.entities)}"
    if isinstance(action, h.LockReleased):
        return f"the release of {', '.join(action.entities)}"
    return f"activity {action.name!r}"


_CAUSE = (
    "Most likely the orchestrator's code changed after this instance started; "
    "deploy changed code under a new version (or a new task hub) instead."
)


def _mismatch(seq: int, recorded: Any, now: Any) -> str:
    timed = isinstance(recorded, h.TimerCreated) and isinstance(now, h.TimerCreated)
    return (
        f"non-deterministic orchestrator: at action #{seq} the history recorded "
        f"{_describe(recorded, timed)} but the code now schedules {_describe(now, timed)}. "
        f"{_CAUSE}"
    )


def _end_of(event: Any) -> str:
    if isinstance(event, h.ContinuedAsNew):
        return str(OrchestrationStatus.CONTINUED_AS_NEW)
    return str(event.status)


_HANDLERS: dict[type, Callable[[OrchestrationExecutor, Any, bool], bool]] = {
    h.ExecutionStarted: OrchestrationExecutor._on_execution_started,
    h.OrchestratorStarted: OrchestrationExecutor._on_orchestrator_started,
    h.TaskScheduled: OrchestrationExecutor._on_scheduled,
    h.TimerCreated: OrchestrationExecutor._on_scheduled,
    h.SubOrchestrationCreated: OrchestrationExecutor._on_scheduled,
    h.TaskCompleted: OrchestrationExecutor._on_completion,
    h.TaskFailed: OrchestrationExecutor._on_completion,
    h.TimerFired: OrchestrationExecutor._on_completion,
    h.SubOrchestrationCompleted: OrchestrationExecutor._on_completion,
    h.SubOrchestrationFailed: OrchestrationExecutor._on_completion,
    h.EventRaised: OrchestrationExecutor._on_event_raised,
    h.ExecutionTerminated: OrchestrationExecutor._on_terminated,
    h.EntityCalled: OrchestrationExecutor._on_scheduled,
    h.EntitySignaled: OrchestrationExecutor._on_scheduled,
    h.EntityResponded: OrchestrationExecutor._on_completion,
    h.EntityFailed: OrchestrationExecutor._on_completion,
    h.LockRequested: OrchestrationExecutor._on_scheduled,
    h.LockGranted: OrchestrationExecutor._on_completion,
    h.LockFailed: OrchestrationExecutor._on_completion,
    h.LockReleased: OrchestrationExecutor._on_scheduled,
    h.ExecutionSuspended: OrchestrationExecutor._on_suspended,
    h.ExecutionResumed: OrchestrationExecutor._on_resumed,
    h.ExecutionCompleted: OrchestrationExecutor._on_ended,
    h.ContinuedAsNew: OrchestrationExecutor._on_ended,
}
