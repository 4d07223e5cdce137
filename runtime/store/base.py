"""The Store protocol: the only durable thing in a hub.

A store keeps, per task hub: instances (one row each), their histories (append-only
pickled events), an inbox of messages not yet recorded in a history, durable timers,
and the code registry. Payloads are opaque bytes here; pickling is the caller's job, so
a value that does not pickle fails before any transaction starts.

A blob of an instance (history event, inbox message, input, output, custom status,
failure) longer than ``payload_inline_limit`` is stored once, out of line, in the
transaction that writes it, and deleted with the instance; reads return it as written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from ..errors import DurableError


@dataclass
class InstanceRecord:
    """One instance row."""

    instance_id: str
    name: str
    version: str
    status: str
    execution_id: str
    created_time: float
    last_updated_time: float
    input: bytes | None = None
    output: bytes | None = None
    custom_status: bytes | None = None
    failure: bytes | None = None
    parent_instance_id: str | None = None
    parent_seq: int | None = None
    host: str | None = None
    history_length: int = 0
    #: the message that created this execution: a re-delivered start is recognised by it
    start_id: str | None = None


class NewInstance(NamedTuple):
    """One instance to create: its row, its first history events and its first messages."""

    record: InstanceRecord
    events: list[bytes]
    inbox: Sequence[bytes] = ()


class GuardedMessage(NamedTuple):
    """A message to accept only while its instance's status is in ``statuses``."""

    instance_id: str
    event: bytes
    statuses: tuple[str, ...]
    new_status: str | None = None
    message_id: str | None = None


@dataclass
class Checkpoint:
    """Everything one orchestration operation changes, committed in one transaction.

    ``events`` are appended at ``first_index`` of the history; the primary key
    ``(hub, instance_id, idx)`` makes a second writer of the same slot fail instead of
    silently forking the history. With ``replace_history`` (continue-as-new) the old
    history is dropped and ``events`` start a new execution ``execution_id``.
    """

    instance_id: str
    execution_id: str
    events: list[bytes]
    first_index: int
    status: str | None = None
    output: bytes | None = None
    failure: bytes | None = None
    custom_status: bytes | None = None
    input: bytes | None = None
    consumed_inbox: list[int] = field(default_factory=list)
    timers: list[tuple[int, float]] = field(default_factory=list)
    outgoing: list[tuple[str, bytes]] = field(default_factory=list)
    replace_history: bool = False
    outbox: list[tuple[str, str, bytes]] = field(default_factory=list)


@dataclass
class EntityCheckpoint:
    """One entity operation: new state, the sender's last sequence and result, messages out."""

    name: str
    key: str
    state: bytes | None
    exists: bool
    sender: str
    seq: int
    result: bytes
    outbox: list[tuple[str, str, bytes]] = field(default_factory=list)
    locked_by: str | None = None
    #: False for a refused operation: only the sender's row is written, the entity's is kept
    state_changed: bool = True
    #: the sender's last number as the writer read it (None: not checked); the commit is
    #: refused with StaleEntityWriteError if the store holds another (a second writer)
    prev_seq: int | None = None


@dataclass(frozen=True)
class Quarantined:
    """Work set aside after it crashed its host too often: listed, retried or dropped by hand.

    ``id`` is ``orchestration:<instance id>`` or ``entity:<entity id>:<sender>:<seq>``.
    """

    id: str
    kind: str
    target: str
    crashes: int
    detail: str
    quarantined_at: float
    operation: str | None = None
    sender: str | None = None
    seq: int | None = None
    input: bytes | None = None


@dataclass(frozen=True)
class HubHealth:
    """What needs a person: quarantined work, undelivered messages, the oldest stuck start."""

    quarantined: int
    outbox_depth: int
    #: when the oldest Pending instance was created (None: there is none)
    oldest_pending: float | None


@dataclass(frozen=True)
class HubOverview:
    """What a hub holds, counted by the store for the dashboard's overview."""

    #: instances by runtime status
    by_status: dict[str, int]
    #: per minute (epoch seconds of its start) since the asked time: started, finished
    started_per_minute: dict[int, int]
    finished_per_minute: dict[int, int]
    #: stored entities (with state) by name
    entities_by_name: dict[str, int]
    #: unfinished instances by the host that holds them ("" for none yet)
    live_by_host: dict[str, int]
    pending_timers: int
    next_timer: float | None
    health: HubHealth
    lease: Lease | None
    #: activities submitted and not answered, by host (the supervisor asks the hosts;
    #: None: the host did not answer in time)
    in_flight_by_host: dict[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxMessage:
    """A message committed by an operation, delivered after the commit (transactional outbox)."""

    id: int
    kind: str
    target: str
    payload: bytes
    sender: str


@dataclass(frozen=True)
class InboxMessage:
    """A message for an instance, kept until a checkpoint records it."""

    id: int
    instance_id: str
    event: bytes


@dataclass(frozen=True)
class DueTimer:
    """A durable timer."""

    instance_id: str
    execution_id: str
    seq: int
    fire_at: float


@dataclass(frozen=True)
class InstanceQuery:
    """Filters of ``Store.query``; None means "any"."""

    statuses: tuple[str, ...] | None = None
    created_from: float | None = None
    created_to: float | None = None
    prefix: str | None = None
    limit: int | None = None
    offset: int = 0
    #: keyset paging: only instances after this (created_time, instance_id) in the order
    after: tuple[float, str] | None = None
    #: newest first (the dashboard's order) instead of oldest first
    newest_first: bool = False
    #: the orchestrator's name
    name: str | None = None


@dataclass(frozen=True)
class LeaseHolder:
    """Who runs a hub's supervisor: a process, its machine and its Ray cluster."""

    host: str
    #: boot id and pid namespace: where ``pid`` names this very process ("" if unknown)
    machine: str
    pid: int
    ray_address: str
    #: the Ray cluster's id: every supervisor incarnation of one cluster shares one epoch
    cluster: str
    actor_id: str


@dataclass(frozen=True)
class Lease:
    """A hub's lease: its holder, since and until when, and its fencing epoch."""

    hub: str
    epoch: int
    holder: LeaseHolder
    acquired_at: float
    expires_at: float


class Store(Protocol):
    """Durable storage of one task hub."""

    url: str
    hub: str
    #: writes commit only while the hub's lease has this epoch (None: unfenced, e.g. a driver)
    epoch: int | None
    #: called with the FencedError of a refused write, before it is raised
    on_fenced: Callable[[Exception], None] | None
    #: an instance's blob longer than this (bytes) is stored out of line
    payload_inline_limit: int

    def create_instance(
        self, record: InstanceRecord, events: list[bytes], inbox: Sequence[bytes] = ()
    ) -> bool:
        """Insert a new instance (replacing a terminal one of the same id) with its history."""

    def create_instances(self, starts: Sequence[NewInstance]) -> list[bool | DurableError]:
        """Create many instances in one transaction; each start gets its own outcome.

        True: created; False: created by this very start already; an error: refused,
        nothing written for that start (the others are unaffected).
        """

    def load_instance(self, instance_id: str) -> InstanceRecord | None:
        """The instance row, or None."""

    def load_history(self, instance_id: str) -> list[bytes]:
        """The pickled events of the instance's current execution, in order."""

    def load_inbox(self, instance_id: str, after_id: int = 0) -> list[InboxMessage]:
        """Messages for the instance not recorded yet, with ids above ``after_id``, in order."""

    def append_inbox(self, instance_id: str, event: bytes) -> int:
        """Durably accept a message for an instance; returns its id."""

    def append_inbox_if(
        self,
        instance_id: str,
        event: bytes,
        statuses: tuple[str, ...],
        new_status: str | None = None,
        message_id: str | None = None,
    ) -> InstanceRecord | None:
        """Accept a message (and set ``new_status``) only while the status is in ``statuses``.

        Check and write are one transaction. Returns the instance as found (None: unknown
        id); the message was written exactly when the returned status is in ``statuses``.
        """

    def append_inbox_many(self, messages: Sequence[GuardedMessage]) -> list[InstanceRecord | None]:
        """Accept many messages in one transaction, each as ``append_inbox_if`` would."""

    def delete_instance_if(
        self, instance_id: str, statuses: tuple[str, ...]
    ) -> InstanceRecord | None:
        """Remove an instance (as ``delete_instance``) only while its status is in ``statuses``.

        Check and delete are one transaction; returns the instance as found.
        """

    def commit(self, checkpoints: list[Checkpoint]) -> None:
        """Apply checkpoints of one or more instances in one transaction (group commit)."""

    def query(self, query: InstanceQuery) -> list[InstanceRecord]:
        """Instances matching the filters, oldest first."""

    def active_instances(self, host: str | None = None) -> list[InstanceRecord]:
        """Every instance that is not in a terminal status (placed on ``host``, if given)."""

    def children(self, instance_id: str) -> list[InstanceRecord]:
        """Sub-orchestrations started by the instance."""

    def set_status(self, instance_id: str, status: str) -> None:
        """Change only the status (suspend/resume bookkeeping)."""

    def set_host(self, instance_id: str, host: str) -> None:
        """Record which host an instance is placed on."""

    def delete_instance(self, instance_id: str) -> bool:
        """Remove an instance, its history, inbox and timers; True if it existed."""

    def due_timers(self, now: float, limit: int = 1000) -> list[DueTimer]:
        """Timers due at ``now`` or before."""

    def timer_stats(self) -> tuple[int, float | None]:
        """(pending timers, when the earliest is due)."""

    def fire_timers(self, timers: list[DueTimer], messages: list[bytes | None]) -> list[int]:
        """Drop fired timers and queue each one's message (None: none) in one transaction."""

    def register_code(self, kind: str, name: str, version: str, blob: bytes) -> None:
        """Record (or replace) a registered function or class."""

    def load_code(
        self, kind: str, name: str, version: str | None = None
    ) -> tuple[str, bytes] | None:
        """(version, blob) of the named code; the latest registration if no version."""

    def code_names(self, kind: str) -> list[str]:
        """Names registered of ``kind``."""

    def load_entity(self, name: str, key: str) -> tuple[bytes | None, bool, str | None] | None:
        """(state, exists, lock owner) of an entity, or None if it was never stored."""

    def load_sender(self, name: str, key: str, sender: str) -> tuple[int, bytes | None] | None:
        """(last sequence, last result) the entity processed from ``sender``."""

    def commit_entities(self, checkpoints: list[EntityCheckpoint]) -> None:
        """Apply entity operations in one transaction (group commit)."""

    def list_entities(
        self, name: str | None, limit: int, offset: int
    ) -> list[tuple[str, str, bool, float]]:
        """(name, key, exists, last_modified) of stored entities."""

    def clean_entities(self) -> int:
        """Remove entities without state; returns how many."""

    def load_outbox(self, limit: int = 1000) -> list[OutboxMessage]:
        """Undelivered outbox messages, oldest first."""

    def delete_outbox(self, ids: list[int]) -> None:
        """Drop delivered outbox messages."""

    def get_meta(self, key: str) -> str | None:
        """A hub-level setting."""

    def set_meta(self, key: str, value: str) -> None:
        """Store a hub-level setting."""

    def acquire_lease(
        self, holder: LeaseHolder, ttl: float, gone: Callable[[Lease], bool]
    ) -> Lease:
        """Take the hub's lease for ``ttl`` seconds, or raise HubLeaseHeldError.

        Free, expired, or held by a holder that ``gone`` says is dead: the epoch goes up.
        Held by the same Ray cluster (a restarted supervisor): the epoch stays, so that
        cluster's live hosts keep committing.
        """

    def renew_lease(self, epoch: int, ttl: float) -> Lease:
        """Extend the lease of ``epoch`` by ``ttl`` seconds; FencedError if it was taken."""

    def release_lease(self, epoch: int) -> None:
        """Let the lease of ``epoch`` expire now (a clean stop); the epoch stays."""

    def load_lease(self) -> Lease | None:
        """The hub's lease, or None if it never had one."""

    def record_crash(self, work_id: str) -> int:
        """Count one more host death while ``work_id`` ran; returns the count."""

    def forget_crashes(self, work_id: str) -> None:
        """``work_id`` ran to its end: its count starts again from zero."""

    def quarantine_instance(self, cp: Checkpoint, item: Quarantined) -> None:
        """Fail an instance as poison (``cp``) and list it, in one transaction."""

    def dead_letter(self, cp: EntityCheckpoint, item: Quarantined) -> None:
        """Answer an entity operation as poison (``cp``) and list it, in one transaction."""

    def list_quarantined(self) -> list[Quarantined]:
        """Quarantined work, oldest first."""

    def release_quarantined(
        self,
        item_id: str,
        resend: Callable[[Quarantined], list[tuple[str, str, bytes]]] | None,
    ) -> Quarantined | None:
        """Drop an item from the list; with ``resend``, let its work run again (an entity
        operation's rows to queue in the outbox come from ``resend``). None: unknown."""

    def overview(self, since: float) -> HubOverview:
        """Counts for the dashboard's overview; per-minute rates from ``since`` on."""

    def health(self) -> HubHealth:
        """Counts for the hub's health gauges."""

    def close(self) -> None:
        """Release the connection."""
