"""Instance control: start, route messages to, stop, purge and restart instances.

Every answer is decided inside the transaction that writes: a message is stored iff the
instance's status takes it, and a refused operation writes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from ... import logs, metrics
from ...config import HubConfig
from ...errors import (
    DurableError,
    InstanceNotFoundError,
    InvalidOperationError,
    OrchestratorNotFoundError,
)
from ...orchestration import history as h
from ...orchestration.codec import decode_event, encode_event
from ...orchestration.status import ENDED, LIVE, OrchestrationStatus
from ...serialization import dumps, failure_of
from ...store import GuardedMessage, InstanceQuery, InstanceRecord, NewInstance, Store
from .completions import Completions
from .group_commit import GroupCommit
from .pool import HostPool

log = logging.getLogger("ray_durable.supervisor")
T = TypeVar("T")

SUSPENDED = str(OrchestrationStatus.SUSPENDED)
RUNNING = str(OrchestrationStatus.RUNNING)
SUSPENDABLE = tuple(s for s in LIVE if s != SUSPENDED)


def _ended(record: InstanceRecord, what: str) -> InvalidOperationError:
    """The refusal of an operation on an instance that has ended."""
    return InvalidOperationError(
        f"instance {record.instance_id!r} is {record.status}; {what} (it has ended: "
        "nothing was changed)"
    )


class InstanceControl:
    """Creates instances and writes the messages that steer them; hosts do the rest."""

    def __init__(
        self,
        config: HubConfig,
        store: Store,
        pool: HostPool,
        completions: Completions,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.store = store
        self.pool = pool
        self.completions = completions
        self.clock = clock
        self._tags = {"hub": config.hub}
        # Starts and messages that arrive together share a transaction (and its fsync).
        self._create = GroupCommit(store.create_instances)
        self._append = GroupCommit(store.append_inbox_many)

    # -- starting -----------------------------------------------------------------------

    async def start_new(
        self,
        name: str,
        version: str | None,
        input_blob: bytes,
        start_blob: bytes,
        instance_id: str,
        parent: tuple[str, int] | None = None,
        start_id: str | None = None,
    ) -> str:
        """Create an instance, durably, then activate it on its host.

        A start whose ``start_id`` created the stored row already (a retry, a re-delivered
        message) changes nothing: it neither runs the instance twice nor replaces its end.
        """
        retry = self.config.activity_retry_policy()
        if retry is not None:
            started: Any = decode_event(start_blob, "orchestration start")
            start_blob = encode_event(dataclasses.replace(started, activity_retry=retry))
        record = self._new_record(name, version, input_blob, instance_id, parent)
        record.start_id = start_id
        host = record.host or ""
        self.pool.placing.add(host)  # until committed: a late end report must not recycle it
        try:
            created = await self._create(NewInstance(record, [], [start_blob]))
        except DurableError:
            self.pool.unplace(host)
            raise
        finally:
            self.pool.placed(host)
        if not created:
            self.pool.unplace(host)
            log.info(
                "hub %s: start %s of %s delivered again", self.config.hub, start_id, instance_id
            )
            return instance_id
        # In the background and retried: a call lost with a dying host would otherwise
        # leave the stored instance Pending forever.
        self.pool.activate_soon(host, [instance_id])
        self.pool.refill_spares()
        metrics.inc("instances_started", {**self._tags, "name": name})
        logs.event(
            log,
            logging.INFO,
            "instance started",
            hub=self.config.hub,
            instance_id=instance_id,
            execution_id=record.execution_id,
            name=name,
            host=host,
        )
        return instance_id

    def _new_record(
        self,
        name: str,
        version: str | None,
        input_blob: bytes,
        instance_id: str,
        parent: tuple[str, int] | None,
    ) -> InstanceRecord:
        code = self.store.load_code("orchestrator", name, version)
        if code is None:
            known = tuple(self.store.code_names("orchestrator"))
            raise OrchestratorNotFoundError(name, known, version)
        now = self.clock()
        return InstanceRecord(
            instance_id=instance_id,
            name=name,
            version=code[0],
            status=str(OrchestrationStatus.PENDING),
            execution_id=uuid.uuid4().hex,
            created_time=now,
            last_updated_time=now,
            input=input_blob,
            parent_instance_id=parent[0] if parent else None,
            parent_seq=parent[1] if parent else None,
            host=self.pool.place(instance_id),
        )

    async def start_child(
        self,
        parent_id: str,
        seq: int,
        name: str,
        version: str,
        child_id: str,
        input_blob: bytes,
        start: bytes,
        start_id: str | None = None,
    ) -> None:
        """Start a sub-orchestration (idempotent: re-dispatch after a crash is a no-op)."""
        existing = self.store.load_instance(child_id)
        if existing is not None and existing.parent_instance_id == parent_id:
            if existing.start_id is None or existing.start_id == start_id:
                if OrchestrationStatus(existing.status).is_terminal:
                    await self.completions.instance_done(child_id, existing.status, parent_id)
                return
            # else a child of an earlier execution of the parent (continue-as-new): replaced
        try:
            await self.start_new(
                name, version or None, input_blob, start, child_id, (parent_id, seq), start_id
            )
        except DurableError as exc:
            answer = encode_event(h.SubOrchestrationFailed(seq, failure_of(exc)))
            self.store.append_inbox(parent_id, answer)
            self.pool.poke_instance(parent_id)

    async def restart(self, instance_id: str, new_instance_id: str | None) -> str:
        """Start the instance's orchestrator again with its input (Durable Functions' restart).

        Under a new id any instance restarts; under its own id only an ended one, which the
        new run replaces (a live one is refused with InstanceExistsError, nothing written).
        """
        record = self.require(instance_id)
        started = decode_event(self._start_event(record))
        assert isinstance(started, h.ExecutionStarted)  # _start_event found one
        # A new run: the first execution (generation 1) of a trace of its own.
        start = encode_event(dataclasses.replace(started, trace=None, generation=None))
        target = new_instance_id or instance_id
        input_blob = record.input if record.input is not None else dumps(None)
        return await self.start_new(record.name, record.version, input_blob, start, target)

    def _start_event(self, record: InstanceRecord) -> bytes:
        """The ExecutionStarted of the current execution: in history, or the inbox if Pending."""
        history = self.store.load_history(record.instance_id)
        if history:
            candidates = history[:2]
        else:
            candidates = [m.event for m in self.store.load_inbox(record.instance_id)[:1]]
        for blob in candidates:
            if isinstance(decode_event(blob), h.ExecutionStarted):
                return blob
        raise InvalidOperationError(
            f"instance {record.instance_id!r} is {record.status} and has no start to restart from"
        )

    def require(self, instance_id: str) -> InstanceRecord:
        """The instance's record; InstanceNotFoundError if there is none."""
        record = self.store.load_instance(instance_id)
        if record is None:
            raise InstanceNotFoundError(instance_id)
        return record

    # -- messages -----------------------------------------------------------------------

    async def accept(
        self,
        instance_id: str,
        event_blob: bytes,
        statuses: tuple[str, ...],
        new_status: str | None = None,
        message_id: str | None = None,
    ) -> InstanceRecord:
        """Store a message iff the instance's status is in ``statuses``, then nudge its host.

        Returns the instance as found: the message was written iff its status is in
        ``statuses``; otherwise nothing was (no row, no status, no last_updated_time).
        """
        message = GuardedMessage(instance_id, event_blob, statuses, new_status, message_id)
        record = await self._append(message)
        if record is None:
            raise InstanceNotFoundError(instance_id)
        if record.status in statuses and record.host:
            # Only a nudge: the host reads its inbox in id order, so a large message that
            # Ray delivers late cannot overtake the events raised before it.
            self.pool.poke(record.host, instance_id)
        return record

    async def deliver(
        self, instance_id: str, event_blob: bytes, message_id: str | None = None
    ) -> None:
        """Durably accept a message (external event) for a live instance, then route it."""
        record = await self.accept(instance_id, event_blob, LIVE, None, message_id)
        if record.status not in LIVE:
            raise _ended(record, "it takes no more messages")

    async def deliver_many(
        self, events: Sequence[tuple[str, bytes, str | None]]
    ) -> list[DurableError | None]:
        """``deliver`` each message, in order and together; each one's refusal or None."""
        # Each reaches the group commit before the next starts: stored in the order given.
        return await _each(self.deliver(*event) for event in events)

    async def start_many(
        self, starts: Sequence[tuple[str, str | None, bytes, bytes, str, str | None]]
    ) -> list[str | DurableError]:
        """``start_new`` each (name, version, input, start, instance id, start id), together
        (one transaction); each one's instance id or refusal."""
        return await _each(
            self.start_new(name, version, input_blob, start_blob, iid, start_id=start_id)
            for name, version, input_blob, start_blob, iid, start_id in starts
        )

    async def terminate(self, instance_id: str, reason: str, recursive: bool = True) -> None:
        """Ask a live instance (and its live children) to stop; an ended one is refused."""
        record = await self.accept(instance_id, encode_event(h.ExecutionTerminated(reason)), LIVE)
        if record.status not in LIVE:
            raise _ended(record, "it cannot be terminated")
        if recursive:
            for child in self.store.children(instance_id):
                if not OrchestrationStatus(child.status).is_terminal:
                    try:
                        await self.terminate(child.instance_id, reason, True)
                    except (InvalidOperationError, InstanceNotFoundError):
                        pass  # the child ended (or was purged) meanwhile: nothing to stop

    async def suspend(self, instance_id: str, reason: str) -> None:
        """Hold a live instance's events until resumed; no-op if already Suspended."""
        record = await self.accept(
            instance_id, encode_event(h.ExecutionSuspended(reason)), SUSPENDABLE, SUSPENDED
        )
        if record.status in SUSPENDABLE or record.status == SUSPENDED:
            return
        raise _ended(record, "it cannot be suspended")

    async def resume(self, instance_id: str, reason: str) -> None:
        """Let a Suspended instance go on; any other status is refused."""
        record = await self.accept(
            instance_id, encode_event(h.ExecutionResumed(reason)), (SUSPENDED,), RUNNING
        )
        if record.status == SUSPENDED:
            return
        if record.status not in LIVE:
            raise _ended(record, "it cannot be resumed")
        raise InvalidOperationError(
            f"instance {instance_id!r} is {record.status}, not Suspended; nothing to resume"
        )

    # -- purging ------------------------------------------------------------------------

    async def purge(self, instance_id: str) -> int:
        """Delete an ended instance and its ended sub-orchestrations; returns how many."""
        children = self.store.children(instance_id)
        record = self.store.delete_instance_if(instance_id, ENDED)
        if record is None:
            raise InstanceNotFoundError(instance_id)
        if record.status not in ENDED:
            raise InvalidOperationError(
                f"instance {instance_id!r} is {record.status}; only completed, failed or "
                "terminated instances can be purged (terminate it first)"
            )
        count = 1
        for child in children:
            if OrchestrationStatus(child.status).is_terminal:
                try:
                    count += await self.purge(child.instance_id)
                except (InvalidOperationError, InstanceNotFoundError):
                    pass  # restarted or purged meanwhile: not ours to delete
        return count

    async def purge_by(self, query: InstanceQuery) -> int:
        """Purge every terminal instance matching the query; returns how many."""
        statuses = tuple(s for s in (query.statuses or ENDED) if s in ENDED)
        if not statuses:
            return 0
        count = 0
        # Only the filters: a page (top, skip, after) of the query would purge a page only.
        only = InstanceQuery(
            statuses, query.created_from, query.created_to, query.prefix, name=query.name
        )
        for record in self.store.query(only):
            try:
                count += await self.purge(record.instance_id)
            except (InvalidOperationError, InstanceNotFoundError):
                pass  # purged as a child above, or restarted since the query
        return count


async def _each(calls: Iterable[Awaitable[T]]) -> list[T | DurableError]:
    """Await the calls together: each one's result, or its refusal (a DurableError)."""
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, DurableError):
            raise outcome  # not a refusal: the whole call fails, as a bug
    return outcomes  # type: ignore[return-value]
