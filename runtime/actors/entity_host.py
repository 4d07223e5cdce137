"""Entity operations inside a host actor.

Operations on one entity run one at a time, in arrival order per sender. Each operation's
new state, the sender's sequence number with the operation's result, and the messages it
sends are committed in one transaction before the caller is answered; operations that
arrive together are committed together (group commit). A message whose sequence number
the entity has already processed is answered from the stored result and not applied
again, which makes client retries after a crash safe.

Every one of these decisions is made by the pure ``runtime.entity.EntityMachine``; this
module is the actor's side of it: the queue, the callers' futures, the store commit and
the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .. import metrics
from ..entity import Delivery, EntityMachine, EntityRow, Record, SenderRow
from ..entity_id import EntityId
from ..errors import QuarantinedError, StaleEntityWriteError, StoreUnavailableError
from ..messages import encode_message
from ..registry import CodeCache, as_registrable, encode_code
from ..store import EntityCheckpoint, Quarantined
from .hosting.poison import CrashMarker, Work

log = logging.getLogger("ray_durable.entities")

T = TypeVar("T")

__all__ = ["EntityCore"]


class _StoreLoader:
    """The machine's view of the store and the code registry."""

    def __init__(self, store: Any, code: CodeCache) -> None:
        self.store = store
        self.code = code

    def entity_type(self, name: str) -> Any:
        """The registered entity type ``name``."""
        return self.code.get("entity", name)

    def load_entity(self, eid: EntityId) -> EntityRow | None:
        """The entity's committed row."""
        return _patiently(lambda: self.store.load_entity(eid.name, eid.key))

    def load_sender(self, eid: EntityId, sender: str) -> SenderRow | None:
        """The sender's last recorded number and result."""
        return _patiently(lambda: self.store.load_sender(eid.name, eid.key, sender))

    def register_orchestrator(self, orchestrator: Any) -> tuple[str, str]:
        """Keep the code of an orchestrator an operation starts; its name and version."""
        obj = as_registrable(orchestrator)
        self.store.register_code(*encode_code(obj))
        return obj.name, obj.version


def _patiently(read: Callable[[], T]) -> T:
    """A read that waits for the database however long it is away.

    Failing it would answer the operation with an error and leave a gap in its sender's
    numbers that every later operation of that sender waits behind; callers bound their
    own wait (``call_entity(timeout=...)``).
    """
    while True:
        try:
            return read()
        except StoreUnavailableError:
            log.warning("entity store read: the database is still away; waiting")


def _checkpoint(record: Record) -> EntityCheckpoint:
    """The store's form of one operation's record."""
    owner = None if record.locked_by is None else str(record.locked_by)
    return EntityCheckpoint(
        record.eid.name,
        record.eid.key,
        record.state,
        record.exists,
        record.sender,
        record.seq,
        record.result,
        [encode_message(m) for m in record.outbox],
        owner,
        record.state_changed,
        record.prev_seq,
    )


class EntityCore:
    """The entities held by one host: the actor-side shell of ``EntityMachine``.

    It queues arrived operations, runs them through the machine a batch at a time, commits
    the batch's records in one transaction and only then answers the callers.
    """

    def __init__(
        self,
        store: Any,
        code: CodeCache,
        on_outbox: Callable[[], None],
        hub: str = "",
        marker: CrashMarker | None = None,
        suspect: tuple[Work, int] | None = None,
        quarantine_after: int = 5,
    ) -> None:
        self.hub = hub
        self._commit_tags = {"hub": hub, "kind": "entity"}
        self.store = store
        self.code = code
        self.on_outbox = on_outbox
        self.marker = marker
        #: the operation this host's predecessor died running, and its crash count
        self.suspect = suspect if suspect is not None and suspect[0].kind == "entity" else None
        self.quarantine_after = quarantine_after
        self.machine = EntityMachine(
            _StoreLoader(store, code),
            None if marker is None else self._mark,
            None if self.suspect is None else self._poison,
        )
        self._queue: list[Delivery] = []
        self._failed_commits = 0
        self._wake = asyncio.Event()
        self._pump_task = asyncio.get_event_loop().create_task(self._pump())

    @property
    def live(self) -> Mapping[EntityId, Any]:
        """The entities in memory."""
        return self.machine.live

    async def operate(
        self, eid: str, operation: str, input_blob: bytes, sender: str, seq: int, ordered: bool
    ) -> bytes:
        """Run (or recognise as already run) one operation; returns its encoded Outcome."""
        future = asyncio.get_event_loop().create_future()
        self._queue.append(
            Delivery(EntityId.parse(eid), operation, input_blob, sender, seq, ordered, future)
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
                Delivery(EntityId.parse(eid), operation, input_blob, sender, seq, True, future)
            )
            futures.append(future)
        self._wake.set()
        return list(await asyncio.gather(*futures))

    def passivate(self, idle_seconds: float | None) -> int:
        """Drop entities idle longer than their passivation time; returns how many.

        Their checkpoints are already committed, so leaving memory loses nothing: the next
        operation re-activates an entity from the store.
        """
        return self.machine.passivate(time.monotonic(), idle_seconds)

    @property
    def idle(self) -> bool:
        """Nothing in memory and nothing queued."""
        return not self.machine.live and not self._queue

    # -- the pump ---------------------------------------------------------------------

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            done = self.machine.step(batch, time.monotonic())
            if self.marker is not None:
                self.marker.clear()
            for op, result in done.failed:
                if not op.reply.done():
                    op.reply.set_result(result)  # not loaded: nothing to commit
            for op in done.refused:
                log.warning(
                    "entity %s: refused operation %r from %s", op.eid, op.operation, op.sender
                )
            if done.released:
                self._queue[:0] = done.released
                self._wake.set()
            if done.records or done.quarantined:
                if not await self._commit(done.records, done.answered, done.quarantined):
                    continue
            if self.suspect is not None:
                self._acquit(done.answered)
            applied: dict[str, int] = {}
            for op, result in done.answered:
                applied[op.eid.name] = applied.get(op.eid.name, 0) + 1
                if not op.reply.done():
                    op.reply.set_result(result)
            for name, count in applied.items():
                metrics.inc("entity_operations", {"hub": self.hub, "entity": name}, count)
            if any(record.outbox for record in done.records):
                self.on_outbox()

    async def _commit(
        self,
        records: list[Record],
        answered: list[tuple[Delivery, bytes]],
        quarantined: list[tuple[Delivery, Record]],
    ) -> bool:
        """Commit a batch's records; on failure, fail its callers and reload from the store."""
        try:
            checkpoints = [_checkpoint(record) for record in records]
            with metrics.timed("checkpoint_write_seconds", self._commit_tags):
                loop = asyncio.get_event_loop()
                if quarantined:
                    await loop.run_in_executor(None, self._dead_letter, quarantined)
                if checkpoints:
                    await loop.run_in_executor(None, self.store.commit_entities, checkpoints)
        except (StoreUnavailableError, StaleEntityWriteError):
            # The database dropped the write, or another host wrote these entities: this
            # batch committed whole or not at all, and the store recognises what it holds
            # by sender and number. Run it all again from the store.
            log.exception("entity commit refused or cut off; re-running from the store")
            self._failed_commits += 1
            # A store that refuses writes (full, read-only) refuses the next try too.
            await asyncio.sleep(min(0.05 * 2 ** (self._failed_commits - 1), 10.0))
            again = [held for op, _ in answered for held in [op, *self.machine.forget(op.eid)]]
            self._queue[:0] = again
            self._wake.set()
            return False
        except Exception as exc:
            log.exception("entity commit failed; reloading from the store")
            for op, _ in answered:
                # Ops waiting on a lock fail with it rather than wait forever.
                for held in [op, *self.machine.forget(op.eid)]:
                    if not held.reply.done():
                        held.reply.set_exception(exc)
            return False
        self._failed_commits = 0
        return True

    # -- poison ---------------------------------------------------------------------------

    def _mark(self, op: Delivery) -> None:
        assert self.marker is not None
        self.marker.mark(
            Work("entity", str(op.eid), f"operation {op.operation}", op.sender, op.seq)
        )

    def _is_suspect(self, op: Delivery) -> bool:
        assert self.suspect is not None
        work = self.suspect[0]
        return op.seq == work.seq and op.sender == work.sender and str(op.eid) == work.target

    def _poison(self, op: Delivery) -> Exception | None:
        """The error of the operation to set aside: the suspect, once it crashed too often."""
        if self.suspect is None or not self._is_suspect(op):
            return None
        work, crashes = self.suspect
        if crashes < self.quarantine_after:
            return None
        return QuarantinedError(work.id, crashes, work.detail)

    def _dead_letter(self, quarantined: list[tuple[Delivery, Record]]) -> None:
        """Record poison as answered (its error) and list it, before the batch's records."""
        assert self.suspect is not None
        work, crashes = self.suspect
        for op, record in quarantined:
            item = Quarantined(
                work.id,
                "entity",
                str(op.eid),
                crashes,
                work.detail,
                time.time(),
                op.operation,
                op.sender,
                op.seq,
                op.input,
            )
            self.store.dead_letter(_checkpoint(record), item)
            log.error("entity %s: operation %r of %s quarantined", op.eid, op.operation, op.sender)
            metrics.inc("quarantined", {"hub": self.hub, "kind": "entity"})
        self.suspect = None

    def _acquit(self, answered: list[tuple[Delivery, bytes]]) -> None:
        """The suspect ran to its end: its crash count starts again from zero."""
        assert self.suspect is not None
        if any(self._is_suspect(op) for op, _ in answered):
            self.store.forget_crashes(self.suspect[0].id)
            self.suspect = None
