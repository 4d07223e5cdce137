"""The runtime's one seam to Ray.

Every Ray call of the supervisor, the hosts, the client and ``Runtime`` goes through this
module: typed handles for the supervisor and host actors (methods, not strings), the
options of the detached actors written once, Ray's error classes and their unwrapping, and
one retry helper with named limits. The supervisor's parts and the hosts take an
``ActorSystem``; unit tests give them a fake one (Ray Serve's ``ActorReplicaWrapper`` and
the mock its tests use are the model).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import ray
from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    ActorUnschedulableError,
    GetTimeoutError,
    RayActorError,
    RayTaskError,
)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..errors import DurableError, HubConfigError

T = TypeVar("T")

#: The Ray namespace of every hub's actors, so drivers in any namespace find them.
NAMESPACE = "ray-durable"

#: A call to an actor that is restarting or gone (or pinned to a lost node): the same call
#: may be sent again, to the actor that takes its name.
ACTOR_LOST: tuple[type[Exception], ...] = (
    RayActorError,
    ActorUnavailableError,
    ActorUnschedulableError,
)

#: A user's code (or ours) raised inside an actor; ``root_cause`` says what.
TaskError = RayTaskError

#: ``get`` with a timeout ran out.
GetTimeout = GetTimeoutError

#: Options of every actor a hub keeps: detached (a driver's exit or a supervisor crash must
#: not take it down; Ray restarts no actor whose owner is dead), restarted forever by Ray,
#: never retrying a call by itself (callers re-send with ids the receiver recognises), and
#: async with room for every waiting caller.
DETACHED_OPTIONS: dict[str, Any] = {
    "namespace": NAMESPACE,
    "lifetime": "detached",
    "get_if_exists": True,
    "max_restarts": -1,
    "max_task_retries": 0,
    "max_concurrency": 100_000,
}


#: Options of a dedicated orchestration host: those of DETACHED_OPTIONS but owned by its
#: node's Keeper instead of detached (see Keeper).
KEPT_OPTIONS: dict[str, Any] = {k: v for k, v in DETACHED_OPTIONS.items() if k != "lifetime"}


def supervisor_name(hub: str) -> str:
    """The Ray actor name of a hub's supervisor."""
    return f"durable-supervisor/{hub}"


# -- Ray's errors ----------------------------------------------------------------------------


def actor_lost(exc: BaseException) -> bool:
    """The actor is restarting or gone: a re-send may reach its next incarnation."""
    return isinstance(exc, ACTOR_LOST)


def gone_for_good(exc: BaseException) -> bool:
    """The actor will not restart (killed, or out of restarts): a new one must take its name."""
    return isinstance(exc, ActorDiedError)


class HostNotCreated(Exception):
    """A keeper did not create a host (it died or restarted meanwhile): create it anew."""


def must_replace(exc: BaseException) -> bool:
    """The actor will not come back by itself: killed, out of restarts, pinned to a node
    that is gone (Ray restarts a pinned actor on its node only), or never created."""
    return gone_for_good(exc) or isinstance(exc, (ActorUnschedulableError, HostNotCreated))


def root_cause(exc: BaseException) -> BaseException:
    """What a Ray task error carries, through the actors that awaited one another."""
    while isinstance(exc, RayTaskError):
        exc = exc.cause
    return exc


def first_line(exc: BaseException) -> str:
    """An error's type and the first line of its message (Ray's run to many lines)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def durable_cause(exc: BaseException) -> DurableError | None:
    """The DurableError a Ray error carries, if it carries one."""
    cause = root_cause(exc)
    return cause if isinstance(cause, DurableError) else None


def typed(exc: BaseException) -> BaseException:
    """The DurableError a Ray error carries, else the error itself."""
    return durable_cause(exc) or exc


# -- retries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patience:
    """How long a caller keeps re-sending to an actor that is restarting, and how often."""

    seconds: float | None  # None: until it answers
    pause: float  # the first pause; each next one grows by as much
    max_pause: float
    #: A dead-for-good actor is replaced under its name at once: no need to wait for it.
    skip_pause_when_gone: bool = False

    def wait(self, attempt: int, exc: BaseException) -> float:
        """The pause before attempt ``attempt + 1``."""
        if self.skip_pause_when_gone and gone_for_good(exc):
            return 0.0
        return min(self.pause * attempt, self.max_pause)

    def expired(self, started: float) -> bool:
        """True once the caller has waited as long as it will."""
        return self.seconds is not None and time.monotonic() - started > self.seconds

    def within(self, seconds: float) -> Patience:
        """The same pacing, ending after ``seconds``."""
        return Patience(seconds, self.pause, self.max_pause, self.skip_pause_when_gone)


#: A driver waiting for its hub's supervisor to restart (``runtime.driver.client`` sets the time).
SUPERVISOR_RESTART = Patience(60.0, 0.2, 0.2)
#: A driver re-sending an entity operation to a restarting host (same sequence number).
ENTITY_HOST_RESTART = Patience(60.0, 0.1, 0.1, skip_pause_when_gone=True)
#: A host re-sending an orchestration's entity message: long, the orchestration waits.
ENTITY_FROM_HOST = Patience(600.0, 0.05, 1.0)
#: The supervisor activating instances on a host: until some incarnation takes them.
HOST_ACTIVATION = Patience(None, 0.05, 1.0)


class _Attempts:
    """The bookkeeping of ``retry`` and ``aretry``: one failed attempt at a time."""

    def __init__(
        self,
        patience: Patience,
        give_up: Callable[[BaseException], BaseException],
        on_lost: Callable[[BaseException], None] | None,
    ) -> None:
        self.patience, self.give_up, self.on_lost = patience, give_up, on_lost
        self.started, self.count = time.monotonic(), 0

    def pause_after(self, exc: BaseException) -> float:
        """How long to wait before the next attempt; raises ``give_up(exc)`` when out of time."""
        self.count += 1
        if self.patience.expired(self.started):
            raise self.give_up(exc) from exc
        if self.on_lost is not None:
            self.on_lost(exc)
        return self.patience.wait(self.count, exc)


def retry(
    call: Callable[[], T],
    patience: Patience,
    give_up: Callable[[BaseException], BaseException],
    on_lost: Callable[[BaseException], None] | None = None,
) -> T:
    """``call()``, sent again while its actor is lost, until ``patience`` runs out."""
    attempts = _Attempts(patience, give_up, on_lost)
    while True:
        try:
            return call()
        except ACTOR_LOST as exc:
            time.sleep(attempts.pause_after(exc))


async def aretry(
    call: Callable[[], Awaitable[T]],
    patience: Patience,
    give_up: Callable[[BaseException], BaseException],
    on_lost: Callable[[BaseException], None] | None = None,
) -> T:
    """``retry`` for code on an event loop."""
    attempts = _Attempts(patience, give_up, on_lost)
    while True:
        try:
            return await call()
        except ACTOR_LOST as exc:
            await asyncio.sleep(attempts.pause_after(exc))


# -- typed handles ----------------------------------------------------------------------------


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # a poke nobody awaits: its failure is the watcher's to report


class HostHandle:
    """Calls to one host actor; each returns a Ray ObjectRef (await it, or ``get`` it).

    A host that a Keeper is still creating (``creating``: the ref of its handle) answers
    with asyncio tasks instead, each sent once the handle has come; on the event loop of
    the supervisor, the only place that creates hosts.
    """

    def __init__(self, actor: Any, creating: Any = None, keeper: Any = None) -> None:
        self.actor = actor
        self._creating = creating
        #: The Keeper that owns the host (None: a detached host).
        self.keeper = keeper

    async def created(self) -> HostHandle:
        """This handle, once its actor exists (HostNotCreated if its keeper failed)."""
        if self.actor is None:
            try:
                self.actor = (await self._creating)[0]
            except (RayActorError, RayTaskError) as exc:
                raise HostNotCreated(str(exc)) from exc
        return self

    def _call(self, method: str, *args: Any) -> Any:
        if self.actor is not None:
            return getattr(self.actor, method).remote(*args)
        call = asyncio.ensure_future(self._call_created(method, args))
        call.add_done_callback(_retrieved)
        return call

    async def _call_created(self, method: str, args: tuple[Any, ...]) -> Any:
        await self.created()
        return await getattr(self.actor, method).remote(*args)

    def activate(self, instance_ids: list[str]) -> Any:
        """Make sure each instance is live on the host."""
        return self._call("activate", instance_ids)

    def poke(self, instance_id: str) -> Any:
        """The instance has new inbox messages."""
        return self._call("poke", instance_id)

    def entity_op(
        self, eid: str, operation: str, input_blob: bytes, sender: str, seq: int, ordered: bool
    ) -> Any:
        """Run one entity operation (its encoded outcome)."""
        return self._call("entity_op", eid, operation, input_blob, sender, seq, ordered)

    def entity_ops(self, sender: str, ops: list[tuple[str, str, bytes, int]]) -> Any:
        """Run one sender's pipelined operations, in order."""
        return self._call("entity_ops", sender, ops)

    def watch(self) -> Any:
        """Never resolves while the host lives: fails when it dies."""
        return self._call("watch")

    def activities_in_flight(self) -> Any:
        """Activities the host's instances submitted and await (or hold for a slot)."""
        return self._call("activities_in_flight")


class SupervisorHandle:
    """Calls to a hub's supervisor actor; each returns a Ray ObjectRef (awaitable)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def ready(self) -> Any:
        """Resolves once recovery from the store is done."""
        return self.actor.ready.remote()

    def hub_config(self) -> Any:
        """The hub's settings as a dict."""
        return self.actor.hub_config.remote()

    def register(self, items: list[tuple[str, str, str, bytes]]) -> Any:
        """Store registered code (kind, name, version, blob)."""
        return self.actor.register.remote(items)

    def start_new(
        self,
        name: str,
        version: str | None,
        input_blob: bytes,
        start_blob: bytes,
        instance_id: str,
        start_id: str | None = None,
    ) -> Any:
        """Create an instance and activate it (its id); a repeat of ``start_id`` is a no-op."""
        return self.actor.start_new.remote(
            name, version, input_blob, start_blob, instance_id, start_id
        )

    def start_child(
        self,
        parent_id: str,
        seq: int,
        name: str,
        version: str,
        child_id: str,
        input_blob: bytes,
        start: bytes,
        start_id: str,
    ) -> Any:
        """Start a sub-orchestration (idempotent: ``start_id`` names this very start)."""
        return self.actor.start_child.remote(
            parent_id, seq, name, version, child_id, input_blob, start, start_id
        )

    def deliver(self, instance_id: str, event_blob: bytes, message_id: str | None = None) -> Any:
        """Durably accept an external event for a live instance (once per ``message_id``)."""
        return self.actor.deliver.remote(instance_id, event_blob, message_id)

    def start_many(self, starts: list[tuple[str, str | None, bytes, bytes, str, str]]) -> Any:
        """``start_new`` each start tuple: a list of instance ids and refusals (DurableError)."""
        return self.actor.start_many.remote(starts)

    def deliver_many(self, events: list[tuple[str, bytes, str]]) -> Any:
        """Deliver events in order: a list of each one's refusal (a DurableError) or None."""
        return self.actor.deliver_many.remote(events)

    def instance_done(
        self,
        instance_id: str,
        status: str,
        parent_id: str | None,
        host: str | None = None,
        reusable: bool = False,
    ) -> Any:
        """A host reports a terminal instance (and whether it may serve another)."""
        return self.actor.instance_done.remote(instance_id, status, parent_id, host, reusable)

    def get_status(self, instance_id: str, show_history: bool) -> Any:
        """(record, history blobs or None)."""
        return self.actor.get_status.remote(instance_id, show_history)

    def query(self, query: Any) -> Any:
        """Records matching an InstanceQuery."""
        return self.actor.query.remote(query)

    def wait(self, instance_id: str, timeout: float | None) -> Any:
        """The record once terminal, or None after ``timeout``."""
        return self.actor.wait.remote(instance_id, timeout)

    def terminate(self, instance_id: str, reason: str, recursive: bool) -> Any:
        """Terminate a live instance."""
        return self.actor.terminate.remote(instance_id, reason, recursive)

    def suspend(self, instance_id: str, reason: str) -> Any:
        """Suspend a live instance."""
        return self.actor.suspend.remote(instance_id, reason)

    def resume(self, instance_id: str, reason: str) -> Any:
        """Resume a Suspended instance."""
        return self.actor.resume.remote(instance_id, reason)

    def purge(self, instance_id: str) -> Any:
        """Purge an ended instance (how many were deleted)."""
        return self.actor.purge.remote(instance_id)

    def purge_by(self, query: Any) -> Any:
        """Purge the ended instances matching a query (how many)."""
        return self.actor.purge_by.remote(query)

    def restart(self, instance_id: str, new_instance_id: str | None) -> Any:
        """Run an instance's orchestrator again (the id it runs under)."""
        return self.actor.restart.remote(instance_id, new_instance_id)

    def fire_timers(self) -> Any:
        """Fire every timer due now."""
        return self.actor.fire_timers.remote()

    def timer_hint(self, fire_at: float) -> Any:
        """A timer was created: re-check when the next is due."""
        return self.actor.timer_hint.remote(fire_at)

    def retire_idle_host(self, name: str) -> Any:
        """A dedicated entity's host has nothing in memory."""
        return self.actor.retire_idle_host.remote(name)

    def host_of(self, instance_id: str) -> Any:
        """The raw actor handle of an instance's host, or None."""
        return self.actor.host_of.remote(instance_id)

    def entity_route(self, name: str) -> Any:
        """("pooled", host names) or ("dedicated", [hub]) for an entity type."""
        return self.actor.entity_route.remote(name)

    def entity_operations(self, name: str) -> Any:
        """An entity type's operations (None: a function entity)."""
        return self.actor.entity_operations.remote(name)

    def entity_host(self, eid: str, name: str) -> Any:
        """The HostHandle of an entity, created with its type's resources."""
        return self.actor.entity_host.remote(eid, name)

    def flush_outbox(self) -> Any:
        """Deliver committed outbox messages."""
        return self.actor.flush_outbox.remote()

    def read_entity(self, eid: str) -> Any:
        """(state blob, exists) of an entity, or None."""
        return self.actor.read_entity.remote(eid)

    def entity_record(self, eid: str) -> Any:
        """(state blob, exists, lock owner) of an entity, or None."""
        return self.actor.entity_record.remote(eid)

    def overview(self, window: float, ask_hosts: bool = True) -> Any:
        """The hub's HubOverview, per-minute rates over the last ``window`` seconds; with
        ``ask_hosts``, each host's activities in flight."""
        return self.actor.overview.remote(window, ask_hosts)

    def list_entities(self, name: str | None, limit: int, offset: int) -> Any:
        """A page of stored entities."""
        return self.actor.list_entities.remote(name, limit, offset)

    def last_sequence(self, eid: str, sender: str) -> Any:
        """The last number the entity recorded from ``sender`` (0: none)."""
        return self.actor.last_sequence.remote(eid, sender)

    def quarantined(self) -> Any:
        """Quarantined work, oldest first."""
        return self.actor.quarantined.remote()

    def release_quarantined(self, item_id: str, retry: bool) -> Any:
        """Retry (True) or discard (False) one quarantined item; the item."""
        return self.actor.release_quarantined.remote(item_id, retry)

    def clean_entities(self) -> Any:
        """Remove entities without state (how many)."""
        return self.actor.clean_entities.remote()

    def shutdown(self) -> Any:
        """Stop the hub's hosts."""
        return self.actor.shutdown.remote()

    def pid(self) -> Any:
        """The supervisor's process id."""
        return self.actor.pid.remote()


# -- finding, creating and killing actors ------------------------------------------------------


def get(ref: Any, timeout: float | None = None) -> Any:
    """Block for a Ray ObjectRef's value."""
    return ray.get(ref, timeout=timeout)


def find_actor(name: str) -> Any | None:
    """The raw handle of a live named actor of the hubs' namespace, or None."""
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def find_supervisor(hub: str) -> SupervisorHandle | None:
    """The hub's supervisor, if one runs on this Ray cluster."""
    actor = find_actor(supervisor_name(hub))
    return None if actor is None else SupervisorHandle(actor)


def create_supervisor(
    actor_class: Any, hub: str, *args: Any, pin_here: bool = False
) -> SupervisorHandle:
    """The hub's detached supervisor: created, or the one already running under its name.

    ``pin_here``: it lives on this process's node and nowhere else, restarts included (a
    SQLite store is a file on this node's disk).
    """
    options = {**DETACHED_OPTIONS, **(pinned(this_node()) if pin_here else {})}
    actor = actor_class.options(name=supervisor_name(hub), **options).remote(*args)
    return SupervisorHandle(actor)


def kill(actor: Any) -> None:
    """Stop an actor for good (Ray does not restart it)."""
    ray.kill(actor, no_restart=True)


def kill_named(name: str) -> None:
    """Stop a named actor for good if it runs."""
    actor = find_actor(name)
    if actor is not None:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:
            pass  # gone meanwhile


def current_actor_name() -> str | None:
    """The name of the actor this code runs in (None outside Ray or in an unnamed actor)."""
    return ray.get_runtime_context().get_actor_name() if ray.is_initialized() else None


class RemoteFunction:
    """A function run as a Ray task; calling it submits one (its ObjectRef, awaitable)."""

    def __init__(self, function: Callable[..., Any], options: dict[str, Any]) -> None:
        self._remote = ray.remote(function).options(**options)

    def __call__(self, *args: Any) -> Any:
        """Submit one task."""
        return self._remote.remote(*args)

    def submit(self, on_done: Callable[[Any], None], *args: Any) -> Any:
        """Submit one task (returns its ObjectRef); ``on_done`` gets its result, or the
        exception it ended with, on the calling thread's event loop.

        Cheaper than awaiting the ObjectRef, which costs a concurrent and an asyncio future,
        their chaining and an asyncio task per call (about 3.5 KB in a host with many
        activities in flight): here only the ref and one callback live until the result.
        """
        loop = asyncio.get_event_loop()
        ref = self._remote.remote(*args)

        def done(result: Any, ref: Any = ref) -> None:  # holds the ref until its result
            if isinstance(result, RayTaskError):
                result = result.as_instanceof_cause()  # what awaiting the ref would raise
            try:
                loop.call_soon_threadsafe(on_done, result)
            except RuntimeError:
                pass  # the loop is closed: the host is stopping, its activities re-dispatch

        ref._on_completed(done)
        return ref


def stop_this_actor(loop: asyncio.AbstractEventLoop) -> None:
    """Kill the calling actor for good, from any thread: Ray must not restart a fenced one."""
    try:
        handle = ray.get_runtime_context().current_actor
    except RuntimeError:
        return  # not in an actor (a unit test): nothing to stop
    loop.call_soon_threadsafe(functools.partial(ray.kill, handle, no_restart=True))


def cluster_identity() -> tuple[str, str, str]:
    """(GCS address, cluster id, actor id) of this process, as a lease holder names it."""
    context = ray.get_runtime_context()
    address = context.gcs_address
    try:
        worker: Any = ray._private.worker.global_worker
        cluster = worker.gcs_client.cluster_id.hex()
    except AttributeError:  # private API: the GCS address is unique among live clusters
        cluster = address
    return address, cluster, context.get_actor_id() or ""


def this_node() -> str:
    """The Ray node id (hex) of the node this process runs on."""
    return str(ray.get_runtime_context().get_node_id())


def pinned(node: str) -> dict[str, Any]:
    """Actor options that keep it on ``node``: Ray restarts it there only, never elsewhere."""
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=False)}


def alive_nodes() -> list[str]:
    """The ids of the cluster's live nodes, in a stable order."""
    return sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])


def _needs(options: dict[str, Any]) -> dict[str, float]:
    """The Ray resources that actor options ask for, by Ray's resource names."""
    needs = {str(k): float(v) for k, v in (options.get("resources") or {}).items()}
    for option, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("memory", "memory")):
        if options.get(option):
            needs[resource] = float(options[option])
    return needs


def check_fits(pin_node: str, options: dict[str, Any], what: str) -> None:
    """Raise HubConfigError if the pinned node lacks what ``options`` ask for."""
    needs = _needs(options)
    if not needs:
        return
    has: dict[str, float] = next(
        (n["Resources"] for n in ray.nodes() if n["NodeID"] == pin_node), {}
    )
    lacking = {k: v for k, v in needs.items() if has.get(k, 0.0) < v}
    if lacking:
        raise HubConfigError(
            f"{what} asks for {lacking}, which node {pin_node[:12]} (the node of the hub's "
            f"SQLite file, where every host is pinned) does not have; a PostgreSQL store lets "
            f"hosts live on any node"
        )


def task(function: Callable[..., Any], options: dict[str, Any]) -> RemoteFunction:
    """``function`` as a Ray task with the given options (``num_cpus``, ``resources``...)."""
    return RemoteFunction(function, options)


def actor_class(cls: type[T]) -> Any:
    """A hub actor class (a host, a supervisor): it holds no CPU slot while it waits."""
    return ray.remote(num_cpus=0)(cls)


def keeper_name(hub: str, node: str) -> str:
    """The Ray actor name of a hub's keeper on a node."""
    return f"durable-keeper/{hub}/{node}"


@actor_class
class Keeper:
    """Creates the dedicated orchestration hosts of one node, and owns them.

    Ray hands a worker process only to tasks under the same root detached actor, so when
    each dedicated host was detached, each one's first activity waited for a new worker
    process (0.5-0.8 s on 2 cores). The hosts a keeper creates are not detached: the keeper
    is their root, and their activities share its idle workers (a 4-step chain on a new
    host: about 18 ms instead of 800-1,200). The price: they die with their keeper, which
    runs nothing else (no user code, no store), and the supervisor creates them again from
    the store, as after any host's loss. A supervisor crash does not touch them.
    """

    def __init__(self, host_class: Any) -> None:
        # Given once: a class in each call would be unpickled anew, and Ray would pickle and
        # export it again for every host (a tenth of a second each).
        self.host_class = host_class
        #: A handle of each host: Ray collects a non-detached actor once no handle is left,
        #: and the supervisor's copies go with a supervisor crash.
        self.hosts: dict[str, Any] = {}

    def host(self, name: str, options: dict[str, Any], args: tuple[Any, ...]) -> list[Any]:
        """The host of that name, created or found (in a list: Ray passes the handle on)."""
        handle = self.hosts.get(name)
        if handle is None:
            handle = self.host_class.options(name=name, **options).remote(*args)
            self.hosts[name] = handle
        # Else the handle it was created with: one found by name is a weak reference, and
        # holding only that, Ray collected the host under its running instance.
        return [handle]

    def forget(self, name: str) -> None:
        """The host was stopped for good: drop its handle."""
        self.hosts.pop(name, None)

    def names(self) -> list[str]:
        """The hosts this keeper holds (a new supervisor retires those no instance uses)."""
        return list(self.hosts)

    def pid(self) -> int:
        """The keeper's process id (failure tests kill it)."""
        return os.getpid()


class ActorSystem:
    """What the supervisor's parts and the hosts ask of Ray; tests pass a fake."""

    def __init__(self, hub: str, pin_node: str | None = None) -> None:
        self.hub = hub
        #: The node every host must live on (a SQLite store's), or None: spread.
        self.pin_node = pin_node
        self._turn = -1
        self._keepers: dict[str, Any] = {}

    def host(
        self,
        host_class: Any,
        name: str,
        resources: dict[str, Any] | None,
        *args: Any,
        kept: bool = False,
    ) -> HostHandle:
        """The host actor of that name: created (with ``resources``) or found.

        ``kept``: a dedicated orchestration host, created by its node's Keeper (the handle
        comes when the keeper has answered); else a detached actor of its own.
        """
        needs = resources or {}
        node = self._node_for(name, needs)
        if kept and node is not None:
            options = {**KEPT_OPTIONS, **pinned(node)}
            keeper = self._keeper(node, host_class)
            return HostHandle(None, keeper.host.remote(name, options, args), keeper)
        where = {} if node is None else pinned(node)
        options = {**needs, **DETACHED_OPTIONS, **where}
        return HostHandle(host_class.options(name=name, **options).remote(*args))

    def _node_for(self, name: str, resources: dict[str, Any]) -> str | None:
        """Pinned to the store's node, or to the next live node in turn (None: Ray's choice).

        Ray's "SPREAD" strategy, and soft node affinity, left zero-CPU hosts on one node of
        a three-node test cluster whose CPUs were busy. Hard affinity spreads them for
        certain; a host whose node is lost cannot restart (``must_replace``), and the
        supervisor creates it again on a live node.
        """
        if self.pin_node is not None:
            check_fits(self.pin_node, resources, f"host {name!r}")
            return self.pin_node
        if _needs(resources):
            return None  # the nodes that have what it asks for: Ray's choice, restarts included
        nodes = alive_nodes()
        self._turn += 1
        return nodes[self._turn % len(nodes)]

    def _keeper(self, node: str, host_class: Any) -> Any:
        keeper = self._keepers.get(node)
        if keeper is None:
            options = {**DETACHED_OPTIONS, "max_concurrency": 1, **pinned(node)}
            keeper_class: Any = Keeper  # a Ray actor class (the decorator hides it from mypy)
            name = keeper_name(self.hub, node)
            keeper = keeper_class.options(name=name, **options).remote(host_class)
            self._keepers[node] = keeper
        return keeper

    async def kept_hosts(self) -> list[str]:
        """The dedicated hosts the hub's keepers hold, on every live node."""
        names: list[str] = []
        for keeper in self._live_keepers():
            try:
                names += await keeper.names.remote()
            except RayActorError:
                pass  # a keeper that died took its hosts with it
        return names

    def _live_keepers(self) -> list[Any]:
        """The hub's keepers on every live node, found by name (a new supervisor knows none)."""
        keepers = [find_actor(keeper_name(self.hub, node)) for node in alive_nodes()]
        return [k for k in keepers if k is not None]

    def stop_keepers(self) -> None:
        """Stop the hub's keepers on every live node (with them, the hosts they own)."""
        self._keepers.clear()
        for node in alive_nodes():
            kill_named(keeper_name(self.hub, node))

    def kill(self, name: str, handle: HostHandle | None = None) -> None:
        """Stop a host for good (a no-op if it is gone)."""
        if handle is None:
            kill_named(name)
            # Perhaps a kept host an earlier supervisor made: its keeper would list it forever.
            self._forget(name, self._live_keepers())
            return
        self._forget(name, [] if handle.keeper is None else [handle.keeper])
        if handle.actor is None:  # its keeper has not answered yet: kill what it creates
            asyncio.ensure_future(self._kill_once_created(handle)).add_done_callback(_retrieved)
            return
        try:
            kill(handle.actor)
        except Exception:
            pass  # already gone

    @staticmethod
    def _forget(name: str, keepers: list[Any]) -> None:
        """Tell ``keepers`` to drop their handle of a stopped host."""
        for keeper in keepers:
            try:
                keeper.forget.remote(name)
            except Exception:
                pass  # the keeper is gone, and its hosts with it

    async def _kill_once_created(self, handle: HostHandle) -> None:
        try:
            await handle.created()
        except HostNotCreated:
            self._keepers.clear()  # its keeper failed: find each by name again
            return
        try:
            kill(handle.actor)
        except Exception:
            pass  # already gone

    def task(self, function: Callable[..., Any], options: dict[str, Any]) -> RemoteFunction:
        """``function`` as a Ray task (an activity)."""
        return task(function, options)

    def supervisor(self) -> SupervisorHandle:
        """The hub's supervisor (raises ValueError while none is registered)."""
        found = find_supervisor(self.hub)
        if found is None:
            raise ValueError(f"no supervisor for hub {self.hub!r}")
        return found
