"""Entity operations inside a host actor.

Operations on one entity run one at a time, in arrival order per sender. Each operation's
new state, the sender's sequence number with the operation's result, and the messages it
sends are committed in one transaction before the caller is answered; operations that
arrive together are committed together (group commit). A message whose sequence number
the entity has already processed is answered from the stored result and not applied
again, which makes client retries after a crash safe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import metrics
from .entity_id import EntityId
from .errors import DurableError, SerializationError, UnknownOperationError
from .orchestration import history as h
from .registry import CodeCache, as_registrable, encode_code
from .serialization import dumps, failure_of, loads
from .store import EntityCheckpoint

log = logging.getLogger("ray_durable.entities")

#: System operations of critical sections (``ctx.lock`` in orchestrations).
LOCK, UNLOCK = "__lock__", "__unlock__"

#: Outbox kind of an orchestration's signal: its sender and counter order it with the
#: execution's other messages to that entity (an entity's own signals are "signal").
ORDERED_SIGNAL = "ordered_signal"


def lock_owner(sender: str, lock_seq: int) -> str:
    """Who holds an entity: the orchestration execution (a sender) and its lock request."""
    return f"{sender}|{lock_seq}"


def owner_sender(owner: str) -> str:
    """The sender of a lock owner, whose operations pass the lock."""
    return owner.split("|", 1)[0]


@dataclass
class _Op:
    eid: EntityId
    operation: str
    input_blob: bytes
    sender: str
    seq: int
    ordered: bool
    future: asyncio.Future
    admitted: bool = False


@dataclass
class _LiveEntity:
    eid: EntityId
    etype: Any
    state: Any
    exists: bool
    blob: bytes | None
    senders: dict[str, tuple[int, bytes | None]] = field(default_factory=dict)
    admitted: dict[str, int] = field(default_factory=dict)
    parked: dict[str, dict[int, _Op]] = field(default_factory=dict)
    last_used: float = 0.0
    locked_by: str | None = None
    waiting: list[_Op] = field(default_factory=list)


def ok(value: Any) -> bytes:
    """An operation's successful result, as stored and returned."""
    return dumps(("ok", value), "entity operation result")


def err(exc: BaseException) -> bytes:
    """An operation's failure, as stored and returned (typed errors travel whole)."""
    typed = exc if isinstance(exc, DurableError) else None
    try:
        return dumps(("err", failure_of(exc), typed))
    except SerializationError:
        return dumps(("err", failure_of(exc), None))


class EntityCore:
    """The entities held by one host."""

    def __init__(
        self, store: Any, code: CodeCache, on_outbox: Callable[[], None], hub: str = ""
    ) -> None:
        self.hub = hub
        self._commit_tags = {"hub": hub, "kind": "entity"}
        self.store = store
        self.code = code
        self.on_outbox = on_outbox
        self.live: dict[EntityId, _LiveEntity] = {}
        self._queue: list[_Op] = []
        self._wake = asyncio.Event()
        self._pump_task = asyncio.get_event_loop().create_task(self._pump())

    async def operate(
        self, eid: str, operation: str, input_blob: bytes, sender: str, seq: int, ordered: bool
    ) -> bytes:
        """Run (or recognise as already run) one operation; returns its pickled outcome."""
        future = asyncio.get_event_loop().create_future()
        self._queue.append(
            _Op(EntityId.parse(eid), operation, input_blob, sender, seq, ordered, future)
        )
        self._wake.set()
        return await future

    async def operate_many(
        self, sender: str, ops: list[tuple[str, str, bytes, int]]
    ) -> list[bytes]:
        """Several ordered operations of one sender, queued together (one Ray call)."""
        loop = asyncio.get_event_loop()
        futures = []
        for eid, operation, input_blob, seq in ops:
            future = loop.create_future()
            self._queue.append(
                _Op(EntityId.parse(eid), operation, input_blob, sender, seq, True, future)
            )
            futures.append(future)
        self._wake.set()
        return list(await asyncio.gather(*futures))

    def passivate(self, idle_seconds: float | None) -> int:
        """Drop entities idle longer than their passivation time; returns how many.

        An entity type's own ``passivate_after`` wins over the hub's ``idle_seconds``;
        with neither, the entity stays in memory. Its checkpoint is already committed, so
        leaving memory loses nothing: the next operation re-activates it from the store.
        """
        now = time.monotonic()
        idle = []
        for eid, live in self.live.items():
            limit = live.etype.passivate_after or idle_seconds
            if limit is not None and not live.parked and not live.waiting:
                if now - live.last_used > limit:
                    idle.append(eid)
        for eid in idle:
            del self.live[eid]
        return len(idle)

    @property
    def idle(self) -> bool:
        """Nothing in memory and nothing queued."""
        return not self.live and not self._queue

    # -- the pump ---------------------------------------------------------------------

    async def _pump(self) -> None:
        loop = asyncio.get_event_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            runnable = [ready for op in batch for ready in self._admit(op)]
            outcomes, checkpoints = [], []
            for op in runnable:
                live = self.live.get(op.eid)
                # Checked op by op: a lock taken earlier in this batch holds the ops after it.
                if live is not None and self._blocked(live, op):
                    live.waiting.append(op)
                    continue
                result, checkpoint = self._run(op)
                outcomes.append((op, result))
                if checkpoint is not None:
                    checkpoints.append(checkpoint)
            if checkpoints:
                try:
                    with metrics.timed("checkpoint_write_seconds", self._commit_tags):
                        await loop.run_in_executor(None, self.store.commit_entities, checkpoints)
                except Exception as exc:
                    log.exception("entity commit failed; reloading from the store")
                    for op, _ in outcomes:
                        dropped = self.live.pop(op.eid, None)
                        # Ops waiting on a lock fail with it rather than wait forever.
                        for held in [op, *(dropped.waiting if dropped else [])]:
                            if not held.future.done():
                                held.future.set_exception(exc)
                    continue
            applied: dict[str, int] = {}
            for op, result in outcomes:
                applied[op.eid.name] = applied.get(op.eid.name, 0) + 1
                if not op.future.done():
                    op.future.set_result(result)
            for name, count in applied.items():
                metrics.inc("entity_operations", {"hub": self.hub, "entity": name}, count)
            if any(cp.outbox for cp in checkpoints):
                self.on_outbox()

    def _activate(self, eid: EntityId) -> _LiveEntity:
        live = self.live.get(eid)
        if live is None:
            etype = self.code.get("entity", eid.name)
            row = self.store.load_entity(eid.name, eid.key)
            blob, exists, locked_by = row if row is not None else (None, False, None)
            state = loads(blob, f"state of {eid}") if exists else None
            live = self.live[eid] = _LiveEntity(eid, etype, state, exists, blob)
            live.locked_by = locked_by
        live.last_used = time.monotonic()
        return live

    def _last(self, live: _LiveEntity, sender: str) -> tuple[int, bytes | None]:
        known = live.senders.get(sender)
        if known is None:
            known = self.store.load_sender(live.eid.name, live.eid.key, sender) or (0, None)
            live.senders[sender] = known
        return known

    @staticmethod
    def _blocked(live: _LiveEntity, op: _Op) -> bool:
        """Ops of senders other than a lock's owner wait until the lock is released."""
        if live.locked_by is None or op.operation == UNLOCK:
            return False
        return op.sender != owner_sender(live.locked_by)

    def _admit(self, op: _Op) -> list[_Op]:
        """Ops ready to run, in per-sender order; later ones wait for their predecessors."""
        if op.admitted:
            return [op]
        try:
            live = self._activate(op.eid)
        except Exception as exc:
            op.future.set_result(err(exc))
            return []
        if not op.ordered:
            return [op]
        admitted = live.admitted.get(op.sender) or self._last(live, op.sender)[0]
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

    def _run(self, op: _Op) -> tuple[bytes, EntityCheckpoint | None]:
        live = self.live[op.eid]
        last_seq, last_result = self._last(live, op.sender)
        if op.operation == UNLOCK:
            return self._unlock(live, op, last_seq, last_result)
        if op.seq <= last_seq:
            # Already applied: answer as the first time, apply nothing.
            return (last_result if op.seq == last_seq and last_result else ok(None)), None
        if op.operation == LOCK:
            # Only reached when unlocked or locked by this owner (others wait, above).
            live.locked_by = loads(op.input_blob)
            return ok(None), self._record(live, op, ok(None), [])
        if not live.etype.has_operation(op.operation):
            return self._refuse(live, op)
        try:
            ctx = live.etype.execute(
                op.eid,
                op.operation,
                loads(op.input_blob, "operation input"),
                live.state,
                live.exists,
            )
            blob = dumps(ctx._state, f"state of {op.eid}") if ctx._exists else None
            result = ok(ctx._result)
            outbox = self._outbox(ctx)
        except Exception as exc:
            # Roll back: the state is what the last committed operation left.
            live.state = loads(live.blob, f"state of {op.eid}") if live.exists else None
            result, outbox = err(exc), []
            blob = live.blob
        else:
            live.state, live.exists, live.blob = ctx._state, ctx._exists, blob
        return result, self._record(live, op, result, outbox)

    def _refuse(self, live: _LiveEntity, op: _Op) -> tuple[bytes, EntityCheckpoint | None]:
        """An operation the entity does not have: refused before it runs, its state untouched.

        Clients check operation names before numbering them, so what arrives here comes
        from orchestrations and entities (or a client that has not seen a re-registration).
        """
        result = err(UnknownOperationError(str(op.eid), op.operation, live.etype.operations()))
        if not op.ordered:
            log.warning("entity %s: refused operation %r from %s", op.eid, op.operation, op.sender)
            return result, None  # nothing waits behind an unordered message: store nothing
        # The sender's later operations wait for this number: record it, and nothing else.
        return result, self._record(live, op, result, [], state_changed=False)

    def _record(
        self,
        live: _LiveEntity,
        op: _Op,
        result: bytes,
        outbox: list[tuple[str, str, bytes]],
        seq: int | None = None,
        state_changed: bool = True,
    ) -> EntityCheckpoint:
        seq = op.seq if seq is None else seq
        live.senders[op.sender] = (seq, result)
        return EntityCheckpoint(
            op.eid.name,
            op.eid.key,
            live.blob,
            live.exists,
            op.sender,
            seq,
            result,
            outbox,
            live.locked_by,
            state_changed,
        )

    def _unlock(
        self, live: _LiveEntity, op: _Op, last_seq: int, last_result: bytes | None
    ) -> tuple[bytes, EntityCheckpoint | None]:
        """End a critical section; ``op.seq`` is the sender's number of the lock request."""
        if live.locked_by == loads(op.input_blob):
            live.locked_by = None
            waiting, live.waiting = live.waiting, []
            for held in waiting:
                held.admitted = True
            self._queue[:0] = waiting  # next round, ahead of newer arrivals
            self._wake.set()
        elif op.seq <= last_seq:
            return ok(None), None  # released before, or this lock was never taken
        if op.seq > last_seq:
            # The owner ended before its lock arrived: marking the request as seen makes
            # the late lock a repeat, so it can never hold the entity for a finished owner.
            live.admitted[op.sender] = max(live.admitted.get(op.sender, 0), op.seq)
            return ok(None), self._record(live, op, ok(None), [])
        return ok(None), self._record(live, op, last_result or ok(None), [], seq=last_seq)

    def _outbox(self, ctx: Any) -> list[tuple[str, str, bytes]]:
        rows = []
        for target, operation, value in ctx.signals:
            rows.append(("signal", str(target), dumps((operation, dumps(value, "signal input")))))
        for orchestrator, value, instance_id in ctx.orchestrations:
            rows.append(("start", instance_id or "", self._start_payload(orchestrator, value)))
        return rows

    def _start_payload(self, orchestrator: Any, value: Any) -> bytes:
        if isinstance(orchestrator, str):
            name, version = orchestrator, ""
        else:
            obj = as_registrable(orchestrator)
            self.store.register_code(*encode_code(obj))
            name, version = obj.name, obj.version
        start = dumps(h.ExecutionStarted(name, value, version), "orchestration input")
        return dumps((name, version, dumps(value, "orchestration input"), start))
