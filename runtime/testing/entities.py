"""Entities in the test environment: the hub's pure ``EntityMachine``, in-process.

Every decision (per-sender order, locks, deduplication, refusal, rollback) is the one a
host makes: this module is only the machine's shell, as ``runtime.actors.entity_host`` is on a
hub. Arrived operations are batched, stepped through the machine, their records committed
to the memory store, and only then answered; messages an operation sends are delivered as
the supervisor delivers outbox rows. Orchestrations number their messages per entity
(``counter``) as on a hub, so what a test runs is what production runs.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

from ..entity import LOCK, UNLOCK, Delivery, EntityMachine, EntityRow, Record, SenderRow
from ..entity_id import EntityId
from ..errors import UnknownOperationError
from ..messages import EntitySignal, LockOwner, Outcome, SenderId, StartOrchestration
from ..orchestration import history as h
from ..serialization import dumps, loads
from .code import Code
from .memory_store import MemoryStore
from .scheduler import Scheduler

#: Receives an operation's answer.
Reply = Callable[[Outcome], None]
#: The sender of the test's own operations (a client's sender on a hub).
CLIENT = "client-test"


class _Loader:
    """The machine's view of the memory store and the environment's code."""

    def __init__(self, store: MemoryStore, code: Code) -> None:
        self.store = store
        self.code = code

    def entity_type(self, name: str) -> Any:
        """The registered entity type ``name``."""
        return self.code.entity(name)

    def load_entity(self, eid: EntityId) -> EntityRow | None:
        """The entity's committed row."""
        return self.store.load_entity(str(eid))

    def load_sender(self, eid: EntityId, sender: str) -> SenderRow | None:
        """The sender's last recorded number and result."""
        return self.store.load_sender(str(eid), sender)

    def register_orchestrator(self, orchestrator: Any) -> tuple[str, str]:
        """Know an orchestrator an operation starts; its name and version."""
        obj = self.code.register(orchestrator)
        return obj.name, obj.version


class Entities:
    """Every entity of one test environment: the machine, its queue and its messages."""

    def __init__(
        self,
        store: MemoryStore,
        scheduler: Scheduler,
        code: Code,
        start: Callable[[str, Any, str | None, str | None], None],
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._code = code
        self._start = start
        self._machine = EntityMachine(_Loader(store, code))
        self._queue: list[Delivery] = []
        self._pumping = False
        self._outbox_ids = itertools.count(1)
        self._client_counters: dict[str, int] = {}

    # -- senders ------------------------------------------------------------------------

    def from_client(self, entity: Any, operation: str, input: Any, reply: Reply) -> None:
        """An operation of the test itself: numbered per entity, as a client numbers it."""
        eid = self.check(entity, operation)
        blob = dumps(input, "entity operation input")
        seq = self._client_counters[str(eid)] = self._client_counters.get(str(eid), 0) + 1
        self._deliver(Delivery(eid, operation, blob, CLIENT, seq, True, reply))

    def from_orchestration(self, sender: SenderId, action: Any, reply: Reply | None) -> None:
        """An orchestration's EntityCalled or EntitySignaled, numbered by its counter."""
        blob = dumps(action.input, "entity input")
        eid = EntityId.parse(action.entity)
        self._deliver(
            Delivery(eid, action.operation, blob, str(sender), action.counter, True, reply)
        )

    def acquire(
        self, sender: SenderId, action: h.LockRequested, granted: Callable[[], None]
    ) -> None:
        """Take the request's entities one after the other (in their order), then grant."""
        owner = LockOwner(sender, action.seq).encode()
        pending = list(zip(action.entities, action.counters))

        def next_lock(outcome: Outcome | None = None) -> None:
            if outcome is not None and not outcome.ok:
                return  # as on a hub: a lock that fails is never granted
            if not pending:
                granted()
                return
            entity, counter = pending.pop(0)
            eid = EntityId.parse(entity)
            self._deliver(Delivery(eid, LOCK, owner, str(sender), counter, True, next_lock))

        next_lock()

    def release(self, sender: SenderId, action: h.LockReleased) -> None:
        """End a critical section: one unlock per entity, as the supervisor delivers them."""
        owner = LockOwner(sender, action.lock_seq).encode()
        for entity, counter in zip(action.entities, action.counters):
            eid = EntityId.parse(entity)
            self._deliver(Delivery(eid, UNLOCK, owner, str(sender), counter, False))

    def check(self, entity: Any, operation: str) -> EntityId:
        """Refuse an unknown entity type or operation before anything is sent (as clients do)."""
        eid = EntityId.of(entity)
        etype = self._code.entity(eid.name)
        if not etype.has_operation(operation):
            raise UnknownOperationError(str(eid), operation, etype.operations())
        return eid

    def holder(self, entity: Any) -> str | None:
        """The instance whose critical section holds the entity, if any."""
        row = self._store.load_entity(str(EntityId.of(entity)))
        owner = None if row is None else row[2]
        return None if owner is None else LockOwner.parse(owner).sender.instance_id

    # -- the pump ------------------------------------------------------------------------

    def _deliver(self, delivery: Delivery) -> None:
        self._queue.append(delivery)
        if not self._pumping:
            self._pumping = True
            self._scheduler.call_soon(self._pump)

    def _pump(self) -> None:
        """One batch through the machine: commit its records, then answer and send."""
        self._pumping = False
        batch, self._queue = self._queue, []
        done = self._machine.step(batch, self._scheduler.now.timestamp())
        if done.released:
            self._queue[:0] = done.released  # ahead of newer arrivals, as on a host
            self._pumping = True
            self._scheduler.call_soon(self._pump)
        for record in done.records:
            self._commit(record)
        for delivery, result in [*done.failed, *done.answered]:
            if delivery.reply is not None:
                delivery.reply(Outcome.decode(result))
        for record in done.records:
            for message in record.outbox:
                self._send(record, message)

    def _commit(self, record: Record) -> None:
        owner = None if record.locked_by is None else str(record.locked_by)
        if record.state_changed:
            self._store.save_entity(str(record.eid), record.state, record.exists, owner)
        self._store.save_sender(str(record.eid), record.sender, record.seq, record.result)

    def _send(self, record: Record, message: Any) -> None:
        if isinstance(message, EntitySignal):
            sender, seq = str(record.eid), next(self._outbox_ids)  # an outbox row's id
            delivery = Delivery(
                message.target, message.operation, message.input, sender, seq, False
            )
            self._deliver(delivery)
        elif isinstance(message, StartOrchestration):
            start = functools.partial(
                self._start,
                message.name,
                loads(message.input, "orchestration input"),
                message.instance_id or None,
                message.version or None,
            )
            self._scheduler.call_soon(start)
