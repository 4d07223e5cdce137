"""The one error hierarchy of ray-durable.

Every error crosses Ray process boundaries, so each keeps its constructor arguments in
``self.args`` (what pickle uses) and builds its message from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar


@dataclass(frozen=True)
class FailureDetails:
    """What is kept of an exception once it has crossed a process or a restart."""

    error_type: str
    message: str
    stack_trace: str = ""

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


class DurableError(Exception):
    """Base class of every error raised by ray-durable."""


class SerializationError(DurableError):
    """A value (input, output, state) could not be pickled or unpickled."""

    def __init__(self, what: str, cause: str, action: str = "serialize") -> None:
        super().__init__(what, cause, action)
        self.what = what
        self.cause_text = cause
        #: "serialize" or "deserialize": which way it failed
        self.action = action

    def __str__(self) -> str:
        return f"cannot {self.action} {self.what}: {self.cause_text}"


class NotRegisteredError(DurableError):
    """A name refers to no registered orchestrator, activity or entity."""

    def __init__(
        self, kind: str, name: str, known: tuple[str, ...] = (), version: str | None = None
    ) -> None:
        super().__init__(kind, name, tuple(known), version)
        self.kind = kind
        self.name = name
        self.known = tuple(known)
        self.version = version  # None: the latest registration was asked for

    def __str__(self) -> str:
        if self.version is not None and self.name in self.known:
            return (
                f"no version {self.version!r} of {self.kind} {self.name!r} is registered "
                f"({self.name!r} is registered in other versions; give no version for the "
                "latest one)"
            )
        known = ", ".join(sorted(self.known)) or "none"
        named = f"named {self.name!r}" + (
            "" if self.version is None else f" with version {self.version!r}"
        )
        return f"no {self.kind} {named} is registered (registered: {known})"


class OrchestratorNotFoundError(NotRegisteredError):
    """``start_new`` named an orchestrator the hub does not know."""

    def __init__(self, name: str, known: tuple[str, ...] = (), version: str | None = None) -> None:
        super().__init__("orchestrator", name, known, version)
        self.args = (name, tuple(known), version)


class ActivityNotFoundError(NotRegisteredError):
    """An orchestration called an activity the hub does not know."""

    def __init__(self, name: str, known: tuple[str, ...] = ()) -> None:
        super().__init__("activity", name, known)
        self.args = (name, tuple(known))


class InstanceExistsError(DurableError):
    """``start_new`` was given the id of an instance that is not finished."""

    def __init__(self, instance_id: str, status: str) -> None:
        super().__init__(instance_id, status)
        self.instance_id = instance_id
        self.status = status

    def __str__(self) -> str:
        return (
            f"an orchestration with instance id {self.instance_id!r} already exists "
            f"and is {self.status}; pick another id or wait until it finishes"
        )


class InstanceNotFoundError(DurableError):
    """An operation named an instance the hub does not know."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(instance_id)
        self.instance_id = instance_id

    def __str__(self) -> str:
        return f"no orchestration instance with id {self.instance_id!r}"


class InvalidOperationError(DurableError):
    """The operation does not apply to the instance in its current state."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def _shown(value: object) -> str:
    """A value as an error message shows it (a repr, kept short; errors must pickle)."""
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


_ArgumentErrorT = TypeVar("_ArgumentErrorT", bound="_ArgumentError")


class _ArgumentError(DurableError):
    """An argument of a public call that was refused: its name, what it takes, what came."""

    def __init__(self, argument: str, expected: str, got: str) -> None:
        super().__init__(argument, expected, got)
        self.argument = argument
        self.expected = expected
        self.got = got

    @classmethod
    def of(
        cls: type[_ArgumentErrorT], argument: str, expected: str, value: object
    ) -> _ArgumentErrorT:
        """The error for ``value`` (shown by its repr)."""
        return cls(argument, expected, _shown(value))

    def __str__(self) -> str:
        return f"{self.argument}: expected {self.expected}, got {self.got}"


class InvalidArgumentError(_ArgumentError, ValueError):
    """An argument of a public call has a value it cannot take; nothing was stored."""


class ArgumentTypeError(_ArgumentError, TypeError):
    """An argument of a public call has a type it cannot take; nothing was stored."""


class UnknownOperationError(DurableError, ValueError):
    """The entity has no operation of that name; the entity and its store rows are unchanged."""

    def __init__(self, entity: str, operation: str, known: tuple[str, ...] = ()) -> None:
        super().__init__(entity, operation, tuple(known))
        self.entity = entity
        self.operation = operation
        self.known = tuple(known)

    def __str__(self) -> str:
        known = ", ".join(self.known) or "see the entity's code"
        reserved = " (names starting with '_' are not operations)"
        why = reserved if self.operation.startswith("_") else ""
        return (
            f"entity {self.entity} has no operation {self.operation!r}{why} (operations: {known})"
        )


class UnavailableError(DurableError):
    """An actor of the hub stayed unreachable (dead or restarting) while the client retried."""

    def __init__(self, what: str, seconds: float, cause: str) -> None:
        super().__init__(what, seconds, cause)
        self.what = what
        self.seconds = seconds
        self.cause_text = cause

    def __str__(self) -> str:
        return (
            f"{self.what} did not answer for {self.seconds:g} s: its host kept dying or "
            f"restarting ({self.cause_text}); see the hub's logs for why"
        )


class EntityUnavailableError(UnavailableError):
    """The host of an entity kept dying or restarting for as long as the client retried.

    The operation may or may not have been applied (it is applied at most once).
    """

    def __init__(self, entity: str, seconds: float, cause: str) -> None:
        super().__init__(f"entity {entity}", seconds, cause)
        self.entity = entity
        self.args = (entity, seconds, cause)


class HubUnavailableError(UnavailableError):
    """The hub's supervisor stayed unreachable for as long as the client retried."""

    def __init__(self, hub: str, seconds: float, cause: str) -> None:
        super().__init__(f"the supervisor of task hub {hub!r}", seconds, cause)
        self.hub = hub
        self.args = (hub, seconds, cause)


class StoreUnavailableError(UnavailableError):
    """The hub's database was lost during a write, or stayed unreachable while retried.

    Nothing is half-applied: the transaction either committed whole or not at all, and
    every write of the store may be run again (histories and entity senders recognise a
    repeat), so hosts re-run the operation from the store and clients re-send it.
    """

    def __init__(self, store: str, seconds: float, cause: str) -> None:
        super().__init__(f"the store {store}", seconds, cause)
        self.store = store
        self.args = (store, seconds, cause)

    def __str__(self) -> str:
        lost = (
            "was lost during a write"
            if not self.seconds
            else (f"did not answer for {self.seconds:g} s")
        )
        return (
            f"{self.what} {lost} ({self.cause_text}); nothing was half-applied: the operation "
            "may be sent again"
        )


class StoreWriteRefusedError(StoreUnavailableError):
    """The store refused a write: its disk is full, or it became read-only.

    Nothing is half-applied. Hosts keep retrying (with a growing pause) and go on once the
    store takes writes again; a client's own write (a start, an event) fails with this.
    """

    def __init__(self, store: str, cause: str) -> None:
        super().__init__(store, 0.0, cause)
        self.args = (store, cause)

    def __str__(self) -> str:
        return (
            f"{self.what} refused a write ({self.cause_text}); nothing was half-applied. "
            "Free disk space or make the store writable: the hub retries and goes on"
        )


class QuarantinedError(DurableError):
    """Work that killed its host again and again was set aside (quarantined).

    ``work`` names it (``orchestration:<id>`` or ``entity:<entity>:<sender>:<seq>``);
    ``durable quarantine retry`` or ``discard`` with that id decides what becomes of it.
    """

    def __init__(self, work: str, crashes: int, detail: str) -> None:
        super().__init__(work, crashes, detail)
        self.work = work
        self.crashes = crashes
        self.detail = detail

    def __str__(self) -> str:
        return (
            f"{self.work} was quarantined: its host died {self.crashes} times while it ran "
            f"({self.detail}); list it with `durable quarantine list`, then `durable "
            f"quarantine retry {self.work}` or `discard` it"
        )


class ActivityTimeoutError(DurableError):
    """An inline activity ran past its timeout; its thread was abandoned (it may still run)."""

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(name, timeout)
        self.name = name
        self.timeout = timeout

    def __str__(self) -> str:
        return (
            f"inline activity {self.name!r} ran past its timeout of {self.timeout:g} s; its "
            "thread was abandoned (set timeout= on @activity or call_activity to allow more)"
        )


class InlinePoolExhaustedError(DurableError):
    """A host holds so many abandoned (timed-out, still running) inline activity threads
    that it runs no new inline activity; restart the host, or fix what hangs."""

    def __init__(self, name: str, stuck: int) -> None:
        super().__init__(name, stuck)
        self.name = name
        self.stuck = stuck

    def __str__(self) -> str:
        return (
            f"inline activity {self.name!r} not run: {self.stuck} timed-out inline "
            "activities of this host still run on their abandoned threads"
        )


class QuarantineItemNotFoundError(DurableError):
    """A quarantine id names nothing on the list (retried or discarded already, or mistyped)."""

    def __init__(self, item_id: str) -> None:
        super().__init__(item_id)
        self.item_id = item_id

    def __str__(self) -> str:
        return (
            f"nothing quarantined has the id {self.item_id!r}; `durable quarantine list` "
            "shows the ids"
        )


class StaleEntityWriteError(DurableError):
    """An entity commit found a sender's number other than the one its host read: another
    host (an old incarnation cut off from the cluster) wrote the entity meanwhile. Nothing
    of the commit is stored; the host runs the operations again from the store."""

    def __init__(self, entity: str, sender: str, expected: int, found: int) -> None:
        super().__init__(entity, sender, expected, found)
        self.entity = entity
        self.sender = sender
        self.expected = expected
        self.found = found

    def __str__(self) -> str:
        return (
            f"entity {self.entity}: the store holds number {self.found} for sender "
            f"{self.sender!r}, its host expected {self.expected}; another host wrote it, "
            "so this commit is dropped and its operations run again from the store"
        )


class OperationTimeoutError(DurableError, TimeoutError):
    """A wait the caller bounded with ``timeout`` ended first; nothing was cancelled."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(what, seconds)
        self.what = what
        self.seconds = seconds

    def __str__(self) -> str:
        return f"{self.what} within {self.seconds:g} s"


class HubConfigError(DurableError):
    """The hub's configuration is invalid or conflicts with the running hub."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class StoreVersionError(HubConfigError):
    """The store was written by a newer ray-durable: its schema is one this code can't read."""

    def __init__(self, url: str, found: int, supported: int) -> None:
        super().__init__(url)
        self.args = (url, found, supported)
        self.url, self.found, self.supported = url, found, supported

    def __str__(self) -> str:
        return (
            f"store {self.url} has schema version {self.found}, newer than version "
            f"{self.supported} that this ray-durable reads; upgrade ray-durable on every "
            "node (or use another store)"
        )


class StoreCorruptError(HubConfigError):
    """The store file is not a database the store can read (damaged, or another file)."""

    def __init__(self, store: str, cause: str) -> None:
        super().__init__(store)
        self.args = (store, cause)
        self.store, self.cause_text = store, cause

    def __str__(self) -> str:
        return (
            f"the store {self.store} cannot be read as a SQLite database ({self.cause_text}); "
            "it was left as it is: restore it from a backup, or point `store:` at another file"
        )


class PayloadMissingError(DurableError):
    """A row refers to an out-of-line payload that is gone (its instance was purged meanwhile)."""

    def __init__(self, url: str, instance_id: str, digest: str) -> None:
        super().__init__(url)
        self.args = (url, instance_id, digest)
        self.url, self.instance_id, self.digest = url, instance_id, digest

    def __str__(self) -> str:
        return (
            f"store {self.url}: instance {self.instance_id!r} refers to payload {self.digest}, "
            "which is not stored; the instance was purged or restarted while it was read: "
            "read it again"
        )


class ClusterNotFoundError(DurableError, ConnectionError):
    """No Ray cluster answers at the address a driver was pointed at."""

    def __init__(self, address: str, origin: str = "", reason: str = "") -> None:
        super().__init__(address)  # one argument: OSError would read three as errno, ...
        self.args = (address, origin, reason)
        self.address = address
        self.origin = origin
        self.reason = reason

    def __str__(self) -> str:
        where = self.address + (f" ({self.origin})" if self.origin else "")
        why = f": {self.reason}" if self.reason else ""
        leftover = (
            "delete that file (its cluster has stopped), "
            if "ray_current_cluster" in self.origin
            else ""
        )
        return (
            f"no Ray cluster is running at {where}{why}; {leftover}start the cluster, "
            "give the address of a running one (ray.address, --address), or 'local' to "
            "start a Ray of your own"
        )


class TaskFailedError(DurableError):
    """Raised inside an orchestrator when an activity (or child) it awaited failed.

    ``details.error_type`` names the original exception's class, ``details.stack_trace``
    carries its traceback, so compensation code can decide by type.
    """

    def __init__(self, message: str, details: FailureDetails) -> None:
        super().__init__(message, details)
        self.details = details

    def __str__(self) -> str:
        return f"{self.args[0]}: {self.details}"


class NonDeterminismError(DurableError):
    """Replaying an orchestrator did not reproduce its recorded history."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class OrchestrationFailedError(DurableError):
    """Raised by ``wait_for_completion(..., raise_on_failure=True)`` for a failed instance."""

    def __init__(self, instance_id: str, details: FailureDetails) -> None:
        super().__init__(instance_id, details)
        self.instance_id = instance_id
        self.details = details

    def __str__(self) -> str:
        return f"orchestration {self.instance_id!r} failed: {self.details}"


def _utc(timestamp: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


class HubLeaseHeldError(DurableError):
    """The hub is served by a supervisor of another Ray cluster, whose lease is still live."""

    def __init__(
        self,
        hub: str,
        store: str,
        host: str,
        pid: int,
        ray_address: str,
        since: float,
        expires: float,
    ) -> None:
        super().__init__(hub, store, host, pid, ray_address, since, expires)
        self.hub = hub
        self.store = store
        self.host = host
        self.pid = pid
        self.ray_address = ray_address
        self.since = since
        self.expires = expires

    def __str__(self) -> str:
        return (
            f"task hub {self.hub!r} on {self.store} is already served by another Ray cluster: "
            f"its supervisor (pid {self.pid} on host {self.host!r}, Ray at {self.ray_address}) "
            f"has held the hub's lease since {_utc(self.since)}, and the lease expires at "
            f"{_utc(self.expires)} unless renewed; stop that server first, connect to its "
            "cluster (ray.address), or pick another hub name"
        )


class FencedError(DurableError):
    """A writer's lease epoch is stale: another supervisor took the hub over; nothing written."""

    def __init__(self, hub: str, epoch: int, current: int | None) -> None:
        super().__init__(hub, epoch, current)
        self.hub = hub
        self.epoch = epoch
        self.current = current

    def __str__(self) -> str:
        now = "holds no lease" if self.current is None else f"is at lease epoch {self.current}"
        return (
            f"task hub {self.hub!r}: this process writes with lease epoch {self.epoch} but the "
            f"store {now}: another supervisor took the hub over, so nothing was written and "
            "this process stops"
        )


class InternalError(DurableError):
    """A part of ray-durable failed with an error that is not a DurableError: a bug in it.

    ``details`` keeps the original error's type, message and (remote) traceback.
    """

    def __init__(self, where: str, error_type: str, message: str, stack_trace: str = "") -> None:
        super().__init__(where, error_type, message, stack_trace)
        self.where = where
        self.details = FailureDetails(error_type, message, stack_trace)

    def __str__(self) -> str:
        lines = self.details.message.strip().splitlines()
        return (
            f"internal error, a bug in ray-durable: {self.where} failed with "
            f"{self.details.error_type}: {lines[0] if lines else ''} (please report it with "
            "this message and the traceback in .details.stack_trace or the hub's logs)"
        )


class HistoryFormatError(SerializationError):
    """A stored history event is of a format version or kind this ray-durable cannot read."""

    def __init__(self, cause: str) -> None:
        super().__init__("history event", cause)
        self.args = (cause,)
