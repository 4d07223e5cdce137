"""``DurableTestEnvironment``: run a user's orchestrations and entities in one process.

No Ray, no cluster, no files: the real replay engine and codec, an in-memory store,
activities called in-process (or mocked), entities on the ``entities`` model, and a clock
that skips: while a test waits (``wait_for_completion``, ``call_entity``), time jumps to
the next due timer whenever nothing else can run, so a 72-hour timeout takes milliseconds
and ``ctx.current_utc_datetime`` follows the skipped clock. Other calls (``start_new``,
``raise_event``, ...) run everything that can run *now* and return with time unmoved.

```python
env = DurableTestEnvironment(register=[approval_workflow])
env.mock_activity(escalate, lambda request: f"escalated {request}")
iid = env.start_new(approval_workflow, input="trip")
assert env.wait_for_completion(iid).output == "escalated trip"   # 72 h later, at once
```
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from typing import Any

from ..entity_id import EntityId
from ..errors import (
    ArgumentTypeError,
    DurableError,
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidArgumentError,
    InvalidOperationError,
    OperationTimeoutError,
    OrchestrationFailedError,
    TaskFailedError,
)
from ..messages import Outcome
from ..orchestration import history as h
from ..orchestration.codec import decode_event, encode_event
from ..orchestration.engine import RetryPolicy
from ..orchestration.status import OrchestrationStatus
from ..serialization import loads
from .code import Code, activity_name
from .entities import Entities
from .memory_store import MemoryStore
from .orchestrations import Orchestrations
from .scheduler import NoProgressError, Scheduler
from .states import EntityState, InstanceState, instance_state

__all__ = ["DurableTestEnvironment"]

_UNSET: Any = object()


class DurableTestEnvironment:
    """One in-process task hub for tests; every call runs to a quiet point and returns."""

    def __init__(
        self,
        register: Iterable[Any] = (),
        *,
        start: datetime | None = None,
        activity_retry: RetryPolicy | None = None,
        check_replay: bool = True,
        max_steps: int = 100_000,
    ) -> None:
        start = datetime.now(timezone.utc).replace(microsecond=0) if start is None else start
        if not isinstance(start, datetime) or start.tzinfo is None:
            raise InvalidArgumentError.of(
                "DurableTestEnvironment(start)", "a timezone-aware datetime", start
            )
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise InvalidArgumentError.of("max_steps", "a positive integer", max_steps)
        if activity_retry is not None and not isinstance(activity_retry, RetryPolicy):
            raise ArgumentTypeError.of("activity_retry", "a RetryPolicy or None", activity_retry)
        self.store = MemoryStore()
        self._code = Code()
        self._scheduler = Scheduler(start.astimezone(timezone.utc), max_steps)
        self._entities = Entities(self.store, self._scheduler, self._code, self._start_by_entity)
        self._orchestrations = Orchestrations(
            self.store, self._scheduler, self._code, self._entities, activity_retry, check_replay
        )
        self.register(*register)

    # -- code ---------------------------------------------------------------------------

    def register(self, *objects: Any) -> None:
        """Make orchestrators, activities and entities known by name (objects need not be)."""
        for obj in objects:
            self._code.register(obj)

    def mock_activity(
        self, activity: Any, fn: Any = None, *, returns: Any = _UNSET, raises: Any = None
    ) -> None:
        """Run ``fn(input)`` (or return ``returns``, or raise ``raises``) for an activity.

        ``activity`` is the @activity object or its name; the mock wins over the real
        function wherever the activity is called, by object or by name.
        """
        given = [fn is not None, returns is not _UNSET, raises is not None]
        if sum(given) != 1:
            raise InvalidArgumentError(
                "mock_activity", "exactly one of fn, returns= and raises=", f"{sum(given)} of them"
            )
        if returns is not _UNSET:
            fn = lambda *args: returns  # noqa: E731
        elif raises is not None:
            fn = _raiser(raises)
        self._code.mock(activity, fn)

    def activity_calls(self, activity: Any) -> list[Any]:
        """The input of every attempt of the activity so far (real or mocked), in order."""
        return list(self._code.calls.get(activity_name(activity), []))

    # -- orchestrations -----------------------------------------------------------------

    def start_new(
        self,
        orchestrator: Any,
        input: Any = None,
        instance_id: str | None = None,
        version: str | None = None,
    ) -> str:
        """Start an orchestration (an object or a registered name); returns its instance id."""
        iid = self._orchestrations.start(orchestrator, input, instance_id, version)
        self._scheduler.run_until_idle()
        return iid

    def raise_event(
        self, instance_id: str, event_name: str, data: Any = None, wait: bool = True
    ) -> Future | None:
        """Send an external event to a live instance (kept until it waits for it).

        ``wait=False``: as the client's, a Future (resolved here at once) instead of None.
        """
        if not isinstance(event_name, str) or not event_name:
            raise InvalidArgumentError.of("event_name", "a non-empty string", event_name)
        event = encode_event(h.EventRaised(event_name, data), "event data")
        future: Future = Future()
        try:
            self._live_record(instance_id, "it takes no more messages")
        except DurableError as refused:  # the client's Future carries its refusal
            if wait:
                raise
            future.set_exception(refused)
            return future
        self._orchestrations.deliver(instance_id, decode_event(event))
        self._scheduler.run_until_idle()
        future.set_result(None)
        return None if wait else future

    def terminate(self, instance_id: str, reason: str = "", recursive: bool = True) -> None:
        """Stop a live instance (and its live sub-orchestrations); it ends Terminated."""
        self._live_record(instance_id, "it cannot be terminated")
        self._terminate(instance_id, reason, recursive)
        self._scheduler.run_until_idle()

    def _terminate(self, instance_id: str, reason: str, recursive: bool) -> None:
        self._orchestrations.deliver(instance_id, h.ExecutionTerminated(reason))
        for child in self.store.children(instance_id) if recursive else ():
            if not OrchestrationStatus(child.status).is_terminal:
                self._terminate(child.instance_id, reason, True)

    def suspend(self, instance_id: str, reason: str = "") -> None:
        """Pause a live instance: events and results wait until ``resume``."""
        self._live_record(instance_id, "it cannot be suspended")
        self._orchestrations.deliver(instance_id, h.ExecutionSuspended(reason))
        self._scheduler.run_until_idle()

    def resume(self, instance_id: str, reason: str = "") -> None:
        """Let a Suspended instance go on; InvalidOperationError for any other status."""
        record = self._live_record(instance_id, "it cannot be resumed")
        if record.status != str(OrchestrationStatus.SUSPENDED):
            raise InvalidOperationError(
                f"instance {instance_id!r} is {record.status}, not Suspended; nothing to resume"
            )
        self._orchestrations.deliver(instance_id, h.ExecutionResumed(reason))
        self._scheduler.run_until_idle()

    def get_status(self, instance_id: str, show_history: bool = False) -> InstanceState | None:
        """The instance's status (with its decoded history if asked), or None if unknown."""
        record = self.store.load_instance(instance_id)
        if record is None:
            return None
        return instance_state(
            record, self.store.load_history(instance_id) if show_history else None
        )

    def history_json(self, instance_id: str) -> dict[str, Any]:
        """The JSON that ``durable status ID --history --json`` prints for this instance."""
        from ..driver.http_json import state_payload

        state = self.get_status(instance_id, show_history=True)
        if state is None:
            raise InstanceNotFoundError(instance_id)
        return state_payload(state)  # type: ignore[arg-type]  # the client's fields, duck-typed

    def wait_for_completion(
        self,
        instance_id: str,
        timeout: timedelta | float | None = None,
        raise_on_failure: bool = False,
    ) -> InstanceState:
        """Run, skipping time, until the instance ends; ``timeout`` is in test time."""
        self._record(instance_id)
        limit = None if timeout is None else _delta(timeout)
        deadline = None if limit is None else self._scheduler.now + limit
        ended = self._scheduler.run(lambda: self._ended(instance_id), True, deadline)
        if not ended:
            if limit is not None and self._scheduler.next_timer() is not None:
                raise OperationTimeoutError(
                    f"orchestration {instance_id!r} did not finish in test time",
                    limit.total_seconds(),
                )
            raise NoProgressError(self._stuck(instance_id))
        state = self.get_status(instance_id)
        assert state is not None
        if raise_on_failure and state.failure_details is not None:
            raise OrchestrationFailedError(instance_id, state.failure_details)
        return state

    # -- entities -----------------------------------------------------------------------

    def signal_entity(self, entity_id: EntityId | str, operation: str, input: Any = None) -> None:
        """Send a one-way operation; returns once it is applied (its errors stay with it)."""
        self._operate(entity_id, operation, input)

    def call_entity(self, entity_id: EntityId | str, operation: str, input: Any = None) -> Any:
        """Run an operation and return its result; raises its error.

        A typed error (a DurableError) comes as it was raised; any other comes as a
        TaskFailedError with its details (the client raises EntityOperationFailedError).
        """
        outcome = self._operate(entity_id, operation, input)
        if outcome.ok:
            return outcome.value
        if outcome.error is not None:
            raise outcome.error
        assert outcome.failure is not None
        raise TaskFailedError(
            f"operation {operation!r} of entity {EntityId.of(entity_id)} failed", outcome.failure
        )

    def read_entity_state(self, entity_id: EntityId | str) -> EntityState:
        """The entity's state as last committed (a copy)."""
        row = self.store.load_entity(str(EntityId.of(entity_id)))
        if row is None or not row[1]:
            return EntityState(False, None)
        return EntityState(True, loads(row[0], "entity state"))

    def _operate(self, entity_id: Any, operation: str, input: Any) -> Outcome:
        if not isinstance(operation, str) or not operation or operation.startswith("_"):
            raise InvalidArgumentError.of("operation", "a public operation name", operation)
        answers: list[Outcome] = []
        self._entities.from_client(entity_id, operation, input, answers.append)
        if not self._scheduler.run(lambda: bool(answers), True):
            holder = self._entities.holder(entity_id)
            held = f": it is locked by instance {holder!r}" if holder else ""
            raise NoProgressError(
                f"entity {EntityId.of(entity_id)} did not run {operation!r}{held}, and nothing "
                "in the environment can make progress"
            )
        return answers[0]

    def _start_by_entity(
        self, orchestrator: Any, input: Any, instance_id: str | None, version: str | None
    ) -> None:
        try:
            self._orchestrations.start(orchestrator, input, instance_id or None, version)
        except InstanceExistsError:
            pass  # as on a hub: a start delivered twice would be a duplicate

    # -- time ---------------------------------------------------------------------------

    def now(self) -> datetime:
        """The environment's time (what ``ctx.current_utc_datetime`` shows next)."""
        return self._scheduler.now

    def advance(self, delta: timedelta) -> None:
        """Move time forward, firing each timer due on the way at its own time."""
        if not isinstance(delta, timedelta) or delta < timedelta(0):
            raise InvalidArgumentError.of("advance(delta)", "a timedelta of zero or more", delta)
        self._scheduler.advance_to(self._scheduler.now + delta)

    def run_until_idle(self) -> None:
        """Run everything that can run without moving time."""
        self._scheduler.run_until_idle()

    # -- helpers ------------------------------------------------------------------------

    def _record(self, instance_id: str) -> Any:
        if not isinstance(instance_id, str) or not instance_id:
            raise InvalidArgumentError.of("instance_id", "a non-empty string", instance_id)
        record = self.store.load_instance(instance_id)
        if record is None:
            raise InstanceNotFoundError(instance_id)
        return record

    def _live_record(self, instance_id: str, what: str) -> Any:
        record = self._record(instance_id)
        if OrchestrationStatus(record.status).is_terminal:
            raise InvalidOperationError(
                f"instance {instance_id!r} is {record.status}; {what} (it has ended: "
                "nothing was changed)"
            )
        return record

    def _ended(self, instance_id: str) -> bool:
        return OrchestrationStatus(self.store.instances[instance_id].status).is_terminal

    def _stuck(self, instance_id: str) -> str:
        waits = self._orchestrations.waits_for(instance_id)
        status = self.store.instances[instance_id].status
        return (
            f"instance {instance_id!r} is {status} and nothing in the environment can make "
            f"progress (no activity, timer or entity operation is pending); it waits for "
            f"{', '.join(waits) or 'nothing it can name'}"
        )


def _delta(value: timedelta | float | None) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    raise InvalidArgumentError.of("timeout", "a timedelta, seconds >= 0, or None", value)


def _raiser(error: Any) -> Any:
    def mock(*args: Any) -> Any:
        raise error() if isinstance(error, type) else error

    return mock
