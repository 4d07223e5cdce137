"""DurableClient: what a Python driver calls to start, query and steer instances."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Concatenate, NoReturn, ParamSpec

from .. import tracing
from ..actors.ray_seam import (
    ACTOR_LOST,
    ENTITY_HOST_RESTART,
    SUPERVISOR_RESTART,
    GetTimeout,
    SupervisorHandle,
    TaskError,
    actor_lost,
    find_supervisor,
    first_line,
    get,
    retry,
    root_cause,
    typed,
)
from ..actors.routing import EntityRouter
from ..config import TracingConfig
from ..entity_id import EntityId
from ..errors import (
    ArgumentTypeError,
    DurableError,
    EntityUnavailableError,
    HubUnavailableError,
    InstanceExistsError,
    InternalError,
    InvalidArgumentError,
    OperationTimeoutError,
    OrchestrationFailedError,
    UnknownOperationError,
)
from ..messages import Outcome
from ..orchestration import history as h
from ..orchestration.codec import encode_event
from ..orchestration.status import OrchestrationStatus
from ..registry import as_registrable, encode_code
from ..serialization import dumps, loads
from ..states import (
    EntityMetadata,
    EntityOperationFailedError,
    EntityStateResponse,
    OrchestrationState,
    state_of,
)
from ..store import HubOverview, InstanceQuery, InstanceRecord, Quarantined

log = logging.getLogger("ray_durable.client")

P = ParamSpec("P")

#: How long a client keeps retrying while the supervisor restarts.
RECONNECT_SECONDS = 60.0

_resend_pool: ThreadPoolExecutor | None = None
_resend_lock = threading.Lock()


def _resender() -> ThreadPoolExecutor:
    global _resend_pool
    with _resend_lock:
        if _resend_pool is None:
            _resend_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-resend")
        return _resend_pool


@dataclass
class _Signal:
    """One pipelined signal on its way."""

    future: Future
    eid: EntityId
    operation: str
    blob: bytes
    seq: int
    deadline: float | None = None  # set by the first lost host: retries end then


class _SignalBatcher:
    """Groups pipelined signals per host, so one Ray call carries many of them.

    A Ray actor call costs far more than applying a small operation, so signals sent with
    ``wait=False`` wait up to ``LINGER_SECONDS`` (or until ``MAX_BATCH`` gather) and leave
    together. Order holds: a batch keeps the sender's order, and hosts apply a sender's
    operations by sequence number whatever order batches arrive in.
    """

    MAX_BATCH = 256
    LINGER_SECONDS = 0.002

    def __init__(self, client: DurableClient) -> None:
        self._client = client
        self._cond = threading.Condition()
        self._pending: dict[int, tuple[Any, list[_Signal]]] = {}
        self._thread: threading.Thread | None = None

    def add(self, signal: _Signal) -> None:
        """Queue one signal for its entity's host."""
        handle = self._client._router.handle(signal.eid, self._client._get)
        full = None
        with self._cond:
            _, items = self._pending.setdefault(id(handle), (handle, []))
            items.append(signal)
            if len(items) >= self.MAX_BATCH:
                full = self._pending.pop(id(handle))
            elif self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="durable-signals", daemon=True
                )
                self._thread.start()
        if full is not None:
            self._send(*full)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(self.LINGER_SECONDS)
                batches, self._pending = list(self._pending.values()), {}
            for handle, items in batches:
                self._send(handle, items)

    def _send(self, handle: Any, items: list[_Signal]) -> None:
        ops = [(str(s.eid), s.operation, s.blob, s.seq) for s in items]
        try:
            ref = handle.entity_ops(self._client._sender, ops)
        except Exception as exc:
            self._failed(items, exc)
            return

        def done(sent: Future) -> None:
            exc = sent.exception()
            if exc is not None:
                self._failed(items, exc)
                return
            for signal, blob in zip(items, sent.result()):
                try:
                    self._client._signal_outcome(Outcome.decode(blob))
                    signal.future.set_result(None)
                except Exception as error:
                    signal.future.set_exception(error)

        ref.future().add_done_callback(done)

    def _failed(self, items: list[_Signal], exc: BaseException) -> None:
        if not actor_lost(exc):
            for signal in items:
                signal.future.set_exception(typed(exc))
            return
        # Ray runs callbacks on its own thread: the wait and the resend happen elsewhere.
        _resender().submit(self._again, items, exc)

    def _again(self, items: list[_Signal], exc: BaseException) -> None:
        """After a lost host, send again with the same numbers: each is applied once."""
        time.sleep(ENTITY_HOST_RESTART.wait(1, exc))  # a dead-for-good host is replaced at once
        now = time.monotonic()
        for signal in items:
            self._client._router.forget(signal.eid)
            signal.deadline = signal.deadline or now + RECONNECT_SECONDS
            if now > signal.deadline:
                error = EntityUnavailableError(str(signal.eid), RECONNECT_SECONDS, first_line(exc))
                signal.future.set_exception(error)
            else:
                try:
                    self.add(signal)
                except Exception as error:
                    signal.future.set_exception(typed(error))


class _Pipeline:
    """Carries one kind of call to the supervisor, many per Ray call: ``method`` takes a list
    and answers each item with its outcome, a value or the DurableError that refuses it.

    One batch is in flight at a time and the next, whatever was queued meanwhile, leaves
    when it returns (no timer: a lone call goes at once). Events keep the order they were
    raised in that way (an async actor may start two calls of one caller in either order),
    and a burst costs a few calls and transactions instead of one of each per item. Each
    item keeps its id (message id, start id) across the client's retries, so a resent
    batch is stored once; ``resent`` may reinterpret an outcome of a batch sent again.
    """

    MAX_BATCH = 512

    def __init__(
        self,
        client: DurableClient,
        method: Callable[[SupervisorHandle, list[Any]], Any],
        name: str,
        resent: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        self._client = client
        self._method = method
        self._name = name
        self._resent = resent
        self._cond = threading.Condition()
        self._pending: list[tuple[Future, Any]] = []
        self._thread: threading.Thread | None = None

    def add(self, item: Any) -> Future:
        """Queue one item; the future resolves with its outcome."""
        future: Future = Future()
        with self._cond:
            self._pending.append((future, item))
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        return future

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                batch = self._pending[: self.MAX_BATCH]
                del self._pending[: self.MAX_BATCH]
            # A future its caller cancelled is not sent (and setting it would kill this thread).
            batch = [
                (future, item) for future, item in batch if future.set_running_or_notify_cancel()
            ]
            if not batch:
                continue
            sends = 0

            def send(handle: SupervisorHandle, items: list[Any]) -> Any:
                nonlocal sends
                sends += 1
                return self._method(handle, items)

            send.__name__ = self._method.__name__  # named in an InternalError
            try:
                outcomes = self._client._call(send, [item for _, item in batch])
                if len(outcomes) != len(batch):  # a bug: fail these, keep the thread for the next
                    raise InternalError(
                        f"the supervisor of task hub {self._client.hub!r} ({send.__name__})",
                        "ValueError",
                        f"{len(outcomes)} outcomes for {len(batch)} items",
                    )
            except Exception as exc:
                outcomes = [typed(exc)] * len(batch)
            for (future, item), outcome in zip(batch, outcomes, strict=True):
                if sends > 1 and self._resent is not None:
                    outcome = self._resent(item, outcome)
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


def _resent_start(start: tuple[Any, ...], outcome: Any) -> Any:
    """A start sent again that finds its instance: our own earlier attempt landed before the
    supervisor restarted (it never runs twice)."""
    return start[4] if isinstance(outcome, InstanceExistsError) else outcome


def _timestamp(argument: str, value: datetime | None) -> float | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ArgumentTypeError.of(argument, "a timezone-aware datetime or None", value)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgumentError.of(
            argument, "a timezone-aware datetime (datetime.now(timezone.utc))", value
        )
    return value.timestamp()


def _statuses(values: Iterable[OrchestrationStatus | str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    if isinstance(values, (str, OrchestrationStatus)):
        values = [values]  # one status given alone
    known = ", ".join(s.value for s in OrchestrationStatus)
    try:
        return tuple(str(OrchestrationStatus(s)) for s in values)
    except (ValueError, TypeError):
        raise InvalidArgumentError.of("runtime_status", f"statuses among {known}", values) from None


def _name(value: Any, argument: str) -> str:
    # PostgreSQL's text cannot hold NUL: refused here on every store, before it is sent.
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidArgumentError.of(argument, "a non-empty string without NUL", value)
    return value


def _instance_id(value: Any, argument: str = "instance_id") -> str:
    return _name(value, argument)


#: The largest page size or offset: the stores bind them as 64-bit integers (one more row
#: than a page is read to tell whether another page follows).
MAX_COUNT = 2**63 - 2


def _count(argument: str, value: Any, low: int, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_COUNT:
        what = f"an integer from {low} to 2**63 - 2" + (" or None" if optional else "")
        raise InvalidArgumentError.of(argument, what, value)
    return value


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise InvalidArgumentError.of("timeout", "a number of seconds >= 0 or None", value)
    return float(value)


def _prefix(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or "\x00" in value):
        raise InvalidArgumentError.of("instance_id_prefix", "a string without NUL or None", value)
    return value or None


def _reason(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError.of("reason", "a string", value)
    return value


_UNKNOWN: Any = object()


class _HubCalls:
    """Calls to the hub's supervisor: typed, retried while it restarts, errors made typed."""

    hub: str
    _supervisor: SupervisorHandle

    def _call(
        self,
        method: Callable[Concatenate[SupervisorHandle, P], Any],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Any:
        """One call to the supervisor, sent again while it restarts (it is detached)."""
        return retry(lambda: self._call_once(method, *args, **kwargs), *self._hub_patience())

    def _call_once(
        self,
        method: Callable[Concatenate[SupervisorHandle, P], Any],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Any:
        try:
            return get(method(self._supervisor, *args, **kwargs))
        except TaskError as exc:
            self._refused(method.__name__, exc)

    def _refused(self, method: str, exc: BaseException) -> NoReturn:
        cause = root_cause(exc)
        if isinstance(cause, DurableError):
            raise cause from None
        # Every refusal the supervisor means is a DurableError: anything else is a bug.
        raise InternalError(
            f"the supervisor of task hub {self.hub!r} (method {method!r})",
            type(cause).__name__,
            str(cause),
            str(exc),
        ) from exc

    def _hub_patience(self) -> tuple[Any, Callable[[BaseException], BaseException], Any]:
        """How the client waits for a restarting supervisor: its patience, then its error."""
        return (
            SUPERVISOR_RESTART.within(RECONNECT_SECONDS),
            lambda exc: HubUnavailableError(self.hub, RECONNECT_SECONDS, first_line(exc)),
            lambda exc: self._reconnect(),
        )

    def _reconnect(self) -> None:
        found = find_supervisor(self.hub)
        if found is not None:
            self._supervisor = found

    async def _read_async(self, method: Callable[..., Any], *args: Any) -> Any:
        return await self._await(method, args, lambda: self._call(method, *args))

    async def _await(
        self, method: Callable[..., Any], args: tuple[Any, ...], blocking: Callable[[], Any]
    ) -> Any:
        try:
            return await method(self._supervisor, *args)
        except TaskError as exc:
            self._refused(method.__name__, exc)
        except ACTOR_LOST:
            # The supervisor restarts: wait for it off the loop, as the blocking call does.
            return await asyncio.get_running_loop().run_in_executor(None, blocking)


class _EntityOperations(_HubCalls):
    """The entity half of DurableClient: signals, calls and reads of durable entities."""

    _router: EntityRouter
    _sender: str
    #: True for a named sender (``sender_id``), whose numbers outlive this client
    _stable: bool
    _counters: dict[str, int]
    _counter_lock: threading.Lock
    _operations: dict[str, tuple[str, ...] | None]
    _batcher: _SignalBatcher

    def signal_entity(
        self,
        entity_id: EntityId | str,
        operation: str,
        input: Any = None,
        wait: bool = True,
        sequence: int | None = None,
    ) -> Future | None:
        """Send a one-way operation; returns once it is durably applied.

        Errors the operation raises are not reported to the signaller (one-way); an
        unknown entity type or operation, or input that does not pickle, raises here
        (also with ``wait=False``), before anything is sent or stored.
        With ``wait=False`` it returns at once a ``concurrent.futures.Future`` that
        resolves when the signal is applied, to pipeline many signals; the client re-sends
        it by itself if the entity's host restarts or was retired meanwhile.
        ``sequence`` (a client with a ``sender_id`` only) numbers it yourself: see
        ``DurableClient.connect``.
        """
        eid, seq, blob = self._prepare(entity_id, operation, input, sequence)
        if not wait:
            future: Future = Future()
            self._batcher.add(_Signal(future, eid, operation, blob, seq))
            return future
        self._signal_outcome(self._send(eid, operation, blob, seq))
        return None

    @staticmethod
    def _signal_outcome(outcome: Outcome) -> None:
        if outcome.error is not None:
            raise outcome.error

    def call_entity(
        self,
        entity_id: EntityId | str,
        operation: str,
        input: Any = None,
        timeout: float | None = None,
        sequence: int | None = None,
    ) -> Any:
        """Run an operation and return its result (or raise its error); ``sequence`` as
        for ``signal_entity`` (a repeat is answered with the first answer)."""
        timeout = _timeout(timeout)
        eid, seq, blob = self._prepare(entity_id, operation, input, sequence)
        outcome = self._send(eid, operation, blob, seq, timeout)
        if outcome.failure is None:
            return outcome.value
        if outcome.error is not None:
            raise outcome.error
        raise EntityOperationFailedError(str(eid), operation, outcome.failure)

    def read_entity_state(self, entity_id: EntityId | str) -> EntityStateResponse:
        """The entity's state as last committed."""
        row = self._call(SupervisorHandle.read_entity, str(EntityId.of(entity_id)))
        if row is None or not row[1]:
            return EntityStateResponse(False, None)
        return EntityStateResponse(True, loads(row[0], "entity state"))

    def get_entities(
        self, name: str | None = None, page_size: int = 100, continuation_token: int = 0
    ) -> tuple[list[EntityMetadata], int | None]:
        """A page of stored entities and the token of the next page (None at the end)."""
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidArgumentError.of("name", "a non-empty entity name or None", name)
        _count("page_size", page_size, 1)
        _count("continuation_token", continuation_token, 0)
        rows = self._call(SupervisorHandle.list_entities, name, page_size, continuation_token)
        page = [
            EntityMetadata(EntityId(n, k), exists, datetime.fromtimestamp(t, tz=timezone.utc))
            for n, k, exists, t in rows
        ]
        more = continuation_token + len(page) if len(page) == page_size else None
        return page, more

    def clean_entity_storage(self) -> int:
        """Remove entities that have no state; returns how many."""
        return self._call(SupervisorHandle.clean_entities)

    def list_quarantined(self) -> list[Quarantined]:
        """Work set aside as poison (it killed its host ``quarantine_after`` times)."""
        return list(self._call(SupervisorHandle.quarantined))

    def retry_quarantined(self, item_id: str) -> Quarantined:
        """Run quarantined work again: an instance resumes from its checkpoint, an entity
        operation is signalled to its entity again (its caller already had an error)."""
        return self._release(item_id, True)

    def discard_quarantined(self, item_id: str) -> Quarantined:
        """Drop quarantined work from the list; the instance stays Failed."""
        return self._release(item_id, False)

    def _release(self, item_id: str, retry: bool) -> Quarantined:
        if not isinstance(item_id, str) or not item_id:
            raise InvalidArgumentError.of("item_id", "an id from list_quarantined()", item_id)
        return self._call(SupervisorHandle.release_quarantined, item_id, retry)

    def last_sequence(self, entity_id: EntityId | str) -> int:
        """The number of this sender's last operation the entity has recorded (0: none).

        With a stable ``sender_id``, a driver that restarts asks this to know which of its
        operations arrived, or simply sends them all again with their own numbers.
        """
        eid = str(EntityId.of(entity_id))
        return int(self._call(SupervisorHandle.last_sequence, eid, self._sender))

    def _prepare(
        self, entity_id: EntityId | str, operation: str, input: Any, sequence: int | None = None
    ) -> tuple[EntityId, int, bytes]:
        eid = EntityId.of(entity_id)
        _name(operation, "operation")
        if sequence is not None:
            if not self._stable:
                raise InvalidArgumentError.of(
                    "sequence", "None (numbering needs connect(sender_id=...))", sequence
                )
            _count("sequence", sequence, 1)
        self._check_operation(eid, operation)
        blob = dumps(input, "entity operation input")
        key = str(eid)
        if self._stable and key not in self._counters:
            # A stable sender goes on from what the entity recorded before a restart.
            last = self.last_sequence(eid)
            with self._counter_lock:
                self._counters.setdefault(key, last)
        # Numbered only once nothing can refuse it: a number taken by a refused operation
        # would leave a gap the entity waits in forever (it applies each sender in order).
        with self._counter_lock:
            if sequence is None:
                sequence = self._counters.get(key, 0) + 1
            seq = sequence
            self._counters[key] = max(self._counters.get(key, 0), seq)
        return eid, seq, blob

    def _check_operation(self, eid: EntityId, operation: str) -> None:
        """Refuse an operation the entity's type does not have, before anything is sent."""
        reserved = operation.startswith("_")  # system operations and private methods
        known = self._operations.get(eid.name, _UNKNOWN)
        if known is _UNKNOWN or (known is not None and operation not in known and not reserved):
            # First use, or a name that a newer registration may have added: ask the hub.
            known = self._operations[eid.name] = self._call(
                SupervisorHandle.entity_operations, eid.name
            )
        if reserved or (known is not None and operation not in known):
            raise UnknownOperationError(str(eid), operation, known or ())

    def _send(
        self, eid: EntityId, operation: str, blob: bytes, seq: int, timeout: float | None = None
    ) -> Outcome:
        def once() -> Outcome:
            host = self._router.handle(eid, self._get)
            ref = host.entity_op(str(eid), operation, blob, self._sender, seq, True)
            try:
                return Outcome.decode(get(ref, timeout))
            except GetTimeout:
                raise OperationTimeoutError(
                    f"entity {eid} did not answer", timeout or 0.0
                ) from None
            except TaskError as exc:
                raise typed(exc) from None

        # The entity's host is restarting: resending the same seq is applied once.
        return retry(
            once,
            ENTITY_HOST_RESTART.within(RECONNECT_SECONDS),
            lambda exc: EntityUnavailableError(str(eid), RECONNECT_SECONDS, first_line(exc)),
            lambda exc: self._router.forget(eid),
        )

    def _get(self, ref: Any) -> Any:
        try:
            return get(ref)
        except TaskError as exc:
            self._refused("entity routing", exc)


def _hub_tracer(client: DurableClient) -> tracing.Tracer | None:
    """This driver's tracer for the hub's ``tracing`` settings (None: off, or not here)."""
    try:
        settings = client._call(SupervisorHandle.hub_config)
        return tracing.tracer_for(TracingConfig.of(settings.get("tracing")))
    except DurableError as exc:  # e.g. the hub traces, this driver lacks the extra
        log.warning("this driver's starts are not traced: %s", exc)
        return None


def _start_span_of(args: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    """The name and attributes of a client's span of one start (``_start_args``)."""
    return f"start_new {args[0]}", {"durable.instance_id": args[4], "durable.orchestrator": args[0]}


def _check_sender(sender_id: str) -> None:
    """A ``sender_id`` of the user's own: a name no client or system sender uses."""
    if _name(sender_id, "sender_id") and ":" in sender_id:
        raise InvalidArgumentError.of("sender_id", "a non-empty name without ':'", sender_id)
    if sender_id.startswith("client-") or sender_id == "quarantine":
        raise InvalidArgumentError.of("sender_id", "a name not starting 'client-'", sender_id)


_CodeKey = tuple[str, str, str]


class _ShippedCode:
    """The code a client has shipped to its hub, and the objects it pickled it from."""

    def __init__(self) -> None:
        self._blobs: dict[_CodeKey, bytes] = {}
        self._sources: dict[_CodeKey, Any] = {}

    def unshipped(
        self, objects: Iterable[Any]
    ) -> tuple[list[tuple[str, str, str, bytes]], list[tuple[_CodeKey, Any]]]:
        """(kind, name, version, blob) of the objects whose code the hub lacks, and what
        to remember once they are shipped."""
        items, sources = [], []
        for obj in objects:
            code = as_registrable(obj)
            key = (code.kind, code.name, getattr(code, "version", ""))
            # Pickling the code costs more than the start itself: an object shipped already is
            # not pickled again (one defined anew is a new object, and is compared by its blob).
            if self._sources.get(key) is code:
                continue
            kind, name, version, blob = encode_code(code)
            if self._blobs.get(key) != blob:
                items.append((kind, name, version, blob))
            sources.append((key, code))
        return items, sources

    def shipped(
        self, items: list[tuple[str, str, str, bytes]], sources: list[tuple[_CodeKey, Any]]
    ) -> None:
        """The hub has recorded ``items``."""
        for kind, name, version, blob in items:
            self._blobs[(kind, name, version)] = blob
        self._sources.update(sources)


class DurableClient(_EntityOperations):
    """A handle on one task hub; cheap to create, safe to share across threads."""

    def __init__(self, hub: str, supervisor: Any, sender_id: str | None = None) -> None:
        self.hub = hub
        if sender_id is not None:
            _check_sender(sender_id)
        if not isinstance(supervisor, SupervisorHandle):
            supervisor = SupervisorHandle(supervisor)  # a raw actor handle
        self._supervisor: SupervisorHandle = supervisor
        self._code = _ShippedCode()
        self._router = EntityRouter(lambda: self._supervisor)
        self._stable = sender_id is not None
        self._sender = sender_id or f"client-{uuid.uuid4().hex}"
        self._counters: dict[str, int] = {}
        self._counter_lock = threading.Lock()
        #: operations per entity type, as the hub last said (None: a function entity)
        self._operations: dict[str, tuple[str, ...] | None] = {}
        self._batcher = _SignalBatcher(self)
        self._events = _Pipeline(self, SupervisorHandle.deliver_many, "durable-events")
        # Starts from many threads travel together: one Ray call and one transaction each.
        self._starts = _Pipeline(self, SupervisorHandle.start_many, "durable-starts", _resent_start)
        #: the hub's tracing: Runtime.start and connect set it from the hub's config
        self.tracer: tracing.Tracer | None = None

    @classmethod
    def connect(
        cls, hub: str = "default", address: str | None = None, sender_id: str | None = None
    ) -> DurableClient:
        """A client for a running hub, from any driver on the Ray cluster.

        ``sender_id`` names this driver as a sender to entities for good (e.g.
        ``"billing-1"``): its operations are numbered on from what each entity recorded of
        it, across restarts of the driver, and ``signal_entity(..., sequence=n)`` lets a
        restarted driver send operations again under their first numbers, so that each is
        applied once. Without it, each client is a new sender.
        """
        from .cluster import current_address, init_ray

        init_ray(address or "auto")  # a cluster that is not running fails at once, typed
        handle = find_supervisor(hub)
        if handle is None:
            raise DurableError(
                f"no running task hub named {hub!r} on the Ray cluster at {current_address()}; "
                f"start it with Runtime.start(hub={hub!r})"
            ) from None
        client = cls(hub, handle, sender_id)
        client.tracer = _hub_tracer(client)
        return client

    def register(self, *objects: Any) -> None:
        """Ship orchestrators, activities and entities to the hub, recorded durably."""
        items, sources = self._code.unshipped(objects)
        if items:
            self._call(SupervisorHandle.register, items)
        self._code.shipped(items, sources)

    # -- orchestrations -----------------------------------------------------------------

    def start_new(
        self,
        orchestrator: Any,
        input: Any = None,
        instance_id: str | None = None,
        version: str | None = None,
    ) -> str:
        """Start an orchestration (a registered object or name); returns its instance id."""
        span = tracing.begin(self.tracer, "start_new")
        args = self._start_args(orchestrator, input, instance_id, version, tracing.under(span))
        try:
            return str(self._starts.add(args).result())
        finally:  # a start that failed may still have been stored: its span is sent too
            tracing.end(self.tracer, span, *_start_span_of(args))

    async def start_new_async(
        self,
        orchestrator: Any,
        input: Any = None,
        instance_id: str | None = None,
        version: str | None = None,
    ) -> str:
        """``start_new`` for code on an event loop: awaits the hub instead of blocking."""
        span = tracing.begin(self.tracer, "start_new")
        args = self._start_args(orchestrator, input, instance_id, version, tracing.under(span))
        try:
            started = await self._await(SupervisorHandle.start_new, args, lambda: self._start(args))
        finally:
            tracing.end(self.tracer, span, *_start_span_of(args))
        return str(started)

    # The raw reads below serve views that decode leniently (runtime.driver.http_api): a value this
    # process cannot unpickle shows as a marker there instead of failing the whole answer.

    async def get_record_async(
        self, instance_id: str, show_history: bool = False
    ) -> tuple[InstanceRecord | None, list[bytes] | None]:
        """The instance's stored record (and history blobs if asked), undecoded, awaited."""
        iid = _instance_id(instance_id)
        return await self._read_async(SupervisorHandle.get_status, iid, bool(show_history))

    async def query_records_async(self, query: InstanceQuery) -> list[InstanceRecord]:
        """The stored records of the instances matching ``query``, undecoded, awaited."""
        _prefix(query.prefix)
        return await self._read_async(SupervisorHandle.query, query)

    async def read_entity_record_async(
        self, entity_id: EntityId | str
    ) -> tuple[bytes | None, bool] | None:
        """An entity's stored ``(state blob, exists)``, or None if never stored, awaited."""
        return await self._read_async(SupervisorHandle.read_entity, str(EntityId.of(entity_id)))

    async def entity_row_async(
        self, entity_id: EntityId | str
    ) -> tuple[bytes | None, bool, str | None] | None:
        """An entity's stored ``(state blob, exists, lock owner)``, or None, awaited."""
        return await self._read_async(SupervisorHandle.entity_record, str(EntityId.of(entity_id)))

    async def overview_async(self, window: float = 3600.0, ask_hosts: bool = True) -> HubOverview:
        """The hub's counts (the dashboard's overview), per-minute over ``window`` seconds;
        ``ask_hosts``: with each host's activities in flight."""
        return await self._read_async(SupervisorHandle.overview, float(window), bool(ask_hosts))

    def _start_args(
        self,
        orchestrator: Any,
        input: Any,
        instance_id: str | None,
        version: str | None,
        trace: str | None = None,
    ) -> tuple[str, str | None, bytes, bytes, str, str]:
        if instance_id is not None:
            _instance_id(instance_id)
        if version is not None and (not isinstance(version, str) or "\x00" in version):
            raise InvalidArgumentError.of("version", "a string without NUL or None", version)
        if isinstance(orchestrator, str):
            name = _name(orchestrator, "orchestrator")
        else:
            obj = as_registrable(orchestrator, "orchestrator")
            self.register(obj)
            name = obj.name
            version = version if version is not None else obj.version
        iid = instance_id or uuid.uuid4().hex
        input_blob = dumps(input, "orchestration input")
        start_blob = encode_event(
            h.ExecutionStarted(name, input, version or "", trace=trace), "orchestration input"
        )
        # One id per call, kept by its retries: a retry after a lost answer is recognised as
        # this start even once the instance has ended (it never runs twice).
        return name, version, input_blob, start_blob, iid, uuid.uuid4().hex

    def _start(self, args: tuple[str, str | None, bytes, bytes, str, str]) -> str:
        """A start sent again (its first try was lost), retried while the hub restarts."""

        def once() -> str:
            try:
                return str(self._call_once(SupervisorHandle.start_new, *args))
            except InstanceExistsError as exc:
                return str(_resent_start(args, exc))

        return retry(once, *self._hub_patience())

    def get_status(self, instance_id: str, show_history: bool = False) -> OrchestrationState | None:
        """The instance's status, or None for an unknown id."""
        record, history = self._call(
            SupervisorHandle.get_status, _instance_id(instance_id), bool(show_history)
        )
        return None if record is None else state_of(record, history)

    def get_status_by(
        self,
        runtime_status: Iterable[OrchestrationStatus | str] | None = None,
        created_time_from: datetime | None = None,
        created_time_to: datetime | None = None,
        instance_id_prefix: str | None = None,
        top: int | None = None,
        skip: int = 0,
    ) -> list[OrchestrationState]:
        """Instances matching every filter given, oldest first."""
        query = InstanceQuery(
            _statuses(runtime_status),
            _timestamp("created_time_from", created_time_from),
            _timestamp("created_time_to", created_time_to),
            _prefix(instance_id_prefix),
            _count("top", top, 0, optional=True),
            _count("skip", skip, 0) or 0,
        )
        return [state_of(r) for r in self._call(SupervisorHandle.query, query)]

    def wait_for_completion(
        self, instance_id: str, timeout: float | None = None, raise_on_failure: bool = False
    ) -> OrchestrationState:
        """Block until the instance is terminal; OperationTimeoutError after ``timeout`` s."""
        _instance_id(instance_id)
        timeout = _timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            record = self._call(SupervisorHandle.wait, instance_id, left)
            if record is not None:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise OperationTimeoutError(
                    f"orchestration {instance_id!r} did not finish", timeout or 0.0
                )
        state = state_of(record)
        if raise_on_failure and state.runtime_status == OrchestrationStatus.FAILED:
            raise OrchestrationFailedError(instance_id, state.failure_details)  # type: ignore
        return state

    def terminate(self, instance_id: str, reason: str = "", recursive: bool = True) -> None:
        """Stop a live instance (and its live sub-orchestrations); it ends Terminated.

        InvalidOperationError if it has already ended (nothing is changed).
        """
        self._call(
            SupervisorHandle.terminate, _instance_id(instance_id), _reason(reason), bool(recursive)
        )

    def raise_event(
        self, instance_id: str, event_name: str, data: Any = None, wait: bool = True
    ) -> Future | None:
        """Send an external event to a live instance (kept until it waits for it).

        InvalidOperationError if the instance has ended: refused, not dropped. ``wait=False``
        returns a ``concurrent.futures.Future`` at once (resolved when stored, or failed
        with the refusal): events so sent keep their order, many per call to the hub.
        """
        _instance_id(instance_id)
        _name(event_name, "event_name")
        # One id per event, kept by its retries: the store recognises a retry whose first
        # try landed (its answer lost with a supervisor), even once the instance has ended.
        event = (instance_id, encode_event(h.EventRaised(event_name, data), "event data"))
        if not wait:
            return self._events.add((*event, uuid.uuid4().hex))
        return self._call(SupervisorHandle.deliver, *event, uuid.uuid4().hex)

    def suspend(self, instance_id: str, reason: str = "") -> None:
        """Pause a live instance: events and results wait until ``resume``.

        Suspending a Suspended instance does nothing; InvalidOperationError if it has ended.
        """
        self._call(SupervisorHandle.suspend, _instance_id(instance_id), _reason(reason))

    def resume(self, instance_id: str, reason: str = "") -> None:
        """Let a Suspended instance go on; InvalidOperationError for any other status."""
        self._call(SupervisorHandle.resume, _instance_id(instance_id), _reason(reason))

    def restart(self, instance_id: str, restart_with_new_instance_id: bool = True) -> str:
        """Run the instance's orchestrator again with its latest input; returns the id.

        Any instance restarts under a new id; under its own id only an ended one (it is
        replaced), a live one raises InstanceExistsError.
        """
        _instance_id(instance_id)
        new_id = uuid.uuid4().hex if restart_with_new_instance_id else None
        return self._call(SupervisorHandle.restart, instance_id, new_id)

    def purge_instance_history(self, instance_id: str) -> int:
        """Delete an ended instance and its ended sub-orchestrations; returns how many.

        InvalidOperationError while it is live (terminate it first).
        """
        return self._call(SupervisorHandle.purge, _instance_id(instance_id))

    def purge_instance_history_by(
        self,
        created_time_from: datetime | None = None,
        created_time_to: datetime | None = None,
        runtime_status: Iterable[OrchestrationStatus | str] | None = None,
        instance_id_prefix: str | None = None,
    ) -> int:
        """Delete every finished instance matching the filters; returns how many."""
        query = InstanceQuery(
            _statuses(runtime_status),
            _timestamp("created_time_from", created_time_from),
            _timestamp("created_time_to", created_time_to),
            _prefix(instance_id_prefix),
        )
        return self._call(SupervisorHandle.purge_by, query)

    # -- for tests and tools ------------------------------------------------------------

    def host_of(self, instance_id: str) -> Any:
        """The Ray actor handle of the host an instance lives on."""
        return self._call(SupervisorHandle.host_of, instance_id)

    def supervisor_pid(self) -> int:
        """The supervisor's process id."""
        return self._call(SupervisorHandle.pid)
