"""Entities in the test environment: the ``entities`` programming model, run in-process.

Each entity runs one operation at a time (the environment runs one piece of work at a
time); an operation that raises leaves the state as the last one committed (its blob);
a critical section (``ctx.lock``) holds its entities, in sorted order, and operations of
other senders wait until it ends. Senders and lock owners are plain tuples here: nothing
crosses a process, so nothing is re-delivered and nothing needs numbering.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..entity_id import EntityId
from ..errors import UnknownOperationError
from ..serialization import dumps, loads
from .code import Code
from .memory_store import MemoryStore
from .scheduler import Scheduler

#: An answer to an operation: (result, None) or (None, the error it raised).
Reply = Callable[[Any, "BaseException | None"], None]
#: Who holds a lock: (instance id, execution id, lock request's sequence number).
Owner = tuple[str, str, int]

LOCK, UNLOCK = "__lock__", "__unlock__"


@dataclass
class _Op:
    entity: EntityId
    operation: str
    input: Any
    sender: Any
    reply: Reply | None
    owner: Owner | None = None


@dataclass
class _Slot:
    etype: Any
    state: Any
    exists: bool
    blob: bytes | None
    locked_by: Owner | None = None
    waiting: list[_Op] = field(default_factory=list)


@dataclass
class _Acquisition:
    owner: Owner
    remaining: list[str]
    granted: Callable[[], None]
    cancelled: bool = False


class Entities:
    """Every entity of one test environment."""

    def __init__(
        self,
        store: MemoryStore,
        scheduler: Scheduler,
        code: Code,
        start: Callable[[Any, Any, str | None], None],
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._code = code
        self._start = start
        self._slots: dict[EntityId, _Slot] = {}
        self._acquiring: dict[Owner, _Acquisition] = {}

    def send(
        self,
        entity: Any,
        operation: str,
        input: Any,
        sender: Any,
        reply: Reply | None,
        owner: Owner | None = None,
    ) -> None:
        """Queue one operation; its input travels as a copy, as it would between processes."""
        eid = EntityId.of(entity)
        copy = loads(dumps(input, "entity operation input"))
        self._scheduler.call_soon(
            lambda: self._arrive(_Op(eid, operation, copy, sender, reply, owner))
        )

    def acquire(self, owner: Owner, entities: tuple[str, ...], granted: Callable[[], None]) -> None:
        """Take each entity in order for ``owner``, then call ``granted``."""
        acquisition = _Acquisition(owner, list(entities), granted)
        self._acquiring[owner] = acquisition
        self._next_lock(acquisition)

    def release(self, owner: Owner, entities: tuple[str, ...]) -> None:
        """End ``owner``'s critical section (also one whose locks are still on their way)."""
        acquisition = self._acquiring.pop(owner, None)
        if acquisition is not None:
            acquisition.cancelled = True
        for entity in entities:
            self.send(entity, UNLOCK, None, owner[:2], None, owner)

    def check(self, entity: Any, operation: str) -> EntityId:
        """Refuse an unknown entity type or operation before anything is sent (as clients do)."""
        eid = EntityId.of(entity)
        etype = self._code.entity(eid.name)
        if not etype.has_operation(operation):
            raise UnknownOperationError(str(eid), operation, etype.operations())
        return eid

    def locked_by(self, entity: Any) -> Owner | None:
        """Who holds the entity now, if anyone."""
        slot = self._slots.get(EntityId.of(entity))
        return None if slot is None else slot.locked_by

    def _next_lock(self, acquisition: _Acquisition) -> None:
        if acquisition.cancelled:
            return
        if not acquisition.remaining:
            self._acquiring.pop(acquisition.owner, None)
            acquisition.granted()
            return
        entity = acquisition.remaining.pop(0)
        owner = acquisition.owner

        def locked(result: Any, error: BaseException | None) -> None:
            if error is None:  # a lock on an unknown entity type is never granted (as on a hub)
                self._next_lock(acquisition)

        self.send(entity, LOCK, None, owner[:2], locked, owner)

    def _arrive(self, op: _Op) -> None:
        try:
            slot = self._slot(op.entity)
        except Exception as exc:
            _answer(op, None, exc)
            return
        held = slot.locked_by
        if held is not None and op.operation != UNLOCK and op.sender != held[:2]:
            slot.waiting.append(op)  # the critical section of another sender holds it
        elif op.operation == LOCK:
            slot.locked_by = op.owner
            _answer(op, None, None)
        elif op.operation == UNLOCK:
            self._unlock(slot, op)
        else:
            self._run(slot, op)

    def _slot(self, eid: EntityId) -> _Slot:
        slot = self._slots.get(eid)
        if slot is None:
            etype = self._code.entity(eid.name)
            blob, exists = self._store.load_entity(str(eid))
            state = loads(blob, f"state of {eid}") if exists else None
            slot = self._slots[eid] = _Slot(etype, state, exists, blob)
        return slot

    def _unlock(self, slot: _Slot, op: _Op) -> None:
        if slot.locked_by != op.owner:
            # The owner ended before its lock arrived: that lock must never hold the entity.
            slot.waiting = [
                w for w in slot.waiting if not (w.operation == LOCK and w.owner == op.owner)
            ]
            return
        slot.locked_by = None
        waiting, slot.waiting = slot.waiting, []
        for held in waiting:
            self._arrive(held)  # in arrival order; a new critical section re-queues the rest

    def _run(self, slot: _Slot, op: _Op) -> None:
        eid = op.entity
        if not slot.etype.has_operation(op.operation):
            _answer(
                op, None, UnknownOperationError(str(eid), op.operation, slot.etype.operations())
            )
            return
        try:
            ctx = slot.etype.execute(eid, op.operation, op.input, slot.state, slot.exists)
            blob = dumps(ctx._state, f"state of {eid}") if ctx._exists else None
            result = loads(dumps(ctx._result, "entity operation result"))
        except Exception as exc:
            # Roll back: the state is what the last committed operation left.
            slot.state = loads(slot.blob, f"state of {eid}") if slot.exists else None
            _answer(op, None, exc)
            return
        slot.state, slot.exists, slot.blob = ctx._state, ctx._exists, blob
        self._store.save_entity(str(eid), blob, ctx._exists)
        for target, operation, value in ctx.signals:
            self.send(target, operation, value, str(eid), None)
        for orchestrator, value, instance_id in ctx.orchestrations:
            self._scheduler.call_soon(
                functools.partial(self._start, orchestrator, value, instance_id)
            )
        _answer(op, result, None)


def _answer(op: _Op, result: Any, error: BaseException | None) -> None:
    if op.reply is not None:
        op.reply(result, error)
