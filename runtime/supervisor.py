"""The supervisor: one named, detached actor per task hub.

Guarantees (each rebuilt from the store alone, so a restarted supervisor gives them too):

- every non-terminal instance is live on exactly the host its row names: on start the
  supervisor re-attaches to the hosts still alive (by name), recreates missing ones and
  asks each to activate its instances;
- a host that dies is noticed at once (its ``watch`` call fails) and its instances are
  re-activated from their checkpoints once Ray has restarted it;
- a message for an instance (start, external event, termination, timer, child result) is
  written to the store before it is routed, so a dead host loses none;
- due timers fire from the store, whatever process created them;
- one hub on one store has one live supervisor: it holds the hub's lease in the store
  (``runtime.lease``), renewed every 2 s and valid for 10 s. A start from another Ray
  cluster while the lease is live is refused with HubLeaseHeldError naming the holder;
  a supervisor restarted by Ray in its own cluster takes the lease back at once, and
  after the holder's cluster died the next start takes it at once if the holder ran on
  the same machine (its pid is gone), else once it expired. The lease's epoch fences
  writers: this supervisor and every host it creates commit only while the lease still
  has their epoch; one that lost it stops (a supervisor stops its hosts too).

It holds no workflow semantics: those live in the replay engine inside the hosts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import ray

from . import logs, metrics
from .config import HubConfig
from .entity import UNLOCK
from .entity_id import EntityId
from .errors import (
    DurableError,
    FencedError,
    HubLeaseHeldError,
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidOperationError,
    OrchestratorNotFoundError,
)
from .hosts import Host
from .lease import LeaseKeeper, stop_this_actor
from .messages import (
    ENTITY_KINDS,
    EntitySignal,
    OrderedSignal,
    OutboxKind,
    StartOrchestration,
    Unlock,
    decode_message,
)
from .orchestration import history as h
from .orchestration.codec import decode_event, encode_event
from .orchestration.status import OrchestrationStatus
from .registry import CodeCache
from .routing import NAMESPACE, EntityRouter, entity_host, pool_host, pool_index
from .serialization import dumps, failure_of
from .store import InstanceQuery, InstanceRecord, open_store

log = logging.getLogger("ray_durable.supervisor")

#: The Host actor class; ``ray.remote`` classes carry ``.options`` that type checkers don't see.
_HOST_ACTOR: Any = Host

#: How often the supervisor looks for outbox rows nobody nudged it about (seconds).
OUTBOX_SWEEP_SECONDS = 2.0


def supervisor_name(hub: str) -> str:
    """The Ray actor name of a hub's supervisor."""
    return f"durable-supervisor/{hub}"


class SupervisorCore:
    """The supervisor's logic; the Ray actor below only exposes it."""

    def __init__(self, config: HubConfig, clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.clock = clock or time.time
        assert config.store is not None  # HubConfig fills in the default store
        self.store = open_store(config.store, config.hub, config.durability)
        try:
            self.lease = LeaseKeeper(self.store, self._lost_lease)
        except HubLeaseHeldError:
            self.store.close()
            raise  # refused: nothing below starts
        self.hosts: dict[str, Any] = {}
        self.spares: list[str] = []
        self.retired: set[str] = set()
        self.waiters: dict[str, list[asyncio.Future]] = {}
        self._timer_wake = asyncio.Event()
        self.code = CodeCache(self.store)
        self.router = EntityRouter(lambda: self._self_handle())
        self._lanes: dict[tuple[bool, str], asyncio.Future] = {}
        self._tags = {"hub": config.hub}
        loop = asyncio.get_event_loop()
        self.ready = loop.create_task(self._recover())
        self._timer_task = loop.create_task(self._timer_service())
        self._sweep_task = loop.create_task(self._outbox_sweep())
        self._lease_task = loop.create_task(self.lease.keep())

    # -- recovery ---------------------------------------------------------------------

    async def _recover(self) -> None:
        started = time.monotonic()
        self._retire_leftover_spares()
        by_host: dict[str, list[str]] = {}
        for record in self.store.active_instances():
            host = record.host or self._place(record.instance_id)
            if record.host is None:
                self.store.set_host(record.instance_id, host)
            by_host.setdefault(host, []).append(record.instance_id)
        for name, ids in by_host.items():
            self._host(name).activate.remote(ids)
        self._refill_spares()
        asyncio.get_event_loop().create_task(self.flush_outbox())
        if by_host:
            metrics.inc("recoveries", {**self._tags, "kind": "supervisor"})
        logs.event(
            log,
            logging.INFO,
            "supervisor ready",
            hub=self.config.hub,
            instances=sum(map(len, by_host.values())),
            hosts=len(by_host),
            seconds=round(time.monotonic() - started, 3),
        )

    def _lost_lease(self, exc: FencedError) -> None:
        """Another cluster's supervisor took the hub over: stop every host, then this actor."""
        logs.event(
            log,
            logging.ERROR,
            "lease lost; supervisor and hosts stop",
            hub=self.config.hub,
            error=str(exc),
        )
        for task in (self._timer_task, self._sweep_task):
            task.cancel()
        for name in list(self.hosts) + self.spares:
            self._kill(name)
        stop_this_actor(asyncio.get_event_loop())

    def _self_handle(self) -> Any:
        return ray.get_actor(supervisor_name(self.config.hub), namespace=NAMESPACE)

    def _retire_leftover_spares(self) -> None:
        leftover = self.store.get_meta("spares")
        if not leftover:
            return
        in_use = {r.host for r in self.store.active_instances()}
        for name in leftover.split(","):
            if name and name not in in_use:
                self._kill(name)

    # -- placement and host lifecycle --------------------------------------------------

    def _place(self, instance_id: str) -> str:
        if self.config.placement == "pooled":
            return pool_host(self.config.hub, pool_index(instance_id, self.config.pool_size))
        if self.spares:
            name = self.spares.pop(0)
            self._save_spares()
            return name
        return self._new_host_name()

    def _new_host_name(self) -> str:
        return f"{self.config.hub}/host-{uuid.uuid4().hex[:12]}"

    def _refill_spares(self) -> None:
        # A warm spare hides the half second a new worker process takes from start_new.
        if self.config.placement != "dedicated":
            return
        while len(self.spares) < self.config.warm_hosts:
            name = self._new_host_name()
            self._host(name)
            self.spares.append(name)
        self._save_spares()

    def _save_spares(self) -> None:
        self.store.set_meta("spares", ",".join(self.spares))

    def _host(self, name: str, resources: dict[str, Any] | None = None) -> Any:
        handle = self.hosts.get(name)
        if handle is None:
            self.retired.discard(name)
            handle = _HOST_ACTOR.options(
                **(resources or {}),
                name=name,
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                max_restarts=-1,
                max_task_retries=0,
                max_concurrency=100_000,
            ).remote(
                self.config.hub,
                self.config.store,
                self.config.durability,
                supervisor_name(self.config.hub),
                self._host_clock(),
                self.config.passivate_after,
                self.config.activity_options(),
                self.lease.epoch,
            )
            self.hosts[name] = handle
            asyncio.get_event_loop().create_task(self._watch(name, handle))
        return handle

    def _host_clock(self) -> Callable[[], float] | None:
        return None if self.clock is time.time else self.clock

    async def _watch(self, name: str, handle: Any) -> None:
        while name not in self.retired:
            try:
                await handle.watch.remote()
            except Exception as exc:
                if name in self.retired:
                    return
                logs.event(
                    log,
                    logging.WARNING,
                    "host failed; recovering its instances",
                    hub=self.config.hub,
                    host=name,
                    error=type(exc).__name__,
                )
                await self._revive(name)

    async def _revive(self, name: str) -> None:
        metrics.inc("recoveries", {**self._tags, "kind": "host"})
        # The dead host may have committed outbox rows (unlocks) without nudging us.
        await self.flush_outbox()
        await self._activate_on(name, None)

    async def _activate_on(self, name: str, ids: list[str] | None) -> None:
        """Activate instances on a host until one of its incarnations has taken them.

        ``None`` means every instance the store places there, read again at each try: an
        instance started while the host was dying is then found as well. A new incarnation
        also activates what the store assigns it by itself (HostCore), so a call lost with
        an incarnation that dies after this returns loses nothing.
        """
        attempt = 0
        while name not in self.retired:
            todo = ids
            if todo is None:
                todo = [r.instance_id for r in self.store.active_instances(host=name)]
            try:
                await self._host(name).activate.remote(todo)
                return
            except ray.exceptions.ActorDiedError:
                # Gone for good (not restartable): a new actor takes the same name.
                self.hosts.pop(name, None)
            except Exception:
                pass  # restarting: the next try reaches its new incarnation
            attempt += 1
            if attempt % 60 == 0:
                logs.event(
                    log, logging.WARNING, "host still unreachable", hub=self.config.hub, host=name
                )
            await asyncio.sleep(min(0.05 * attempt, 1.0))

    def _kill(self, name: str) -> None:
        self.retired.add(name)
        handle = self.hosts.pop(name, None)
        try:
            handle = handle or ray.get_actor(name, namespace=NAMESPACE)
            ray.kill(handle, no_restart=True)
        except Exception:
            pass  # already gone

    # -- code ---------------------------------------------------------------------------

    async def register(self, items: list[tuple[str, str, str, bytes]]) -> None:
        """Store registered code (kind, name, version, pickled object)."""
        for kind, name, version, blob in items:
            self.store.register_code(kind, name, version, blob)

    # -- starting and routing -----------------------------------------------------------

    async def start_new(
        self,
        name: str,
        version: str | None,
        input_blob: bytes,
        start_blob: bytes,
        instance_id: str,
        parent: tuple[str, int] | None = None,
    ) -> str:
        """Create an instance, durably, then activate it on its host."""
        await self.ready
        code = self.store.load_code("orchestrator", name, version)
        if code is None:
            known = tuple(self.store.code_names("orchestrator"))
            raise OrchestratorNotFoundError(name, known, version)
        now = self.clock()
        host = self._place(instance_id)
        record = InstanceRecord(
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
            host=host,
        )
        retry = self.config.activity_retry_policy()
        if retry is not None:
            started: Any = decode_event(start_blob, "orchestration start")
            start_blob = encode_event(dataclasses.replace(started, activity_retry=retry))
        try:
            self.store.create_instance(record, [], [start_blob])
        except DurableError:
            if self.config.placement == "dedicated":
                self.spares.insert(0, host)
            raise
        # Awaited in the background and retried: a call lost with a dying host would
        # otherwise leave the stored instance Pending forever.
        asyncio.get_event_loop().create_task(self._activate_on(host, [instance_id]))
        self._refill_spares()
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

    async def start_child(
        self,
        parent_id: str,
        seq: int,
        name: str,
        version: str,
        child_id: str,
        input_blob: bytes,
        start: bytes,
    ) -> None:
        """Start a sub-orchestration (idempotent: re-dispatch after a crash is a no-op)."""
        existing = self.store.load_instance(child_id)
        if existing is not None and existing.parent_instance_id == parent_id:
            if OrchestrationStatus(existing.status).is_terminal:
                await self.instance_done(child_id, existing.status, parent_id)
            return
        try:
            await self.start_new(
                name, version or None, input_blob, start, child_id, (parent_id, seq)
            )
        except DurableError as exc:
            answer = encode_event(h.SubOrchestrationFailed(seq, failure_of(exc)))
            self.store.append_inbox(parent_id, answer)
            self._poke(parent_id)

    async def deliver(self, instance_id: str, event_blob: bytes) -> None:
        """Durably accept a message (external event) for a live instance, then route it."""
        record = await self._accept(instance_id, event_blob, LIVE)
        if record.status not in LIVE:
            raise _ended(record, "it takes no more messages")

    def _poke(self, instance_id: str) -> None:
        record = self.store.load_instance(instance_id)
        if (
            record is not None
            and record.host
            and not OrchestrationStatus(record.status).is_terminal
        ):
            self._host(record.host).poke.remote(instance_id)

    async def instance_done(
        self, instance_id: str, status: str, parent_id: str | None = None
    ) -> None:
        """A host reports an instance reached a terminal status."""
        for future in self.waiters.pop(instance_id, []):
            if not future.done():
                future.set_result(None)
        if parent_id is not None:
            self._poke(parent_id)
        if self.config.placement == "dedicated":
            record = self.store.load_instance(instance_id)
            if record is not None and record.host:
                self._kill(record.host)

    # -- entities -----------------------------------------------------------------------

    async def entity_route(self, name: str) -> tuple[str, list[str]]:
        """("pooled", pool host names) or ("dedicated", [hub]) for an entity type."""
        await self.ready
        etype = self.code.get("entity", name)
        if (etype.placement or self.config.placement) == "pooled":
            names = [pool_host(self.config.hub, i) for i in range(self.config.pool_size)]
            for host in names:
                self._host(host)
            return "pooled", names
        return "dedicated", [self.config.hub]

    async def entity_operations(self, name: str) -> tuple[str, ...] | None:
        """The operations of an entity type; None for a function entity (any public name)."""
        await self.ready
        etype = self.code.get("entity", name)
        return etype.operations() if etype.is_class else None

    async def entity_host(self, eid: str, name: str) -> Any:
        """The host actor of an entity, created with the entity type's Ray resources."""
        await self.ready
        entity = EntityId.parse(eid)
        resources = None
        if name == entity_host(self.config.hub, entity):
            resources = dict(self.code.get("entity", entity.name).options)
        return self._host(name, resources)

    async def flush_outbox(self) -> None:
        """Deliver committed entity signals, unlocks and orchestration starts."""
        # Each target is a lane of its own, delivered in commit order, and unlocks have
        # lanes apart from signals: a signal that waits on a locked entity then holds back
        # neither the unlock that frees it nor any other target's messages.
        lanes: dict[tuple[bool, str], list[Any]] = {}
        for message in self.store.load_outbox():
            key = (message.kind != OutboxKind.UNLOCK, message.target)
            if key not in self._lanes:
                lanes.setdefault(key, []).append(message)
        for key, messages in lanes.items():
            self._lanes[key] = asyncio.ensure_future(self._run_lane(key, messages))

    async def _run_lane(self, key: tuple[bool, str], messages: list[Any]) -> None:
        try:
            delivered = await self._deliver_lane(messages)
        finally:
            del self._lanes[key]  # whatever happened: a stuck lane would block its target
        if not delivered:
            await asyncio.sleep(0.5)
        await self.flush_outbox()  # what this lane skipped while busy, or a retry

    async def _deliver_lane(self, messages: list[Any]) -> bool:
        """Deliver one target's messages in commit order; False when one failed."""
        for message in messages:
            try:
                await self._deliver_outbox(message)
            except Exception:
                log.exception(
                    "hub %s: outbox message %d not delivered yet", self.config.hub, message.id
                )
                if message.kind in ENTITY_KINDS:
                    self.router.forget(EntityId.parse(message.target))  # its host may be new
                return False
            self.store.delete_outbox([message.id])
        return True

    async def _deliver_outbox(self, message: Any) -> None:
        sent = decode_message(message.kind, message.target, message.payload)
        if isinstance(sent, Unlock):
            owner = sent.owner
            host = await self.router.ahandle(sent.target)
            await host.entity_op.remote(
                message.target, UNLOCK, owner.encode(), str(owner.sender), sent.counter, False
            )
        elif isinstance(sent, EntitySignal):
            host = await self.router.ahandle(sent.target)
            await host.entity_op.remote(
                message.target, sent.operation, sent.input, message.sender, message.id, False
            )
        elif isinstance(sent, OrderedSignal):
            host = await self.router.ahandle(sent.target)
            await host.entity_op.remote(
                message.target, sent.operation, sent.input, str(sent.sender), sent.counter, True
            )
        elif isinstance(sent, StartOrchestration):
            iid = sent.instance_id or uuid.uuid4().hex
            try:
                await self.start_new(sent.name, sent.version or None, sent.input, sent.start, iid)
            except InstanceExistsError:
                pass  # delivered before a crash: starting it again would be a duplicate

    async def read_entity(self, eid: str) -> tuple[bytes | None, bool] | None:
        """(state, exists) of an entity as last committed."""
        await self.ready
        entity = EntityId.parse(eid)
        row = self.store.load_entity(entity.name, entity.key)
        return None if row is None else (row[0], row[1])

    async def list_entities(self, name: str | None, limit: int, offset: int) -> list[Any]:
        """Stored entities, a page at a time."""
        await self.ready
        return self.store.list_entities(name, limit, offset)

    async def clean_entities(self) -> int:
        """Remove entities without state."""
        await self.ready
        return self.store.clean_entities()

    # -- reading ------------------------------------------------------------------------

    async def get_status(
        self, instance_id: str, show_history: bool = False
    ) -> tuple[InstanceRecord | None, list[bytes] | None]:
        """The instance row, and its history if asked."""
        await self.ready
        record = self.store.load_instance(instance_id)
        history = self.store.load_history(instance_id) if record and show_history else None
        return record, history

    async def query(self, query: InstanceQuery) -> list[InstanceRecord]:
        """Instances matching a query."""
        await self.ready
        return self.store.query(query)

    async def wait(self, instance_id: str, timeout: float | None) -> InstanceRecord | None:
        """The instance once terminal; None if ``timeout`` seconds pass first."""
        await self.ready
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            future = asyncio.get_event_loop().create_future()
            self.waiters.setdefault(instance_id, []).append(future)
            record = self.store.load_instance(instance_id)
            if record is None:
                raise InstanceNotFoundError(instance_id)
            if OrchestrationStatus(record.status).is_terminal:
                return record
            left = 5.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return None
            # The fallback re-check covers a host that died between its commit and its report.
            try:
                await asyncio.wait_for(future, min(left, 5.0))
            except asyncio.TimeoutError:
                pass

    # -- lifecycle: every answer is decided inside the transaction that writes --------------

    async def _accept(
        self,
        instance_id: str,
        event_blob: bytes,
        statuses: tuple[str, ...],
        new_status: str | None = None,
    ) -> InstanceRecord:
        """Store a message iff the instance's status is in ``statuses``, then nudge its host.

        Returns the instance as found: the message was written iff its status is in
        ``statuses``; otherwise nothing was (no row, no status, no last_updated_time).
        """
        await self.ready
        record = self.store.append_inbox_if(instance_id, event_blob, statuses, new_status)
        if record is None:
            raise InstanceNotFoundError(instance_id)
        if record.status in statuses and record.host:
            # Only a nudge: the host reads its inbox in id order, so a large message that
            # Ray delivers late cannot overtake the events raised before it.
            self._host(record.host).poke.remote(instance_id)
        return record

    async def terminate(self, instance_id: str, reason: str, recursive: bool = True) -> None:
        """Ask a live instance (and its live children) to stop; an ended one is refused."""
        record = await self._accept(instance_id, encode_event(h.ExecutionTerminated(reason)), LIVE)
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
        record = await self._accept(
            instance_id, encode_event(h.ExecutionSuspended(reason)), SUSPENDABLE, SUSPENDED
        )
        if record.status in SUSPENDABLE or record.status == SUSPENDED:
            return
        raise _ended(record, "it cannot be suspended")

    async def resume(self, instance_id: str, reason: str) -> None:
        """Let a Suspended instance go on; any other status is refused."""
        record = await self._accept(
            instance_id, encode_event(h.ExecutionResumed(reason)), (SUSPENDED,), RUNNING
        )
        if record.status == SUSPENDED:
            return
        if record.status not in LIVE:
            raise _ended(record, "it cannot be resumed")
        raise InvalidOperationError(
            f"instance {instance_id!r} is {record.status}, not Suspended; nothing to resume"
        )

    async def purge(self, instance_id: str) -> int:
        """Delete an ended instance and its ended sub-orchestrations; returns how many."""
        await self.ready
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
        await self.ready
        statuses = tuple(s for s in (query.statuses or ENDED) if s in ENDED)
        if not statuses:
            return 0
        count = 0
        for record in self.store.query(
            InstanceQuery(statuses, query.created_from, query.created_to, query.prefix)
        ):
            try:
                count += await self.purge(record.instance_id)
            except (InvalidOperationError, InstanceNotFoundError):
                pass  # purged as a child above, or restarted since the query
        return count

    async def restart(self, instance_id: str, new_instance_id: str | None) -> str:
        """Start the instance's orchestrator again with its input (Durable Functions' restart).

        Under a new id any instance restarts; under its own id only an ended one, which the
        new run replaces (a live one is refused with InstanceExistsError, nothing written).
        """
        await self.ready
        record = self._require(instance_id)
        start = self._start_event(record)
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

    def _require(self, instance_id: str) -> InstanceRecord:
        record = self.store.load_instance(instance_id)
        if record is None:
            raise InstanceNotFoundError(instance_id)
        return record

    async def retire_idle_host(self, name: str) -> None:
        """Stop a dedicated entity's host whose entity passivated; a message revives it."""
        if name in self.hosts:
            logs.event(log, logging.INFO, "idle host retired", hub=self.config.hub, host=name)
            self._kill(name)

    async def host_of(self, instance_id: str) -> Any:
        """The handle of the host an instance lives on (tests kill it); None once retired."""
        record = self.store.load_instance(instance_id)
        if record is None or record.host is None:
            return None
        # Only look: creating the host of a finished dedicated instance would leak an actor.
        return self.hosts.get(record.host)

    async def hub_config(self) -> dict[str, Any]:
        """This hub's settings."""
        return self.config.to_dict()

    async def shutdown(self) -> None:
        """Stop every host of the hub (the store keeps everything)."""
        self._timer_task.cancel()
        self._sweep_task.cancel()
        for name in list(self.hosts) + self.spares:
            self._kill(name)
        self.spares.clear()
        self._save_spares()
        self._lease_task.cancel()
        self.lease.release()

    # -- durable timers -----------------------------------------------------------------

    async def fire_timers(self) -> None:
        """Fire every timer due now (the manual clock calls this after advancing)."""
        await self.ready
        self._fire_due_timers()
        self._timer_wake.set()

    async def timer_hint(self, fire_at: float) -> None:
        """A host created a timer (or the clock moved): re-check when the next is due."""
        self._timer_wake.set()

    async def _outbox_sweep(self) -> None:
        """A safety net: rows whose writer died before nudging the flush still leave."""
        await self.ready
        while True:
            await asyncio.sleep(OUTBOX_SWEEP_SECONDS)
            try:
                await self.flush_outbox()
            except Exception:
                logs.event(log, logging.ERROR, "outbox sweep", hub=self.config.hub, exc_info=True)

    async def _timer_service(self) -> None:
        await self.ready
        while True:
            try:
                self._fire_due_timers()
                pending, nxt = self.store.timer_stats()
                metrics.set_gauge("pending_timers", self._tags, pending)
                wait = 60.0 if nxt is None else max(0.0, min(60.0, nxt - self.clock()))
            except Exception:
                log.exception("hub %s: timer service", self.config.hub)
                wait = 1.0
            self._timer_wake.clear()
            try:
                await asyncio.wait_for(self._timer_wake.wait(), wait)
            except asyncio.TimeoutError:
                pass

    def _fire_due_timers(self) -> None:
        due = self.store.due_timers(self.clock())
        if not due:
            return
        messages, targets = [], []
        for timer in due:
            record = self.store.load_instance(timer.instance_id)
            # A timer of an execution that is gone (continue-as-new, purge, end) just drops.
            live = (
                record is not None
                and record.execution_id == timer.execution_id
                and not OrchestrationStatus(record.status).is_terminal
            )
            fire_at = datetime.fromtimestamp(timer.fire_at, tz=timezone.utc)
            messages.append(encode_event(h.TimerFired(timer.seq, fire_at)) if live else None)
            if live and record is not None and record.host:
                targets.append((record.host, timer.instance_id, messages[-1]))
        self.store.fire_timers(due, messages)
        for host, iid in {(host, iid) for host, iid, _ in targets}:
            self._host(host).poke.remote(iid)


SUSPENDED = str(OrchestrationStatus.SUSPENDED)
RUNNING = str(OrchestrationStatus.RUNNING)
#: Statuses that end an instance: it takes no more messages.
ENDED = tuple(str(s) for s in OrchestrationStatus if s.is_terminal)
#: Statuses of an instance that takes messages (ContinuedAsNew is never stored: the next
#: execution is Running at once; it is listed so that no status is left without an answer).
LIVE = tuple(str(s) for s in OrchestrationStatus if not s.is_terminal)
SUSPENDABLE = tuple(s for s in LIVE if s != SUSPENDED)


def _ended(record: InstanceRecord, what: str) -> InvalidOperationError:
    """The refusal of an operation on an instance that has ended."""
    return InvalidOperationError(
        f"instance {record.instance_id!r} is {record.status}; {what} (it has ended: "
        "nothing was changed)"
    )


@ray.remote(num_cpus=0)
class Supervisor:
    """The Ray actor around SupervisorCore."""

    def __init__(self, config: dict[str, Any], clock: Callable[[], float] | None = None) -> None:
        logs.configure()
        # A constructor that raises reaches the driver as an untyped ActorDiedError; the
        # refusal is kept and raised by ready and hub_config (Runtime.start kills us then).
        self.refused: HubLeaseHeldError | None = None
        try:
            self.core = SupervisorCore(HubConfig(**config), clock)
        except HubLeaseHeldError as exc:
            self.refused = exc

    async def ready(self) -> None:
        """Returns once recovery from the store is done."""
        if self.refused is not None:
            raise self.refused
        await self.core.ready

    async def register(self, items: list[tuple[str, str, str, bytes]]) -> None:
        """Store registered code."""
        await self.core.register(items)

    async def start_new(self, *args: Any) -> str:
        """Create and activate an instance."""
        return await self.core.start_new(*args)

    async def start_child(self, *args: Any) -> None:
        """Start a sub-orchestration for a host."""
        await self.core.start_child(*args)

    async def deliver(self, instance_id: str, event_blob: bytes) -> None:
        """Route a message to an instance."""
        await self.core.deliver(instance_id, event_blob)

    async def instance_done(self, *args: Any) -> None:
        """A host reports a terminal instance."""
        await self.core.instance_done(*args)

    async def get_status(self, instance_id: str, show_history: bool = False) -> Any:
        """An instance row (and history)."""
        return await self.core.get_status(instance_id, show_history)

    async def query(self, query: InstanceQuery) -> list[InstanceRecord]:
        """Instances matching a query."""
        return await self.core.query(query)

    async def wait(self, instance_id: str, timeout: float | None) -> InstanceRecord | None:
        """Wait for a terminal status."""
        return await self.core.wait(instance_id, timeout)

    async def terminate(self, instance_id: str, reason: str, recursive: bool = True) -> None:
        """Terminate an instance."""
        await self.core.terminate(instance_id, reason, recursive)

    async def suspend(self, instance_id: str, reason: str) -> None:
        """Suspend an instance."""
        await self.core.suspend(instance_id, reason)

    async def resume(self, instance_id: str, reason: str) -> None:
        """Resume an instance."""
        await self.core.resume(instance_id, reason)

    async def purge(self, instance_id: str) -> int:
        """Purge one instance."""
        return await self.core.purge(instance_id)

    async def purge_by(self, query: InstanceQuery) -> int:
        """Purge instances matching a query."""
        return await self.core.purge_by(query)

    async def restart(self, instance_id: str, new_instance_id: str | None) -> str:
        """Restart an instance."""
        return await self.core.restart(instance_id, new_instance_id)

    async def fire_timers(self) -> None:
        """Fire due timers now."""
        await self.core.fire_timers()

    async def retire_idle_host(self, name: str) -> None:
        """A dedicated entity's host has nothing in memory."""
        await self.core.retire_idle_host(name)

    async def host_of(self, instance_id: str) -> Any:
        """The host handle of an instance."""
        return await self.core.host_of(instance_id)

    async def hub_config(self) -> dict[str, Any]:
        """This hub's settings."""
        if self.refused is not None:
            raise self.refused
        return await self.core.hub_config()

    async def timer_hint(self, fire_at: float) -> None:
        """Wake the timer service."""
        await self.core.timer_hint(fire_at)

    async def entity_route(self, name: str) -> tuple[str, list[str]]:
        """How an entity type is placed."""
        return await self.core.entity_route(name)

    async def entity_operations(self, name: str) -> tuple[str, ...] | None:
        """The operations of an entity type (None: a function entity)."""
        return await self.core.entity_operations(name)

    async def entity_host(self, eid: str, name: str) -> Any:
        """The host handle of an entity."""
        return await self.core.entity_host(eid, name)

    async def flush_outbox(self) -> None:
        """Deliver committed outbox messages."""
        await self.core.flush_outbox()

    async def read_entity(self, eid: str) -> Any:
        """An entity's committed state."""
        return await self.core.read_entity(eid)

    async def list_entities(self, name: str | None, limit: int, offset: int) -> list[Any]:
        """Stored entities."""
        return await self.core.list_entities(name, limit, offset)

    async def clean_entities(self) -> int:
        """Remove entities without state."""
        return await self.core.clean_entities()

    async def shutdown(self) -> None:
        """Stop the hub's hosts."""
        await self.core.shutdown()

    async def pid(self) -> int:
        """The supervisor's process id (failure tests kill it)."""
        return os.getpid()
