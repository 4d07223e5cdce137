"""Host actors: where orchestration instances live.

A host turns messages into engine calls and store writes, nothing more:

- ``activate`` loads an instance from the store (history + inbox), replays it once and
  re-dispatches the actions history records as open (their results died with the host
  that was waiting for them);
- every arriving event (activity result, message from the supervisor) goes to one queue;
  a single pump drains it, advances each instance's live executor, commits all the
  resulting checkpoints in one transaction (group commit) and only then dispatches the
  new actions (outbox).

With ``placement="dedicated"`` a host holds one instance; with ``"pooled"`` many.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import ray

from . import logs, metrics
from .entity import LOCK
from .entity_host import EntityCore
from .entity_id import EntityId
from .errors import DurableError, FencedError, SerializationError
from .lease import stop_this_actor
from .messages import LockOwner, OrderedSignal, Outcome, SenderId, Unlock, encode_message
from .orchestration import history as h
from .orchestration.codec import decode_event, encode_event
from .orchestration.engine import OrchestrationExecutor, Step
from .orchestration.status import OrchestrationStatus
from .registry import Activity, CodeCache, encode_code
from .routing import NAMESPACE, EntityRouter
from .serialization import dumps, failure_of
from .store import Checkpoint, open_store

log = logging.getLogger("ray_durable.host")

#: History events that are also outbox entries: dispatched once committed.
#: How often hosts look for entities to passivate (seconds).
PASSIVATION_CHECK_SECONDS = 0.5

_DISPATCHED = (
    h.TaskScheduled,
    h.SubOrchestrationCreated,
    h.TimerCreated,
    h.EntityCalled,
    h.EntitySignaled,
    h.LockRequested,
)


@dataclass
class _Live:
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


@dataclass
class _Arrival:
    instance_id: str
    execution_id: str | None
    event: h.HistoryEvent
    message_id: int | None = None


def now_utc(clock: Callable[[], float] | None = None) -> datetime:
    """The hub's current time as an aware UTC datetime."""
    return datetime.fromtimestamp((clock or time.time)(), tz=timezone.utc)


class HostCore:
    """The host's logic; the Ray actor below only exposes it."""

    def __init__(
        self,
        hub: str,
        store_url: str,
        durability: str,
        supervisor_name: str,
        clock: Callable[[], float] | None = None,
        passivate_after: float | None = None,
        activity_options: dict[str, Any] | None = None,
        epoch: int | None = None,
    ) -> None:
        self.hub = hub
        self.passivate_after = passivate_after
        self.activity_options = activity_options or {}
        self.name = ray.get_runtime_context().get_actor_name() if ray.is_initialized() else None
        self._commit_tags = {"hub": hub, "kind": "orchestration"}
        # Every write is fenced by the epoch of the supervisor that created this host.
        self.store = open_store(store_url, hub, durability, epoch, self._fenced)
        self.code = CodeCache(self.store)
        self.supervisor_name = supervisor_name
        self.clock = clock
        self.live: dict[str, _Live] = {}
        self._queue: list[_Arrival] = []
        self._wake = asyncio.Event()
        self._remotes: dict[str, Any] = {}
        self._shipped: set[str] = set()
        self._supervisor: Any = None
        self._activating: dict[str, asyncio.Future] = {}
        self._loop = asyncio.get_event_loop()
        self._pump_task = asyncio.get_event_loop().create_task(self._pump())
        self.entities = EntityCore(
            self.store, self.code, lambda: self._call_supervisor("flush_outbox"), hub
        )
        self.router = EntityRouter(self._supervisor_handle)
        self._passivation = asyncio.get_event_loop().create_task(self._passivate_loop())
        self._assigned = asyncio.get_event_loop().create_task(self._activate_assigned())

    async def _activate_assigned(self) -> None:
        """Activate what the store places on this host: a restarted incarnation then
        resumes every instance of the one that died, including one whose start was on its
        way when it died (the supervisor's activate calls only hurry this along)."""
        if self.name is None:
            return
        try:
            records = await asyncio.get_event_loop().run_in_executor(
                None, self.store.active_instances, self.name
            )
            await self.activate([r.instance_id for r in records])
        except Exception:
            logs.event(
                log, logging.ERROR, "activation from the store", host=self.name, exc_info=True
            )

    def _fenced(self, exc: Exception) -> None:
        """The hub's lease moved to another cluster: this host's writes are refused; stop."""
        logs.event(
            log,
            logging.ERROR,
            "lease lost; host stops",
            hub=self.hub,
            host=self.name,
            error=str(exc),
        )
        stop_this_actor(self._loop)

    async def _passivate_loop(self) -> None:
        """Drop idle entities; a dedicated entity's host then asks to be retired."""
        dedicated = self.name is not None and "/entity-" in self.name
        while True:
            await asyncio.sleep(PASSIVATION_CHECK_SECONDS)
            metrics.set_gauge(
                "instances_live",
                {"hub": self.hub, "host": self.name or ""},
                sum(not live.done for live in self.live.values()),
            )
            if self.entities.passivate(self.passivate_after) and dedicated:
                if self.entities.idle and not self.live:
                    self._call_supervisor("retire_idle_host", self.name)

    # -- messages from the supervisor --------------------------------------------------

    async def activate(self, instance_ids: list[str]) -> None:
        """Make sure each instance is live here (idempotent)."""
        for iid in instance_ids:
            if iid not in self.live:
                self._activate(iid)
        self._wake.set()

    async def poke(self, instance_id: str) -> None:
        """Read the instance's new inbox messages, in the order the store accepted them."""
        live = self.live.get(instance_id)
        if live is None:
            self._activate(instance_id)
            return
        self._read_inbox(live)

    def _read_inbox(self, live: _Live) -> None:
        # Inbox ids grow with commit order (one writer at a time), so "after the last seen"
        # is both complete and in arrival order.
        for message in self.store.load_inbox(live.instance_id, live.last_message_id):
            live.last_message_id = message.id
            self._enqueue(_Arrival(live.instance_id, None, decode_event(message.event), message.id))

    def _activate(self, iid: str) -> None:
        record = self.store.load_instance(iid)
        if record is None or OrchestrationStatus(record.status).is_terminal:
            return
        orchestrator = self.code.get("orchestrator", record.name, record.version)
        live = _Live(
            iid,
            record.execution_id,
            record.name,
            record.version,
            OrchestrationExecutor(orchestrator.fn, iid),
            record.history_length,
            record.parent_instance_id,
            record.parent_seq,
        )
        self.live[iid] = live
        history = [decode_event(blob) for blob in self.store.load_history(iid)]
        step = live.executor.execute(history, [])
        logs.event(
            log,
            logging.INFO,
            "instance activated",
            hub=self.hub,
            instance_id=iid,
            execution_id=live.execution_id,
            name=live.name,
            host=self.name,
            replayed_events=len(history),
        )
        if step.is_terminal:  # replay itself failed (non-determinism): record it
            self._commit_now([self._checkpoint(live, step, [])], [(live, step)])
            return
        for action in live.executor.open_actions():
            self._dispatch(live, action)
        for event in history:
            # Whether a signal reached its entity before the crash is unknown; the entity
            # recognises a repeat by its sender and counter and applies it once.
            if isinstance(event, h.EntitySignaled):
                self._dispatch(live, event)
        self._read_inbox(live)

    # -- the pump ---------------------------------------------------------------------

    def _enqueue(self, arrival: _Arrival) -> None:
        self._queue.append(arrival)
        self._wake.set()

    async def _pump(self) -> None:
        loop = asyncio.get_event_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            try:
                work = self._advance(batch)
                if work:
                    checkpoints = [cp for cp, _ in work]
                    with metrics.timed("checkpoint_write_seconds", self._commit_tags):
                        await loop.run_in_executor(None, self.store.commit, checkpoints)
                    self._after_commit(
                        [item for _, item in work], any(cp.outbox for cp in checkpoints)
                    )
            except FencedError:
                return  # _fenced stops this host; re-activating would re-dispatch work
            except Exception:
                logs.event(
                    log,
                    logging.ERROR,
                    "commit failed; re-activating from the store",
                    hub=self.hub,
                    host=self.name,
                    exc_info=True,
                )
                self._reactivate({a.instance_id for a in batch})

    def _advance(self, batch: list[_Arrival]) -> list[tuple[Checkpoint, tuple[_Live, Step]]]:
        grouped: dict[str, list[_Arrival]] = {}
        for arrival in batch:
            grouped.setdefault(arrival.instance_id, []).append(arrival)
        work = []
        stamp = h.OrchestratorStarted(now_utc(self.clock))
        for iid, arrivals in grouped.items():
            live = self.live.get(iid)
            if live is None or live.done:
                continue
            events = [
                a.event
                for a in arrivals
                if a.execution_id is None or a.execution_id == live.execution_id
            ]
            consumed = [a.message_id for a in arrivals if a.message_id is not None]
            step = live.executor.execute([], [stamp, *events])
            step = self._continue_as_new(live, step)
            work.append((self._checkpoint(live, step, consumed), (live, step)))
        return work

    def _continue_as_new(self, live: _Live, step: Step) -> Step:
        """Restart the execution in place; the checkpoint will replace the history."""
        while step.continued_as_new is not None:
            cont = step.continued_as_new
            # The ending execution's messages are sent by its id, so compute them now.
            live.unlocks.extend(self._messages(live, step.new_events, final=True))
            live.execution_id = uuid.uuid4().hex
            live.history_length = 0
            previous = live.executor
            live.executor = OrchestrationExecutor(previous.fn, live.instance_id)
            # Clients keep seeing the last custom status until the new execution sets one.
            live.executor.custom_status = previous.custom_status
            start = [
                h.OrchestratorStarted(now_utc(self.clock)),
                h.ExecutionStarted(
                    live.name,
                    cont.input,
                    live.version,
                    live.parent_instance_id,
                    previous.activity_retry,
                ),
                *cont.carried,
            ]
            step = live.executor.execute([], start)
            if step.continued_as_new is None:
                step.continued_as_new = cont  # tells _checkpoint to replace the history
                break
        return step

    def _checkpoint(self, live: _Live, step: Step, consumed: list[int]) -> Checkpoint:
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
                (e.seq, e.fire_at.timestamp())
                for e in step.new_events
                if isinstance(e, h.TimerCreated)
            ],
        )
        outbox = self._messages(live, step.new_events, final=step.is_terminal)
        cp.outbox, live.unlocks = [*live.unlocks, *outbox], []
        if step.continued_as_new is not None:
            cp.replace_history, cp.first_index = True, 0
            cp.input = dumps(step.continued_as_new.input)
        if step.is_terminal and live.parent_instance_id is not None:
            answer = encode_event(self._answer_parent(live, step))
            cp.outgoing.append((live.parent_instance_id, answer))
        live.history_length = cp.first_index + len(events)
        return cp

    @staticmethod
    def _messages(
        live: _Live, events: list[h.HistoryEvent], final: bool
    ) -> list[tuple[str, str, bytes]]:
        """Outbox rows: unlocks of ended critical sections, and the signals of a final step.

        A running execution re-sends its signals when it is activated again; one that has
        ended never is, so the signals of its last step travel in the outbox.
        """
        sender = SenderId(live.instance_id, live.execution_id)
        rows = []
        for e in events:
            if isinstance(e, h.LockReleased):
                for entity, counter in zip(e.entities, e.counters):
                    owner = LockOwner(sender, e.lock_seq)
                    rows.append(encode_message(Unlock(EntityId.parse(entity), owner, counter)))
            elif final and isinstance(e, h.EntitySignaled):
                target, blob = EntityId.parse(e.entity), dumps(e.input, "entity input")
                signal = OrderedSignal(target, e.operation, blob, sender, e.counter)
                rows.append(encode_message(signal))
        return rows

    def _answer_parent(self, live: _Live, step: Step) -> h.HistoryEvent:
        if step.status == OrchestrationStatus.COMPLETED:
            return h.SubOrchestrationCompleted(live.parent_seq or 0, step.output)
        failure = step.failure or failure_of(DurableError(f"child {step.status}: {step.output}"))
        return h.SubOrchestrationFailed(live.parent_seq or 0, failure)

    def _commit_now(self, checkpoints: list[Checkpoint], items: list[tuple[_Live, Step]]) -> None:
        with metrics.timed("checkpoint_write_seconds", self._commit_tags):
            self.store.commit(checkpoints)
        self._after_commit(items, any(cp.outbox for cp in checkpoints))

    def _after_commit(self, items: list[tuple[_Live, Step]], outbox: bool = False) -> None:
        if outbox:
            self._call_supervisor("flush_outbox")  # unlocks were committed to the outbox
        for live, step in items:
            for event in step.new_events:
                if isinstance(event, _DISPATCHED):
                    if step.is_terminal and isinstance(event, h.EntitySignaled):
                        continue  # in the outbox (see _messages)
                    self._dispatch(live, event)
            if step.is_terminal:
                live.done = True
                self.live.pop(live.instance_id, None)
                self._notify_done(live, step)

    def _reactivate(self, instance_ids: set[str]) -> None:
        for iid in instance_ids:
            self.live.pop(iid, None)
            try:
                self._activate(iid)
            except Exception:
                log.exception("host: cannot re-activate %s", iid)

    # -- dispatching actions ------------------------------------------------------------

    def _dispatch(self, live: _Live, action: h.HistoryEvent) -> None:
        if isinstance(action, h.TaskScheduled):
            self._dispatch_activity(live, action)
        elif isinstance(action, h.SubOrchestrationCreated):
            self._register_child_code(live, action)
            self._call_supervisor(
                "start_child",
                live.instance_id,
                action.seq,
                action.name,
                action.version,
                action.instance_id,
                dumps(action.input),
                encode_event(
                    h.ExecutionStarted(action.name, action.input, action.version, live.instance_id)
                ),
            )
        elif isinstance(action, (h.EntityCalled, h.EntitySignaled)):
            asyncio.ensure_future(self._call_entity(live.instance_id, live.execution_id, action))
        elif isinstance(action, h.LockRequested):
            asyncio.ensure_future(self._acquire(live.instance_id, live.execution_id, action))
        elif isinstance(action, h.TimerCreated):
            self._call_supervisor("timer_hint", action.fire_at.timestamp())

    def _register_child_code(self, live: _Live, action: h.SubOrchestrationCreated) -> None:
        """Store a child's code given as an object, before the first start that needs it."""
        target = live.executor.targets.get(action.seq)
        if target is None or action.name in self._shipped:
            return
        # Written here, synchronously: a blob sent along with the start call could be
        # overtaken by the starts of its siblings.
        self.store.register_code(*encode_code(target))
        self._shipped.add(action.name)

    def _dispatch_activity(self, live: _Live, action: h.TaskScheduled) -> None:
        try:
            remote = self._remote_for(live, action)
        except DurableError as exc:
            self._enqueue(
                _Arrival(
                    live.instance_id, live.execution_id, h.TaskFailed(action.seq, failure_of(exc))
                )
            )
            return
        ref = remote.remote(action.input)
        asyncio.ensure_future(
            self._collect(live.instance_id, live.execution_id, action.seq, ref, action.name)
        )

    def _remote_for(self, live: _Live, action: h.TaskScheduled) -> Any:
        remote = self._remotes.get(action.name)
        if remote is None:
            target = live.executor.targets.get(action.seq)
            if target is None:
                target = self.code.get("activity", action.name)
            elif not isinstance(target, Activity):
                target = Activity(target, action.name)
            remote = self._remotes[action.name] = _make_remote(target, self.activity_options)
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
            event = h.EntityFailed(action.seq, failure_of(exc))
        if isinstance(action, h.EntityCalled):
            self._enqueue(_Arrival(iid, execution_id, event))

    async def _acquire(self, iid: str, execution_id: str, action: h.LockRequested) -> None:
        """Take each entity in the global order; the grant is recorded like a result."""
        sender = SenderId(iid, execution_id)
        owner = LockOwner(sender, action.seq).encode()
        for entity, counter in zip(action.entities, action.counters):
            outcome = await self._send_to_entity(entity, LOCK, owner, str(sender), counter)
            if not outcome.ok:
                log.error("lock of %s for %s failed: %s", entity, iid, outcome.failure)
                return
        self._enqueue(_Arrival(iid, execution_id, h.LockGranted(action.seq)))

    async def _send_to_entity(
        self, entity: str, operation: str, input_blob: bytes, sender: str, seq: int
    ) -> Outcome:
        eid = EntityId.parse(entity)
        for attempt in range(600):
            try:
                host = await self.router.ahandle(eid)
                return Outcome.decode(
                    await host.entity_op.remote(entity, operation, input_blob, sender, seq, True)
                )
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                # The entity's host is restarting: the same sequence number is safe to resend.
                self.router.forget(eid)
                await asyncio.sleep(min(0.05 * (attempt + 1), 1.0))
        raise DurableError(f"entity {entity} unreachable")

    async def _collect(self, iid: str, execution_id: str, seq: int, ref: Any, name: str) -> None:
        started = time.perf_counter()
        try:
            ok, value = await ref
        except Exception as exc:  # the worker died past Ray's retries, or the result failed
            ok, value = False, failure_of(exc)
        metrics.observe(
            "activity_duration_seconds",
            {"hub": self.hub, "name": name},
            time.perf_counter() - started,
        )
        event = h.TaskCompleted(seq, value) if ok else h.TaskFailed(seq, value)
        self._enqueue(_Arrival(iid, execution_id, event))

    # -- talking to the supervisor -------------------------------------------------------

    def _notify_done(self, live: _Live, step: Step) -> None:
        logs.event(
            log,
            logging.INFO,
            "instance finished",
            hub=self.hub,
            instance_id=live.instance_id,
            execution_id=live.execution_id,
            name=live.name,
            status=str(step.status),
        )
        metrics.inc(
            "instances_finished", {"hub": self.hub, "name": live.name, "status": str(step.status)}
        )
        self._call_supervisor(
            "instance_done", live.instance_id, str(step.status), live.parent_instance_id
        )

    def _supervisor_handle(self) -> Any:
        if self._supervisor is None:
            self._supervisor = ray.get_actor(self.supervisor_name, namespace=NAMESPACE)
        return self._supervisor

    def _call_supervisor(self, method: str, *args: Any) -> None:
        try:
            getattr(self._supervisor_handle(), method).remote(*args)
        except Exception:
            # The supervisor is restarting; on start it re-reads everything from the store.
            log.warning("host: supervisor unreachable for %s", method)
            self._supervisor = None


def _make_remote(activity: Activity, defaults: dict[str, Any]) -> Any:
    def run(input: Any) -> tuple[bool, Any]:
        try:
            return True, activity.run(input)
        except Exception as exc:
            return False, failure_of(exc)

    run.__name__ = run.__qualname__ = activity.name
    options = {"num_cpus": 1, **defaults, **activity.options}  # the activity's own win
    return ray.remote(run).options(**options)


@ray.remote(num_cpus=0)
class Host:
    """The Ray actor around HostCore; every method is a thin forward."""

    def __init__(
        self,
        hub: str,
        store_url: str,
        durability: str,
        supervisor_name: str,
        clock: Callable[[], float] | None = None,
        passivate_after: float | None = None,
        activity_options: dict[str, Any] | None = None,
        epoch: int | None = None,
    ) -> None:
        logs.configure()
        self.core = HostCore(
            hub,
            store_url,
            durability,
            supervisor_name,
            clock,
            passivate_after,
            activity_options,
            epoch,
        )

    async def activate(self, instance_ids: list[str]) -> None:
        """Make sure each instance is live here."""
        await self.core.activate(instance_ids)

    async def entity_op(
        self, eid: str, operation: str, input_blob: bytes, sender: str, seq: int, ordered: bool
    ) -> bytes:
        """Run one entity operation (idempotent per sender and sequence number)."""
        return await self.core.entities.operate(eid, operation, input_blob, sender, seq, ordered)

    async def entity_ops(self, sender: str, ops: list[tuple[str, str, bytes, int]]) -> list[bytes]:
        """Run one sender's pipelined operations (entity, operation, input, seq), in order."""
        return await self.core.entities.operate_many(sender, ops)

    async def poke(self, instance_id: str) -> None:
        """Check the instance's inbox."""
        await self.core.poke(instance_id)

    async def watch(self) -> None:
        """Never returns; the supervisor learns of this host's death when it fails."""
        await asyncio.Event().wait()

    async def live_instances(self) -> list[str]:
        """Ids of the instances in memory."""
        return list(self.core.live)

    async def live_entities(self) -> list[str]:
        """Ids of the entities in memory."""
        return [str(eid) for eid in self.core.entities.live]

    async def pid(self) -> int:
        """The host's process id (failure tests kill it)."""
        return os.getpid()
