"""Host actors: where orchestration instances live.

A host turns messages into engine calls and store writes, nothing more:

- ``activate`` loads an instance from the store (history + inbox), replays it once and
  re-dispatches the actions history records as open (their results died with the host
  that was waiting for them);
- every arriving event (activity result, message from the supervisor) goes to one queue;
  a single pump drains it, advances each instance's live executor, sends the new
  activities, commits all the resulting checkpoints in one transaction (group commit) and
  only then dispatches the other new actions (outbox: timers, children, entity messages).
  Activities are at-least-once either way, so their run overlaps the commit.

With ``placement="dedicated"`` a host holds one instance; with ``"pooled"`` many.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

from .. import logs, metrics, tracing
from ..config import TracingConfig
from ..errors import FencedError, StoreUnavailableError
from ..faults import crash_point
from ..orchestration import history as h
from ..orchestration.codec import decode_event
from ..orchestration.engine import OrchestrationExecutor, Step
from ..orchestration.spans import InstanceTrace
from ..orchestration.status import OrchestrationStatus
from ..registry import CodeCache
from ..store import Checkpoint, InstanceRecord, open_store
from ..store.payloads import DEFAULT_INLINE_LIMIT
from .entity_host import EntityCore
from .hosting.dispatch import Dispatcher
from .hosting.inline import InlineRunner
from .hosting.poison import HOLD, QUARANTINE, PoisonGuard
from .hosting.steps import Arrival, Live, checkpoint, continue_as_new, now_utc
from .ray_seam import (
    ActorSystem,
    actor_class,
    current_actor_name,
    stop_this_actor,
)

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


class _Telling:
    """What a host tells the supervisor: outbox rows to deliver, instances that ended."""

    hub: str
    name: str | None
    live: dict[str, Live]
    dispatcher: Dispatcher
    tracer: tracing.Tracer | None
    dedicated: bool
    _loop: asyncio.AbstractEventLoop

    def _outbox_committed(self) -> None:
        self.dispatcher.tell_supervisor(lambda s: s.flush_outbox())

    def _notify_done(self, live: Live, step: Step) -> None:
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
        # A dedicated host may serve the next instance unless work of this one still runs
        # on its inline threads (they would hold its slots, or exhaust it).
        reusable = not self.live and self.dispatcher.inline.idle
        host = self.name if self.dedicated else None
        done = (live.instance_id, str(step.status), live.parent_instance_id, host, reusable)

        def tell(*_: Any) -> None:
            self.dispatcher.tell_supervisor(lambda s: s.instance_done(*done))

        if self.tracer is None or not self.dedicated or self.live:
            tell()
            return
        # A dedicated host may be killed once it says so: send the spans it holds first, on a
        # thread (a slow collector must not stall the loop), bounded by FLUSH_SECONDS.
        flushed = self._loop.run_in_executor(None, self.tracer.flush)
        flushed.add_done_callback(tell)


class _Recovery(_Telling):
    """HostCore's ways back: instances re-activated from the store after a failed commit,
    suspects of poison released after their backoff or quarantined."""

    live: dict[str, Live]
    store: Any
    poison: PoisonGuard
    dispatcher: Dispatcher
    _loop: asyncio.AbstractEventLoop
    _wake: asyncio.Event

    def _activate(self, iid: str) -> None:
        raise NotImplementedError

    def _reactivate(self, instance_ids: set[str], attempt: int) -> None:
        """Activate instances again from the store, retrying those it cannot read yet."""
        failed = set()
        for iid in instance_ids:
            if iid in self.live:
                continue  # activated meanwhile (a poke)
            try:
                self._activate(iid)
            except Exception:
                log.exception("host: cannot re-activate %s yet", iid)
                failed.add(iid)
        if failed:
            self._loop.call_later(
                min(0.5 * 2**attempt, 30.0), self._reactivate, failed, attempt + 1
            )
        self._wake.set()

    def _release(self, iid: str) -> None:
        """A suspect's backoff is over: activate it now."""
        self.poison.release(iid)
        if iid not in self.live:
            try:
                self._activate(iid)
            except Exception:
                log.exception("host: cannot activate %s", iid)
            self._wake.set()

    def _turn_of(self, iid: str) -> None:
        """An inline suspect's turn: activated on the loop, after the commit that settled
        the one before."""
        self._loop.call_soon(self._release, iid)

    def _quarantine(self, record: InstanceRecord) -> None:
        """Fail the instance without running its code, release its locks, list it."""
        history = [decode_event(blob) for blob in self.store.load_history(record.instance_id)]
        if self.poison.quarantine(record, history).outbox:
            self._outbox_committed()
        host = self.name if self.dedicated else None  # not reused: poison work ran here
        done = (record.instance_id, str(OrchestrationStatus.FAILED), record.parent_instance_id)
        self.dispatcher.tell_supervisor(lambda s: s.instance_done(*done, host, False))


def _send_ray_activities(
    dispatcher: Dispatcher, work: list[tuple[Checkpoint, tuple[Live, Step]]]
) -> set[int]:
    """Send the Ray-task activities of uncommitted steps; the ids of the events sent."""
    sent = set()
    for _, (live, step) in work:
        for event in step.new_events:
            if isinstance(event, h.TaskScheduled) and dispatcher.runs_elsewhere(live, event):
                dispatcher.dispatch(live, event)
                sent.add(id(event))
    return sent


class HostCore(_Recovery):
    """The host's logic; the Ray actor below only exposes it."""

    def __init__(
        self,
        hub: str,
        store_url: str,
        durability: str,
        clock: Callable[[], float] | None = None,
        passivate_after: float | None = None,
        activity_options: dict[str, Any] | None = None,
        epoch: int | None = None,
        actors: ActorSystem | None = None,
        payload_inline_limit: int = DEFAULT_INLINE_LIMIT,
        quarantine_after: int = 5,
        tracing_config: TracingConfig | None = None,
        dedicated: bool = False,
    ) -> None:
        self.hub = hub
        self.dedicated = dedicated
        self.passivate_after = passivate_after
        self.tracer = tracing.tracer_for(tracing_config)
        self.name = current_actor_name()
        self.actors = actors or ActorSystem(hub)
        self._commit_tags = {"hub": hub, "kind": "orchestration"}
        # Every write is fenced by the epoch of the supervisor that created this host.
        self.store = open_store(
            store_url, hub, durability, epoch, self._fenced, payload_inline_limit
        )
        self.code = CodeCache(self.store)
        self.clock = clock
        self.live: dict[str, Live] = {}
        self._queue: list[Arrival] = []
        self._failed_commits = 0
        self._wake = asyncio.Event()
        self._loop = asyncio.get_event_loop()
        self.quarantine_after = quarantine_after
        self.poison = PoisonGuard(self.store, hub, store_url, self.name, quarantine_after)
        self.poison.on_turn = self._turn_of
        self.dispatcher = Dispatcher(
            hub,
            self.store,
            self.code,
            self.actors,
            self._enqueue,
            activity_options or {},
            InlineRunner(hub, self.poison.running_inline),
        )
        self._pump_task = asyncio.get_event_loop().create_task(self._pump())
        self.entities = EntityCore(
            self.store,
            self.code,
            self._outbox_committed,
            hub,
            self.poison.marker,
            self.poison.suspect,
            quarantine_after,
        )
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
        name = self.name or ""
        dedicated = "/entity-" in name
        while True:
            await asyncio.sleep(PASSIVATION_CHECK_SECONDS)
            metrics.set_gauge(
                "instances_live",
                {"hub": self.hub, "host": name},
                sum(not live.done for live in self.live.values()),
            )
            if self.entities.passivate(self.passivate_after) and dedicated:
                if self.entities.idle and not self.live:
                    self.dispatcher.tell_supervisor(lambda s: s.retire_idle_host(name))

    # -- messages from the supervisor --------------------------------------------------

    async def activate(self, instance_ids: list[str]) -> None:
        """Make sure each instance is live here (idempotent); a failure is raised last."""
        failure: Exception | None = None
        for iid in instance_ids:
            try:
                if iid not in self.live:
                    self._activate(iid)
            except Exception as exc:  # its code cannot load here? The rest of the batch runs
                self.poison.clear()
                failure = failure or exc
        self._wake.set()
        if failure is not None:
            raise failure

    async def poke(self, instance_id: str) -> None:
        """Read the instance's new inbox messages, in the order the store accepted them."""
        live = self.live.get(instance_id)
        if live is None:
            self._activate(instance_id)
            return
        self._read_inbox(live)

    def _read_inbox(self, live: Live) -> None:
        # Inbox ids grow with commit order (one writer at a time), so "after the last seen"
        # is both complete and in arrival order.
        for message in self.store.load_inbox(live.instance_id, live.last_message_id):
            live.last_message_id = message.id
            self._enqueue(Arrival(live.instance_id, None, decode_event(message.event), message.id))

    def _activate(self, iid: str) -> None:
        if iid in self.poison.held:
            return  # a suspect waiting out its backoff: the others go first
        record = self.store.load_instance(iid)
        if record is None or OrchestrationStatus(record.status).is_terminal:
            return
        verdict = self.poison.verdict(iid)
        if verdict == QUARANTINE:
            self._quarantine(record)
            return
        if verdict == HOLD:
            return  # another suspect of the same death runs first (poison.on_turn)
        if verdict > 0:
            self._loop.call_later(verdict, self._release, iid)
            return
        self.poison.mark(iid, "replay")
        orchestrator = self.code.get("orchestrator", record.name, record.version)
        live = Live(
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
        if self.tracer is not None:  # replayed steps sent their spans when committed
            live.trace = InstanceTrace.resumed(iid, live.execution_id, history)
        step = live.executor.execute(history, [])
        self.poison.clear()
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
            self._commit_now([checkpoint(live, step, [])], [(live, step)])
            return
        for action in live.executor.open_actions():
            self.dispatcher.dispatch(live, action)
        for event in history:
            # Whether a signal reached its entity before the crash is unknown; the entity
            # recognises a repeat by its sender and counter and applies it once.
            if isinstance(event, h.EntitySignaled):
                self.dispatcher.dispatch(live, event)
        self._read_inbox(live)

    # -- the pump ---------------------------------------------------------------------

    def _enqueue(self, arrival: Arrival) -> None:
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
                    # Ray-task activities leave before their schedule is durable: their run
                    # overlaps the commit instead of following it. Still at-least-once: a
                    # crash before the commit replays the step, which schedules them again.
                    # Inline ones wait: one that kills this process would take the commit
                    # of the results before it along.
                    sent = _send_ray_activities(self.dispatcher, work)
                    checkpoints = [cp for cp, _ in work]
                    with metrics.timed("checkpoint_write_seconds", self._commit_tags):
                        await loop.run_in_executor(None, self.store.commit, checkpoints)
                    crash_point("host.after_commit", self.hub)
                    items, outbox = [item for _, item in work], any(c.outbox for c in checkpoints)
                    # The encoded events are stored: free them before a wide step dispatches.
                    del work, checkpoints
                    self._failed_commits = 0
                    self._after_commit(items, outbox, sent)
            except FencedError:
                return  # _fenced stops this host; re-activating would re-dispatch work
            except Exception as exc:
                # A store that refuses writes (full, read-only, away) would refuse the next
                # try too: wait longer after each failure in a row.
                self._failed_commits += 1
                pause = 0.0
                if isinstance(exc, StoreUnavailableError):
                    pause = min(0.25 * 2 ** (self._failed_commits - 1), 10.0)
                logs.event(
                    log,
                    logging.ERROR,
                    "commit failed; re-activating from the store",
                    hub=self.hub,
                    host=self.name,
                    pause=pause,
                    exc_info=True,
                )
                ids = {a.instance_id for a in batch}
                for iid in ids:
                    old = self.live.pop(iid, None)
                    if old is not None:
                        old.waiting.clear()  # the next incarnation dispatches what is open
                self._loop.call_later(pause, self._reactivate, ids, 0)

    def _advance(self, batch: list[Arrival]) -> list[tuple[Checkpoint, tuple[Live, Step]]]:
        grouped: dict[str, list[Arrival]] = {}
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
            self.poison.mark(iid, "step")
            step = live.executor.execute([], [stamp, *events])
            step = continue_as_new(live, step, self.clock)
            work.append((checkpoint(live, step, consumed), (live, step)))
        self.poison.clear()
        return work

    def _commit_now(self, checkpoints: list[Checkpoint], items: list[tuple[Live, Step]]) -> None:
        with metrics.timed("checkpoint_write_seconds", self._commit_tags):
            self.store.commit(checkpoints)
        self._after_commit(items, any(cp.outbox for cp in checkpoints))

    def _after_commit(
        self,
        items: list[tuple[Live, Step]],
        outbox: bool = False,
        sent: AbstractSet[int] = frozenset(),
    ) -> None:
        """Dispatch what the commit made durable (``sent``: ids of events already sent)."""
        if outbox:
            self._outbox_committed()  # unlocks
        self.poison.acquit((live.instance_id, step) for live, step in items)
        if self.tracer is not None:
            self.tracer.export_of(live for live, _ in items)
        for live, step in items:
            for event in step.new_events:
                if isinstance(event, _DISPATCHED):
                    if id(event) in sent:
                        continue
                    if step.is_terminal and isinstance(event, h.EntitySignaled):
                        continue  # in the outbox (see hosting.steps.outbox_rows)
                    self.dispatcher.dispatch(live, event)
            if step.is_terminal:
                live.done = True
                self.live.pop(live.instance_id, None)
                self._notify_done(live, step)


@actor_class
class Host:
    """The Ray actor around HostCore; every method is a thin forward."""

    def __init__(self, *args: Any) -> None:
        """HostCore's arguments (``SupervisorCore._host_args`` builds them)."""
        logs.configure()
        self.core = HostCore(*args)

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

    async def activities_in_flight(self) -> int:
        """Activities submitted and not answered yet, and those waiting for a slot."""
        return sum(live.in_flight + len(live.waiting) for live in self.core.live.values())

    async def live_entities(self) -> list[str]:
        """Ids of the entities in memory."""
        return [str(eid) for eid in self.core.entities.live]

    async def pid(self) -> int:
        """The host's process id (failure tests kill it)."""
        return os.getpid()
