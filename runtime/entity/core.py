"""The entity state machine: admission, locks, per-sender order, deduplication.

Pure: no Ray, no asyncio, no store, no clock. A host's shell hands it batches of arrived
operations (``Delivery``) and gets back, per batch, the answers and the checkpoint records
to commit before answering. What it needs from the store (an entity's row, a sender's last
number and result, entity code) comes through a ``Loader``.

The rules, per entity:

- A sender's ordered operations run in its numbering order: one that arrives early is
  parked until its predecessors have arrived. Unordered messages (entity signals, unlocks)
  run as they come.
- A number the entity has already recorded for its sender is a re-delivery: it is answered
  with the recorded result and applies nothing.
- While an orchestration holds the entity (``ctx.lock``), other senders' operations wait;
  releasing it runs them first, in the order they arrived, ahead of newer arrivals.
- An unlock that arrives before its lock (the owner ended first) marks the lock request as
  seen, so the late lock is a repeat and never holds the entity for a finished owner.
- An operation the entity does not have is refused without running; one that raises is
  rolled back to the last committed state. Either way the caller gets the error.
- An operation the shell names as poison (it killed its host too often) is set aside
  without running: the caller gets the shell's error, its number counts as processed, and
  the entity goes on with the operations behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..entity_id import EntityId
from ..errors import UnknownOperationError
from ..messages import EntitySignal, LockOwner, Message, Outcome, StartOrchestration
from ..orchestration import history as h
from ..orchestration.codec import encode_event
from ..serialization import dumps, loads

#: System operations of critical sections (``ctx.lock`` in orchestrations).
LOCK, UNLOCK = "__lock__", "__unlock__"

#: An entity's stored row: (pickled state, exists, lock owner as its string).
EntityRow = tuple[bytes | None, bool, str | None]
#: A sender's stored row: (last recorded number, that operation's encoded Outcome).
SenderRow = tuple[int, bytes | None]

_OK_NONE = Outcome().encode()


class EntityType(Protocol):
    """What the machine needs of a registered entity type (``entities.Entity``)."""

    passivate_after: float | None

    def has_operation(self, operation: str) -> bool:
        """True if ``operation`` may run."""

    def operations(self) -> tuple[str, ...]:
        """The names a refusal lists."""

    def execute(
        self, entity_id: EntityId, operation: str, input: Any, state: Any, exists: bool
    ) -> Any:
        """Run one operation; returns its context (state, existence, result, messages)."""


class Loader(Protocol):
    """Where the machine reads what is not in memory (the store and the code registry)."""

    def entity_type(self, name: str) -> EntityType:
        """The registered entity type ``name`` (NotRegisteredError if none)."""

    def load_entity(self, eid: EntityId) -> EntityRow | None:
        """The entity's committed row; None if it was never stored."""

    def load_sender(self, eid: EntityId, sender: str) -> SenderRow | None:
        """The sender's last recorded number on ``eid``; None if it never sent one."""

    def register_orchestrator(self, orchestrator: Any) -> tuple[str, str]:
        """Name and version of an orchestrator object an operation starts (its code kept)."""


@dataclass(eq=False)
class Delivery:
    """One operation message as it arrived; ``reply`` is the shell's, never looked at."""

    eid: EntityId
    operation: str
    input: bytes
    sender: str
    seq: int
    ordered: bool
    reply: Any = None


@dataclass(frozen=True)
class Record:
    """One operation's checkpoint: commit it before answering the operation."""

    eid: EntityId
    state: bytes | None
    exists: bool
    sender: str
    seq: int
    result: bytes
    outbox: tuple[Message, ...]
    locked_by: LockOwner | None
    #: False for a refused operation: only the sender's row changes, the entity's is kept.
    state_changed: bool = True
    #: the sender's number before this operation, as this machine knew it
    prev_seq: int = 0


@dataclass
class Round:
    """What one batch produced."""

    #: Operations that ran or were recognised, with their encoded Outcome: answer these
    #: once ``records`` are committed.
    answered: list[tuple[Delivery, bytes]] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    #: Operations whose entity could not be loaded: nothing to commit, answer at once.
    failed: list[tuple[Delivery, bytes]] = field(default_factory=list)
    #: Unordered operations refused and not stored (the shell logs them).
    refused: list[Delivery] = field(default_factory=list)
    #: Operations freed by an unlock: run them in the next batch, ahead of newer arrivals.
    released: list[Delivery] = field(default_factory=list)
    #: Poison set aside, with its record: the shell dead-letters these before ``records``
    #: (which may hold the same sender's later numbers).
    quarantined: list[tuple[Delivery, Record]] = field(default_factory=list)


@dataclass
class _Live:
    eid: EntityId
    etype: EntityType
    state: Any
    exists: bool
    blob: bytes | None
    locked_by: LockOwner | None
    last_used: float
    senders: dict[str, SenderRow] = field(default_factory=dict)
    admitted: dict[str, int] = field(default_factory=dict)
    parked: dict[str, dict[int, Delivery]] = field(default_factory=dict)
    waiting: list[Delivery] = field(default_factory=list)


class EntityMachine:
    """The entities of one host, in memory: every decision about their operations."""

    def __init__(
        self,
        loader: Loader,
        on_run: Callable[[Delivery], None] | None = None,
        poison: Callable[[Delivery], Exception | None] | None = None,
    ) -> None:
        self.loader = loader
        #: called before an operation's user code runs (the shell marks it, see poison.py)
        self.on_run = on_run
        #: the error of an operation to set aside instead of running, or None
        self.poison = poison
        self._live: dict[EntityId, _Live] = {}
        self._round = Round()

    @property
    def live(self) -> Mapping[EntityId, Any]:
        """The entities in memory."""
        return self._live

    def step(self, batch: list[Delivery], now: float) -> Round:
        """Admit and run one batch of arrived operations (``now`` stamps their entities)."""
        self._round = done = Round()
        runnable = [ready for op in batch for ready in self._admit(op, now)]
        for op in runnable:
            live = self._live[op.eid]
            # Checked op by op: a lock taken earlier in this batch holds the ops after it.
            if self._blocked(live, op):
                live.waiting.append(op)
                continue
            result, record = self._run(live, op)
            done.answered.append((op, result))
            if record is not None:
                done.records.append(record)
        return done

    def forget(self, eid: EntityId) -> list[Delivery]:
        """Drop an entity whose commit failed (the store has the truth); returns its waiters.

        The parked operations come back too: nothing else would ever answer them.
        """
        dropped = self._live.pop(eid, None)
        if dropped is None:
            return []
        parked = [op for ops in dropped.parked.values() for op in ops.values()]
        return [*dropped.waiting, *parked]

    def passivate(self, now: float, idle_seconds: float | None) -> int:
        """Drop entities idle longer than their passivation time; returns how many.

        An entity type's own ``passivate_after`` wins over the hub's ``idle_seconds``;
        with neither, the entity stays in memory. An entity with parked or waiting
        operations stays too.
        """
        idle = []
        for eid, live in self._live.items():
            limit = live.etype.passivate_after or idle_seconds
            if limit is not None and not live.parked and not live.waiting:
                if now - live.last_used > limit:
                    idle.append(eid)
        for eid in idle:
            del self._live[eid]
        return len(idle)

    # -- admission ----------------------------------------------------------------------

    def _admit(self, op: Delivery, now: float) -> list[Delivery]:
        """Ops ready to run, in per-sender order; later ones wait for their predecessors."""
        try:
            live = self._activate(op.eid, now)
            last_seq = self._last(live, op.sender)[0]
        except Exception as exc:
            self._round.failed.append((op, Outcome.of_error(exc).encode()))
            return []
        if not op.ordered:
            return [op]
        # An op released by an unlock comes back here: its number is admitted already.
        admitted = live.admitted.get(op.sender) or last_seq
        if op.seq > admitted + 1:
            live.parked.setdefault(op.sender, {})[op.seq] = op
            return []
        ready = [op]
        admitted = max(admitted, op.seq)
        parked = live.parked.get(op.sender, {})
        while admitted + 1 in parked:
            admitted += 1
            ready.append(parked.pop(admitted))
        if not parked:
            live.parked.pop(op.sender, None)
        live.admitted[op.sender] = admitted
        return ready

    def _activate(self, eid: EntityId, now: float) -> _Live:
        live = self._live.get(eid)
        if live is None:
            etype = self.loader.entity_type(eid.name)
            row = self.loader.load_entity(eid)
            blob, exists, locked_by = row if row is not None else (None, False, None)
            state = loads(blob, f"state of {eid}") if exists else None
            owner = LockOwner.parse(locked_by) if locked_by is not None else None
            live = self._live[eid] = _Live(eid, etype, state, exists, blob, owner, now)
        live.last_used = now
        return live

    def _last(self, live: _Live, sender: str) -> SenderRow:
        known = live.senders.get(sender)
        if known is None:
            known = self.loader.load_sender(live.eid, sender) or (0, None)
            live.senders[sender] = known
        return known

    @staticmethod
    def _blocked(live: _Live, op: Delivery) -> bool:
        """Ops of senders other than a lock's owner wait until the lock is released."""
        if live.locked_by is None or op.operation == UNLOCK:
            return False
        return op.sender != str(live.locked_by.sender)

    # -- running ------------------------------------------------------------------------

    def _run(self, live: _Live, op: Delivery) -> tuple[bytes, Record | None]:
        last_seq, last_result = self._last(live, op.sender)
        if op.operation == UNLOCK:
            return self._unlock(live, op, last_seq, last_result)
        if op.seq <= last_seq:
            # Already applied: answer as the first time, apply nothing.
            return (last_result if op.seq == last_seq and last_result else _OK_NONE), None
        if op.operation == LOCK:
            return self._lock(live, op)
        if not live.etype.has_operation(op.operation):
            error = UnknownOperationError(str(op.eid), op.operation, live.etype.operations())
            return self._refuse(live, op, error)
        if self.poison is not None and (poison := self.poison(op)) is not None:
            result = Outcome.of_error(poison).encode()
            record = self._record(live, op, result, (), state_changed=False)
            self._round.quarantined.append((op, record))
            return result, None
        return self._apply(live, op)

    def _apply(self, live: _Live, op: Delivery) -> tuple[bytes, Record]:
        """Run a user operation; on any error, roll back to the last committed state."""
        if self.on_run is not None:
            self.on_run(op)
        try:
            ctx = live.etype.execute(
                op.eid, op.operation, loads(op.input, "operation input"), live.state, live.exists
            )
            blob = dumps(ctx._state, f"state of {op.eid}") if ctx._exists else None
            result = Outcome(ctx._result).encode()
            outbox = self._outbox(ctx)
        except Exception as exc:
            live.state = loads(live.blob, f"state of {op.eid}") if live.exists else None
            failed = Outcome.of_error(exc).encode()
            return failed, self._record(live, op, failed, ())
        live.state, live.exists, live.blob = ctx._state, ctx._exists, blob
        return result, self._record(live, op, result, outbox)

    def _refuse(self, live: _Live, op: Delivery, error: Exception) -> tuple[bytes, Record | None]:
        """An operation that cannot run: refused before it runs, the state untouched.

        Clients check operation names before numbering them, so what arrives here comes
        from orchestrations and entities (or a client that has not seen a re-registration).
        """
        result = Outcome.of_error(error).encode()
        if not op.ordered:
            self._round.refused.append(op)
            return result, None  # nothing waits behind an unordered message: store nothing
        # The sender's later operations wait for this number: record it, and nothing else.
        return result, self._record(live, op, result, (), state_changed=False)

    def _lock(self, live: _Live, op: Delivery) -> tuple[bytes, Record | None]:
        """Only reached when unlocked or held by this sender (others wait, above)."""
        try:
            owner = LockOwner.decode(op.input)
        except Exception as exc:
            return self._refuse(live, op, exc)
        live.locked_by = owner
        return _OK_NONE, self._record(live, op, _OK_NONE, ())

    def _unlock(
        self, live: _Live, op: Delivery, last_seq: int, last_result: bytes | None
    ) -> tuple[bytes, Record | None]:
        """End a critical section; ``op.seq`` is the sender's number of the lock request."""
        try:
            owner = LockOwner.decode(op.input)
        except Exception as exc:
            return self._refuse(live, op, exc)
        if live.locked_by == owner:
            live.locked_by = None
            waiting, live.waiting = live.waiting, []
            self._round.released[:0] = waiting  # next round, ahead of newer arrivals
        elif op.seq <= last_seq:
            return _OK_NONE, None  # released before, or this lock was never taken
        if op.seq > last_seq:
            # The owner ended before its lock arrived: marking the request as seen makes
            # the late lock a repeat, so it can never hold the entity for a finished owner.
            live.admitted[op.sender] = max(live.admitted.get(op.sender, 0), op.seq)
            return _OK_NONE, self._record(live, op, _OK_NONE, ())
        return _OK_NONE, self._record(live, op, last_result or _OK_NONE, (), seq=last_seq)

    def _record(
        self,
        live: _Live,
        op: Delivery,
        result: bytes,
        outbox: tuple[Message, ...],
        seq: int | None = None,
        state_changed: bool = True,
    ) -> Record:
        seq = op.seq if seq is None else seq
        prev_seq = live.senders.get(op.sender, (0, None))[0]
        live.senders[op.sender] = (seq, result)
        return Record(
            op.eid,
            live.blob,
            live.exists,
            op.sender,
            seq,
            result,
            outbox,
            live.locked_by,
            state_changed,
            prev_seq,
        )

    # -- messages -----------------------------------------------------------------------

    def _outbox(self, ctx: Any) -> tuple[Message, ...]:
        messages: list[Message] = [
            EntitySignal(target, operation, dumps(value, "signal input"))
            for target, operation, value in ctx.signals
        ]
        for orchestrator, value, instance_id in ctx.orchestrations:
            messages.append(self._start(orchestrator, value, instance_id))
        return tuple(messages)

    def _start(self, orchestrator: Any, value: Any, instance_id: str | None) -> StartOrchestration:
        if isinstance(orchestrator, str):
            name, version = orchestrator, ""
        else:
            name, version = self.loader.register_orchestrator(orchestrator)
        start = encode_event(h.ExecutionStarted(name, value, version), "orchestration input")
        input_blob = dumps(value, "orchestration input")
        return StartOrchestration(instance_id or "", name, version, input_blob, start)
