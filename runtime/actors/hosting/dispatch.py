"""Dispatching a host's actions: activities as Ray tasks (or inline, on the host's own
threads), messages to the supervisor and to entities; what comes back is handed to the
host as an Arrival."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from ... import metrics, tracing
from ...entity import LOCK
from ...entity_id import EntityId
from ...errors import DurableError
from ...faults import crash_point
from ...messages import LockOwner, Outcome, SenderId
from ...orchestration import history as h
from ...orchestration.codec import encode_event
from ...registry import INLINE_TIMEOUT_SECONDS, Activity, CodeCache, encode_code
from ...serialization import dumps, failure_of
from ...store import Store
from ..ray_seam import ENTITY_FROM_HOST, ActorSystem, SupervisorHandle, aretry, typed
from ..routing import EntityRouter
from .inline import InlineRunner
from .poison import Work
from .steps import Arrival, Live

log = logging.getLogger("ray_durable.host")

#: Activities of one instance submitted to Ray and not answered yet; the rest of a wider
#: fan-out waits in the host. Ray's owner keeps about 7 KB per task in flight (its spec and
#: return ref: measured with plain Ray too) and runs only as many at once as it has CPUs,
#: so a 1,000,000-wide fan-out needs a window's worth of that memory, not a million.
MAX_IN_FLIGHT = 10_000


class Dispatcher:
    """Sends a host's committed actions; results come back through ``enqueue``."""

    def __init__(
        self,
        hub: str,
        store: Store,
        code: CodeCache,
        actors: ActorSystem,
        enqueue: Callable[[Arrival], None],
        activity_options: dict[str, Any],
        inline: InlineRunner,
    ) -> None:
        self.hub = hub
        self.store = store
        self.code = code
        self.actors = actors
        self._enqueue = enqueue
        self.activity_options = activity_options
        self.router = EntityRouter(self._supervisor_handle)
        self.inline = inline
        self._activities: dict[str, Activity] = {}
        self._remotes: dict[str, Any] = {}
        self._shipped: set[str] = set()
        self._supervisor: SupervisorHandle | None = None

    def dispatch(self, live: Live, action: h.HistoryEvent) -> None:
        """Send one committed action (or one history re-dispatches after activation)."""
        if isinstance(action, h.TaskScheduled):
            self._dispatch_activity(live, action)
        elif isinstance(action, h.SubOrchestrationCreated):
            self._register_child_code(live, action)
            # The child's execution span hangs under this call's span (spans.py).
            under = None if live.trace is None else live.trace.context_of(action.seq)
            start = encode_event(
                h.ExecutionStarted(
                    action.name, action.input, action.version, live.instance_id, trace=under
                )
            )
            args = (live.instance_id, action.seq, action.name, action.version)
            # The start's id: one per parent execution and step, so a re-dispatch is
            # recognised and a later execution (continue-as-new) starts its own child.
            start_id = f"{live.instance_id}:{live.execution_id}:{action.seq}"
            child = (action.instance_id, dumps(action.input), start, start_id)
            self.tell_supervisor(lambda s: s.start_child(*args, *child))
        elif isinstance(action, (h.EntityCalled, h.EntitySignaled)):
            asyncio.ensure_future(self._call_entity(live.instance_id, live.execution_id, action))
        elif isinstance(action, h.LockRequested):
            asyncio.ensure_future(self._acquire(live.instance_id, live.execution_id, action))
        elif isinstance(action, h.TimerCreated):
            fire_at = action.fire_at.timestamp()
            self.tell_supervisor(lambda s: s.timer_hint(fire_at))

    def _register_child_code(self, live: Live, action: h.SubOrchestrationCreated) -> None:
        """Store a child's code given as an object, before the first start that needs it."""
        target = live.executor.targets.get(action.seq)
        if target is None or action.name in self._shipped:
            return
        # Written here, synchronously: a blob sent along with the start call could be
        # overtaken by the starts of its siblings.
        self.store.register_code(*encode_code(target))
        self._shipped.add(action.name)

    def _dispatch_activity(self, live: Live, action: h.TaskScheduled) -> None:
        if live.in_flight >= MAX_IN_FLIGHT:
            live.waiting.append(action)
        else:
            self._submit(live, action)

    def _submit(self, live: Live, action: h.TaskScheduled) -> None:
        try:
            activity = self._activity_for(live, action)
            inline = activity.inline if action.inline is None else action.inline
            remote = None if inline else self._remote_for(activity)
        except DurableError as exc:
            self._enqueue(
                Arrival(
                    live.instance_id, live.execution_id, h.TaskFailed(action.seq, failure_of(exc))
                )
            )
            return
        arrived = functools.partial(
            self._collected, live, live.execution_id, action.seq, action.name, time.perf_counter()
        )
        live.in_flight += 1
        if remote is not None:
            if live.trace is None:
                remote.submit(arrived, action.input)
                return
            # The task runs inside its span: the user's own spans there are its children.
            ref = remote.submit(arrived, action.input, live.trace.context_of(action.seq))
            try:
                live.trace.ray_tasks[action.seq] = ref.task_id().hex()
            except Exception:  # only an attribute of the span: never a failed dispatch
                log.debug("no Ray task id for %s", action.name, exc_info=True)
            return
        timeout = action.timeout or activity.timeout or INLINE_TIMEOUT_SECONDS
        work = Work(
            "orchestration", live.instance_id, f"inline activity {action.name}", "", action.seq
        )
        execution = live.execution_id
        ran = asyncio.ensure_future(
            self.inline.run(
                activity,
                action.input,
                timeout,
                work,
                lambda: not live.done and live.execution_id == execution,
            )
        )

        def finished(done: asyncio.Future) -> None:
            if not done.cancelled():  # cancelled: the host stops; it re-runs when activated
                arrived(done.exception() or done.result())

        ran.add_done_callback(finished)

    def runs_elsewhere(self, live: Live, action: h.TaskScheduled) -> bool:
        """True if the activity runs as a Ray task, not on this host's threads."""
        try:
            activity = self._activity_for(live, action)
        except DurableError:
            return False  # reported as the step's failure once committed, as before
        return not (activity.inline if action.inline is None else action.inline)

    def _activity_for(self, live: Live, action: h.TaskScheduled) -> Activity:
        activity = self._activities.get(action.name)
        if activity is None:
            target = live.executor.targets.get(action.seq)
            if target is None:
                target = self.code.get("activity", action.name)
            elif not isinstance(target, Activity):
                target = Activity(target, action.name)
            activity = self._activities[action.name] = target
        return activity

    def _remote_for(self, activity: Activity) -> Any:
        remote = self._remotes.get(activity.name)
        if remote is None:
            remote = self._remotes[activity.name] = _make_remote(
                activity, self.activity_options, self.actors
            )
        return remote

    async def _call_entity(self, iid: str, execution_id: str, action: Any) -> None:
        sender = str(SenderId(iid, execution_id))
        try:
            outcome = await self._send_to_entity(
                action.entity,
                action.operation,
                dumps(action.input, "entity input"),
                sender,
                action.counter,
            )
            event: h.HistoryEvent = (
                h.EntityResponded(action.seq, outcome.value)
                if outcome.failure is None
                else h.EntityFailed(action.seq, outcome.failure)
            )
        except Exception as exc:
            event = h.EntityFailed(action.seq, failure_of(typed(exc)))
        if isinstance(action, h.EntityCalled):
            self._enqueue(Arrival(iid, execution_id, event))

    async def _acquire(self, iid: str, execution_id: str, action: h.LockRequested) -> None:
        """Take each entity in the global order; the grant is recorded like a result."""
        sender = SenderId(iid, execution_id)
        owner = LockOwner(sender, action.seq).encode()
        event: h.HistoryEvent = h.LockGranted(action.seq)
        for entity, counter in zip(action.entities, action.counters):
            try:
                outcome = await self._send_to_entity(entity, LOCK, owner, str(sender), counter)
                refused, failure = not outcome.ok, outcome.failure
            except Exception as exc:
                refused, failure = True, failure_of(typed(exc))
            if refused:
                failure = failure or failure_of(DurableError(f"{entity} refused the lock"))
                log.warning("lock of %s for %s refused: %s", entity, iid, failure)
                event = h.LockFailed(action.seq, failure)
                break
        self._enqueue(Arrival(iid, execution_id, event))

    async def _send_to_entity(
        self, entity: str, operation: str, input_blob: bytes, sender: str, seq: int
    ) -> Outcome:
        eid = EntityId.parse(entity)

        async def send() -> Outcome:
            host = await self.router.ahandle(eid)
            return Outcome.decode(
                await host.entity_op(entity, operation, input_blob, sender, seq, True)
            )

        # The entity's host is restarting: the same sequence number is safe to resend.
        return await aretry(
            send,
            ENTITY_FROM_HOST,
            lambda exc: DurableError(f"entity {entity} unreachable"),
            lambda exc: self.router.forget(eid),
        )

    def _collected(
        self, live: Live, execution_id: str, seq: int, name: str, started: float, result: Any
    ) -> None:
        live.in_flight -= 1
        while live.waiting and live.in_flight < MAX_IN_FLIGHT and not live.done:
            self._submit(live, live.waiting.popleft())
        if isinstance(result, BaseException):  # the worker died past Ray's retries, or the
            ok, value = False, failure_of(result)  # result could not be read
        else:
            ok, value = result
        metrics.observe(
            "activity_duration_seconds",
            {"hub": self.hub, "name": name},
            time.perf_counter() - started,
        )
        event = h.TaskCompleted(seq, value) if ok else h.TaskFailed(seq, value)
        crash_point("host.before_result", self.hub)
        self._enqueue(Arrival(live.instance_id, execution_id, event))

    def _supervisor_handle(self) -> SupervisorHandle:
        if self._supervisor is None:
            self._supervisor = self.actors.supervisor()
        return self._supervisor

    def tell_supervisor(self, call: Callable[[SupervisorHandle], Any]) -> None:
        """A one-way message to the supervisor; lost only while it restarts, which is safe."""
        try:
            call(self._supervisor_handle())
        except Exception:
            # The supervisor is restarting; on start it re-reads everything from the store.
            log.warning("host: supervisor unreachable", exc_info=True)
            self._supervisor = None


def _make_remote(activity: Activity, defaults: dict[str, Any], actors: ActorSystem) -> Any:
    def run(input: Any, trace: str | None = None) -> tuple[bool, Any]:
        try:
            if trace is None:
                return True, activity.run(input)
            with tracing.activated(trace):
                return True, activity.run(input)
        except Exception as exc:
            return False, failure_of(exc)

    run.__name__ = run.__qualname__ = activity.name
    options = {"num_cpus": 1, **defaults, **activity.options}  # the activity's own win
    return actors.task(run, options)
