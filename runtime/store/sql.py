"""The SQL every store shares; a dialect supplies only what differs between databases.

The model is the DBOS system database: one base class holds every statement, written in
the SQL that SQLite and PostgreSQL both speak (``INSERT ... ON CONFLICT``, ``RETURNING``);
a dialect opens the connection, begins a write transaction, retries what its database
says may succeed on a second try, locks rows where its database needs it, and creates or
migrates the schema. The schema has a version (one row per store): an older store is
migrated when opened, a newer one is refused with StoreVersionError.

Blobs above the store's inline limit are kept out of line (``payloads``): the rows that
carry them hold a reference, and every read resolves it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol, TypeVar

from ..errors import (
    DurableError,
    FencedError,
    HubLeaseHeldError,
    InstanceExistsError,
    PayloadMissingError,
    StaleEntityWriteError,
    StoreVersionError,
)
from ..faults import crash_point
from . import payloads as p
from .base import (
    Checkpoint,
    DueTimer,
    EntityCheckpoint,
    GuardedMessage,
    HubHealth,
    HubOverview,
    InboxMessage,
    InstanceQuery,
    InstanceRecord,
    Lease,
    LeaseHolder,
    NewInstance,
    OutboxMessage,
    Quarantined,
)

T = TypeVar("T")

#: An outbox row as its writer gives it: (kind, target, payload).
OutboxRow = tuple[str, str, bytes]

#: The schema this code writes. 1: the tables before versions were kept; 2: the version row;
#: 3: out-of-line payloads; 4: crash counts, quarantined work, the id of each start and of
#: each external event accepted; 5: the indexes of instance listings (keyset paging by
#: creation time, with or without a status filter).
SCHEMA_VERSION = 5

_TERMINAL = ("Completed", "Failed", "Terminated")

_INSTANCE_COLUMNS = (
    "instance_id, name, version, status, execution_id, created_time, last_updated_time, "
    "input, output, custom_status, failure, parent_instance_id, parent_seq, host, "
    "history_length, start_id"
)


class Cursor(Protocol):
    """What a statement returns (DB-API)."""

    rowcount: int

    def fetchone(self) -> Any:
        """The next row, or None."""

    def fetchall(self) -> list[Any]:
        """Every remaining row."""


class Connection(Protocol):
    """The part of a DB-API connection the store uses, with ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        """Run one statement for each row."""

    def commit(self) -> None:
        """End the transaction, keeping its writes."""

    def rollback(self) -> None:
        """End the transaction, dropping its writes."""

    def close(self) -> None:
        """Release the connection."""


class Connections(Protocol):
    """Where a store's statements find a connection: one thread at a time on each."""

    def acquire(self) -> Connection:
        """A connection for one read or one transaction, this thread's until released."""

    def release(self, db: Connection) -> None:
        """Give back a connection ``acquire`` returned (a broken one is dropped)."""

    def close(self) -> None:
        """Release every connection."""


class SharedConnection:
    """One connection that every thread of the store takes in turn (SQLite: one writer)."""

    def __init__(self, db: Connection) -> None:
        self._db = db
        # Reentrant: a thread inside a transaction may read through the same connection.
        self._lock = threading.RLock()

    def acquire(self) -> Connection:
        """The connection, once no other thread holds it."""
        self._lock.acquire()
        return self._db

    def release(self, db: Connection) -> None:
        """Let the next thread have it."""
        self._lock.release()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()


class Dialect:
    """What differs between databases; SqlStore holds everything else."""

    #: Appended to a SELECT inside a write transaction that must hold the rows it read.
    for_update = ""
    #: The column type of bytes.
    blob = "BLOB"
    #: The whole minute (epoch seconds) of a time column, ``{}`` standing for the column:
    #: SQLite truncates a positive REAL cast to INTEGER, which is its floor.
    minute = "CAST({} / 60 AS INTEGER) * 60"

    def connect(self) -> Connection:
        """A connection to the database (autocommit: the store begins its transactions)."""
        raise NotImplementedError

    def connections(self) -> Connections:
        """The store's connections (opening the first one: its errors are the store's)."""
        return SharedConnection(self.connect())

    def begin_write(self, db: Connection) -> None:
        """Begin a transaction that will write."""
        db.execute("BEGIN")

    def retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt``, again while the database says a retry may succeed."""
        return attempt()

    def commit(self, db: Connection) -> None:
        """Commit the write transaction (never re-sent where its fate could be unknown)."""
        db.commit()

    def lost(self, exc: BaseException, url: str) -> Exception | None:
        """The typed error for a write the database dropped (None: ``exc`` is not that)."""
        return None

    def batched(self, db: Connection, blind: bool) -> AbstractContextManager[object]:
        """Around a transaction's statements and its COMMIT: where ``blind``, a dialect may
        send them together instead of one round trip each."""
        return nullcontext()

    def table_names(self, db: Connection) -> set[str]:
        """The tables that exist."""
        raise NotImplementedError

    def create_schema(self) -> list[str]:
        """The statements that create schema version 2 in an empty database (later versions
        are the migrations that follow it, for a new store as for an old one)."""
        raise NotImplementedError

    def lock_schema(self, db: Connection) -> None:
        """Make the schema check and its changes one at a time across hubs (in the write)."""

    def migration(self, to_version: int) -> list[str]:
        """The statements that take a store from ``to_version - 1`` to ``to_version``."""
        if to_version == 2:
            return [SCHEMA_VERSION_TABLE]
        if to_version == 3:
            return [
                "CREATE TABLE IF NOT EXISTS payloads ("
                "hub TEXT NOT NULL, instance_id TEXT NOT NULL, "
                f"digest {self.blob} NOT NULL, data {self.blob} NOT NULL, "
                "PRIMARY KEY (hub, instance_id, digest))"
            ]
        if to_version == 4:
            return [
                "ALTER TABLE instances ADD COLUMN start_id TEXT",
                "CREATE TABLE IF NOT EXISTS crashes (hub TEXT NOT NULL, work_id TEXT NOT NULL, "
                "count INTEGER NOT NULL, last_at REAL NOT NULL, PRIMARY KEY (hub, work_id))",
                "CREATE TABLE IF NOT EXISTS quarantine (hub TEXT NOT NULL, id TEXT NOT NULL, "
                "kind TEXT NOT NULL, target TEXT NOT NULL, crashes INTEGER NOT NULL, "
                "detail TEXT NOT NULL, quarantined_at REAL NOT NULL, operation TEXT, "
                f"sender TEXT, seq BIGINT, input {self.blob}, PRIMARY KEY (hub, id))",
                "CREATE TABLE IF NOT EXISTS delivered (hub TEXT NOT NULL, "
                "instance_id TEXT NOT NULL, message_id TEXT NOT NULL, "
                "PRIMARY KEY (hub, instance_id, message_id))",
            ]
        if to_version == 5:
            # (hub, status, ...) serves every lookup the old (hub, status) index did.
            return [
                "CREATE INDEX IF NOT EXISTS instances_by_created "
                "ON instances (hub, created_time, instance_id)",
                "CREATE INDEX IF NOT EXISTS instances_by_status_created "
                "ON instances (hub, status, created_time, instance_id)",
                "DROP INDEX IF EXISTS instances_by_status",
            ]
        raise NotImplementedError(f"no migration to schema version {to_version}")


#: One row per store (every hub of a store shares its tables).
SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
)


class _SqlBase:
    """Connection, transactions, fencing and the schema; the tables' methods build on it."""

    def __init__(self, url: str, hub: str, dialect: Dialect) -> None:
        self.url = url
        self.hub = hub
        self.dialect = dialect
        self._connections = dialect.connections()
        self.epoch: int | None = None
        self.on_fenced: Callable[[Exception], None] | None = None
        with self._write(fenced=False) as db:
            self._migrate(db)

    def _migrate(self, db: Connection) -> None:
        """Create the schema, or bring an older one up to date; refuse a newer one."""
        self.dialect.lock_schema(db)
        tables = self.dialect.table_names(db)
        if "schema_version" in tables:
            version = int(db.execute("SELECT version FROM schema_version").fetchone()[0])
        else:
            version = 1 if "instances" in tables else 0
        if version > SCHEMA_VERSION:
            raise StoreVersionError(self.url, version, SCHEMA_VERSION)
        if version == SCHEMA_VERSION:
            return
        statements: list[str] = []
        if version == 0:
            statements, version = self.dialect.create_schema(), 2  # version 2's tables
        statements += [
            statement
            for step in range(version + 1, SCHEMA_VERSION + 1)
            for statement in self.dialect.migration(step)
        ]
        for statement in statements:
            db.execute(statement)
        db.execute(
            "INSERT INTO schema_version (id, version) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET version=excluded.version",
            (SCHEMA_VERSION,),
        )

    @contextmanager
    def _write(self, fenced: bool = True, blind: bool = False) -> Iterator[Connection]:
        """A write transaction; ``blind``: its statements mostly read no result, so the
        dialect may send them and the COMMIT together (a fetch still works: it waits for
        the statements before it; ``rowcount`` is not to be trusted there)."""
        db = self.dialect.retrying(self._begin)
        try:
            if fenced and self.epoch is not None:
                self._check_epoch(db, self.epoch)
            with self.dialect.batched(db, blind):
                yield db
                self.dialect.commit(db)
        except BaseException as exc:
            db.rollback()
            if isinstance(exc, FencedError) and self.on_fenced is not None:
                self.on_fenced(exc)
            lost = self.dialect.lost(exc, self.url)
            if lost is not None:
                raise lost from exc
            raise
        finally:
            self._connections.release(db)

    def _begin(self) -> Connection:
        """A connection in a new write transaction (one attempt: ``retrying`` re-runs it)."""
        db = self._connections.acquire()
        try:
            self.dialect.begin_write(db)
        except BaseException:
            self._connections.release(db)
            raise
        return db

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        db = self._connections.acquire()
        try:
            yield db
        finally:
            self._connections.release(db)

    def _check_epoch(self, db: Connection, epoch: int) -> Lease:
        # Inside the write transaction: the lease cannot change before this one commits.
        lease = self._lease(db)
        if lease is None or lease.epoch != epoch:
            raise FencedError(self.hub, epoch, None if lease is None else lease.epoch)
        return lease

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        def attempt() -> list[tuple[Any, ...]]:
            with self._connection() as db:
                return db.execute(sql, params).fetchall()

        return self.dialect.retrying(attempt)

    def _lease(self, db: Connection, locked: bool = True) -> Lease | None:
        row = db.execute(
            "SELECT epoch, host, machine, pid, ray_address, cluster, actor_id, acquired_at, "
            f"expires_at FROM lease WHERE hub=?{self.dialect.for_update if locked else ''}",
            (self.hub,),
        ).fetchone()
        if row is None:
            return None
        return Lease(self.hub, row[0], LeaseHolder(*row[1:7]), row[7], row[8])

    def _add_outbox(self, db: Connection, sender: str, rows: list[tuple[str, str, bytes]]) -> None:
        db.executemany(
            "INSERT INTO outbox (hub, kind, target, payload, sender) VALUES (?,?,?,?,?)",
            [(self.hub, kind, target, payload, sender) for kind, target, payload in rows],
        )

    def close(self) -> None:
        """Release the connections."""
        self._connections.close()


class _Payloads(_SqlBase):
    """Blobs above the inline limit, kept once per instance in ``payloads`` (see payloads.py)."""

    #: A blob longer than this many bytes is stored out of line (open_store sets it).
    payload_inline_limit = p.DEFAULT_INLINE_LIMIT

    def _put(self, db: Connection, iid: str, blob: bytes) -> bytes:
        """What the row of ``iid`` holds for ``blob``: itself, or a reference to it."""
        if not p.needs_outline(blob, self.payload_inline_limit):
            return blob
        digest = p.digest_of(blob)
        db.execute(
            "INSERT INTO payloads (hub, instance_id, digest, data) VALUES (?,?,?,?) "
            "ON CONFLICT DO NOTHING",
            (self.hub, iid, digest, blob),
        )
        return p.reference(digest)

    def _put_opt(self, db: Connection, iid: str, blob: bytes | None) -> bytes | None:
        return None if blob is None else self._put(db, iid, blob)

    def _resolve(self, iid: str, blobs: list[Any], db: Connection | None = None) -> list[Any]:
        """``blobs`` as they were written: each reference replaced by its payload."""
        digests = {d for d in map(p.referenced, blobs) if d is not None}
        if not digests:
            return blobs
        found: dict[bytes, bytes] = {}
        wanted = sorted(digests)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            sql = (
                "SELECT digest, data FROM payloads WHERE hub=? AND instance_id=? "
                f"AND digest IN ({','.join('?' * len(chunk))})"
            )
            params = (self.hub, iid, *chunk)
            rows = db.execute(sql, params).fetchall() if db else self._read(sql, params)
            found.update((bytes(digest), bytes(data)) for digest, data in rows)
        missing = digests - found.keys()
        if missing:
            # Deleted by a purge (or continue-as-new) that committed between two reads.
            raise PayloadMissingError(self.url, iid, min(missing).hex())
        return [blob if (d := p.referenced(blob)) is None else found[d] for blob in blobs]

    def _record(self, row: Sequence[Any], db: Connection | None = None) -> InstanceRecord:
        """An instance row, its payloads resolved."""
        r = InstanceRecord(*row)
        values = [r.input, r.output, r.custom_status, r.failure]
        r.input, r.output, r.custom_status, r.failure = self._resolve(r.instance_id, values, db)
        return r

    def _stored_record(self, db: Connection, r: InstanceRecord) -> InstanceRecord:
        """The row to write for ``r``: its large payloads out of line."""
        iid = r.instance_id
        return dataclasses.replace(
            r,
            input=self._put_opt(db, iid, r.input),
            output=self._put_opt(db, iid, r.output),
            custom_status=self._put_opt(db, iid, r.custom_status),
            failure=self._put_opt(db, iid, r.failure),
        )

    def _forget_execution(self, db: Connection, iid: str) -> None:
        """Drop the payloads of a replaced history, keeping those the inbox and the custom
        status (which outlives continue-as-new) still refer to."""
        key = (self.hub, iid)
        refs = db.execute(
            "SELECT event FROM inbox WHERE hub=? AND instance_id=? AND length(event)=?",
            (*key, p.REF_LENGTH),
        ).fetchall()
        refs += db.execute(
            "SELECT custom_status FROM instances WHERE hub=? AND instance_id=?", key
        ).fetchall()
        keep = {p.referenced(row[0]) for row in refs}
        stored = db.execute("SELECT digest FROM payloads WHERE hub=? AND instance_id=?", key)
        db.executemany(
            "DELETE FROM payloads WHERE hub=? AND instance_id=? AND digest=?",
            [(*key, d) for (d,) in stored.fetchall() if bytes(d) not in keep],
        )


class _InstanceTables(_Payloads):
    """Instances, their histories and their inboxes."""

    # -- instances ----------------------------------------------------------------------

    def create_instance(
        self, record: InstanceRecord, events: list[bytes], inbox: Sequence[bytes] = ()
    ) -> bool:
        """Insert a new instance (replacing a terminal one of the same id) with its history.

        False, writing nothing, if the row was created by this very start (``start_id``):
        a start delivered twice never runs its instance twice, nor replaces its end.
        """
        outcome = self.create_instances([NewInstance(record, events, inbox)])[0]
        if isinstance(outcome, DurableError):
            raise outcome
        return outcome

    def create_instances(self, starts: Sequence[NewInstance]) -> list[bool | DurableError]:
        """Create many instances in one transaction, each as ``create_instance`` would.

        Each start gets its own outcome: True, False (delivered again) or the error that
        refused it, which wrote nothing for that start only.
        """
        outcomes: list[bool | DurableError] = []
        with self._write() as db:
            for start in starts:
                try:
                    outcomes.append(self._create(db, *start))
                except DurableError as exc:  # raised before that start wrote anything
                    outcomes.append(exc)
        return outcomes

    def _create(
        self, db: Connection, record: InstanceRecord, events: list[bytes], inbox: Sequence[bytes]
    ) -> bool:
        row = db.execute(
            f"SELECT status, start_id FROM instances WHERE hub=? AND instance_id=?"
            f"{self.dialect.for_update}",
            (self.hub, record.instance_id),
        ).fetchone()
        if row is not None:
            if record.start_id is not None and row[1] == record.start_id:
                return False
            if row[0] not in _TERMINAL:
                raise InstanceExistsError(record.instance_id, row[0])
            self._delete(db, record.instance_id)
        db.execute(
            f"INSERT INTO instances ({_INSTANCE_COLUMNS}, hub) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (*_record_values(self._stored_record(db, record), len(events)), self.hub),
        )
        self._append(db, record.instance_id, 0, events)
        self._queue(db, [(record.instance_id, blob) for blob in inbox])
        return True

    def load_instance(self, instance_id: str) -> InstanceRecord | None:
        """The instance row, or None."""
        rows = self._read(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE hub=? AND instance_id=?",
            (self.hub, instance_id),
        )
        return self._record(rows[0]) if rows else None

    def load_history(self, instance_id: str) -> list[bytes]:
        """The pickled events of the instance's current execution, in order."""
        rows = self._read(
            "SELECT event FROM history WHERE hub=? AND instance_id=? ORDER BY idx",
            (self.hub, instance_id),
        )
        return self._resolve(instance_id, [row[0] for row in rows])

    def query(self, query: InstanceQuery) -> list[InstanceRecord]:
        """Instances matching the filters, oldest first."""
        where: list[str] = ["hub=?"]
        params: list[object] = [self.hub]
        if query.statuses:
            where.append(f"status IN ({','.join('?' * len(query.statuses))})")
            params.extend(query.statuses)
        if query.created_from is not None:
            where.append("created_time >= ?")
            params.append(query.created_from)
        if query.created_to is not None:
            where.append("created_time <= ?")
            params.append(query.created_to)
        if query.prefix:
            where.append("substr(instance_id, 1, ?) = ?")
            params.extend([len(query.prefix), query.prefix])
        if query.name is not None:
            where.append("name = ?")
            params.append(query.name)
        # Keyset paging: the next page starts after the last row's (created_time, id),
        # which the (hub, [status,] created_time, instance_id) indexes find without a scan.
        order = "DESC" if query.newest_first else "ASC"
        if query.after is not None:
            # A row value, which both databases seek on (an OR of the two walks the index).
            beyond = "<" if query.newest_first else ">"
            where.append(f"(created_time, instance_id) {beyond} (?, ?)")
            params.extend(query.after)
        sql = (
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE {' AND '.join(where)} "
            f"ORDER BY created_time {order}, instance_id {order}"
        )
        if query.limit is not None:
            sql += f" LIMIT {int(query.limit)} OFFSET {int(query.offset)}"
        return [self._record(row) for row in self._read(sql, tuple(params))]

    def active_instances(self, host: str | None = None) -> list[InstanceRecord]:
        """Every instance that is not in a terminal status (placed on ``host``, if given)."""
        sql = f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE hub=? AND status NOT IN (?,?,?)"
        params: tuple[object, ...] = (self.hub, *_TERMINAL)
        if host is not None:
            sql, params = sql + " AND host=?", (*params, host)
        return [self._record(row) for row in self._read(sql, params)]

    def children(self, instance_id: str) -> list[InstanceRecord]:
        """Sub-orchestrations started by the instance."""
        rows = self._read(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE hub=? AND parent_instance_id=?",
            (self.hub, instance_id),
        )
        return [self._record(row) for row in rows]

    def set_host(self, instance_id: str, host: str) -> None:
        """Record which host an instance is placed on."""
        with self._write() as db:
            db.execute(
                "UPDATE instances SET host=? WHERE hub=? AND instance_id=?",
                (host, self.hub, instance_id),
            )

    def set_status(self, instance_id: str, status: str) -> None:
        """Change only the status (suspend/resume bookkeeping)."""
        with self._write() as db:
            db.execute(
                "UPDATE instances SET status=?, last_updated_time=? WHERE hub=? AND instance_id=?",
                (status, time.time(), self.hub, instance_id),
            )

    def delete_instance(self, instance_id: str) -> bool:
        """Remove an instance, its history, inbox and timers; True if it existed."""
        with self._write() as db:
            return self._delete(db, instance_id)

    def _delete(self, db: Connection, instance_id: str) -> bool:
        key = (self.hub, instance_id)
        for table in ("history", "inbox", "timers", "payloads", "delivered"):
            db.execute(f"DELETE FROM {table} WHERE hub=? AND instance_id=?", key)
        return db.execute("DELETE FROM instances WHERE hub=? AND instance_id=?", key).rowcount > 0

    # -- the hot path -------------------------------------------------------------------

    def commit(self, checkpoints: list[Checkpoint]) -> None:
        """Apply checkpoints of one or more instances in one transaction (group commit)."""
        now = time.time()
        with self._write(blind=True) as db:
            for i, cp in enumerate(checkpoints):
                if i == 1:
                    crash_point("store.mid_group_commit", self.hub)
                self._apply(db, cp, now)

    def _apply(self, db: Connection, cp: Checkpoint, now: float) -> None:
        iid = cp.instance_id
        if cp.replace_history:
            db.execute("DELETE FROM history WHERE hub=? AND instance_id=?", (self.hub, iid))
            db.execute("DELETE FROM timers WHERE hub=? AND instance_id=?", (self.hub, iid))
            self._forget_execution(db, iid)
            db.execute(
                "UPDATE instances SET execution_id=?, input=?, output=NULL, failure=NULL "
                "WHERE hub=? AND instance_id=?",
                (cp.execution_id, self._put_opt(db, iid, cp.input), self.hub, iid),
            )
        self._append(db, iid, cp.first_index, cp.events)
        sets = ["last_updated_time=?", "history_length=?"]
        params: list[object] = [now, cp.first_index + len(cp.events)]
        for column in ("status", "output", "failure", "custom_status"):
            value = getattr(cp, column)
            if value is not None:
                sets.append(f"{column}=?")
                params.append(value if column == "status" else self._put(db, iid, value))
        db.execute(
            f"UPDATE instances SET {', '.join(sets)} WHERE hub=? AND instance_id=?",
            (*params, self.hub, iid),
        )
        if cp.consumed_inbox:
            db.executemany(
                "DELETE FROM inbox WHERE id=?", [(msg_id,) for msg_id in cp.consumed_inbox]
            )
        if cp.status in _TERMINAL:
            # An ended instance's earlier timers (a cancelled timeout) would otherwise wait
            # in the table until they are due, hours later, only to be dropped then.
            db.execute("DELETE FROM timers WHERE hub=? AND instance_id=?", (self.hub, iid))
        db.executemany(
            "INSERT INTO timers (hub, instance_id, execution_id, seq, fire_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
            [(self.hub, iid, cp.execution_id, seq, at) for seq, at in cp.timers],
        )
        self._queue(db, cp.outgoing)
        self._add_outbox(db, iid, cp.outbox)

    def _append(self, db: Connection, iid: str, first: int, events: list[bytes]) -> None:
        db.executemany(
            "INSERT INTO history (hub, instance_id, idx, event) VALUES (?,?,?,?)",
            [(self.hub, iid, first + i, self._put(db, iid, blob)) for i, blob in enumerate(events)],
        )

    def _queue(self, db: Connection, messages: Sequence[tuple[str, bytes]]) -> None:
        """Inbox rows: (instance, event)."""
        db.executemany(
            "INSERT INTO inbox (hub, instance_id, event) VALUES (?,?,?)",
            [(self.hub, target, self._put(db, target, blob)) for target, blob in messages],
        )

    # -- inbox --------------------------------------------------------------------------

    def load_inbox(self, instance_id: str, after_id: int = 0) -> list[InboxMessage]:
        """Messages for the instance not recorded yet, with ids above ``after_id``, in order."""
        rows = self._read(
            "SELECT id, instance_id, event FROM inbox WHERE hub=? AND instance_id=? AND id>? "
            "ORDER BY id",
            (self.hub, instance_id, after_id),
        )
        events = self._resolve(instance_id, [row[2] for row in rows])
        return [InboxMessage(row[0], row[1], event) for row, event in zip(rows, events)]

    def append_inbox(self, instance_id: str, event: bytes) -> int:
        """Durably accept a message for an instance; returns its id."""
        with self._write() as db:
            row = db.execute(
                "INSERT INTO inbox (hub, instance_id, event) VALUES (?,?,?) RETURNING id",
                (self.hub, instance_id, self._put(db, instance_id, event)),
            ).fetchone()
            return int(row[0])

    def append_inbox_if(
        self,
        instance_id: str,
        event: bytes,
        statuses: tuple[str, ...],
        new_status: str | None = None,
        message_id: str | None = None,
    ) -> InstanceRecord | None:
        """Accept a message (and set ``new_status``) only while the status is in ``statuses``.

        A ``message_id`` already accepted for the instance is this very message again (a
        retry): nothing is written, and the record comes back as if it took it.
        """
        message = GuardedMessage(instance_id, event, statuses, new_status, message_id)
        return self.append_inbox_many([message])[0]

    def append_inbox_many(self, messages: Sequence[GuardedMessage]) -> list[InstanceRecord | None]:
        """Accept many messages in one transaction, each as ``append_inbox_if`` would."""
        # One transaction: a completion committed by a host cannot slip between the check
        # and the write. The caller reads the answer from the record returned (as found).
        with self._write() as db:
            return [self._append_if(db, message) for message in messages]

    def _append_if(self, db: Connection, message: GuardedMessage) -> InstanceRecord | None:
        instance_id, event, statuses, new_status, message_id = message
        record = self._locked_instance(db, instance_id)
        if record is not None and message_id is not None:
            key = (self.hub, instance_id, message_id)
            seen = db.execute(
                "SELECT 1 FROM delivered WHERE hub=? AND instance_id=? AND message_id=?", key
            ).fetchone()
            if seen is not None:
                return dataclasses.replace(record, status=statuses[0])
            if record.status in statuses:
                db.execute(
                    "INSERT INTO delivered (hub, instance_id, message_id) VALUES (?,?,?)", key
                )
        if record is None or record.status not in statuses:
            return record
        if new_status is not None:
            db.execute(
                "UPDATE instances SET status=?, last_updated_time=? WHERE hub=? AND instance_id=?",
                (new_status, time.time(), self.hub, instance_id),
            )
        self._queue(db, [(instance_id, event)])
        return record

    def delete_instance_if(
        self, instance_id: str, statuses: tuple[str, ...]
    ) -> InstanceRecord | None:
        """Remove an instance (as ``delete_instance``) only while its status is in ``statuses``."""
        with self._write() as db:
            record = self._locked_instance(db, instance_id)
            if record is not None and record.status in statuses:
                self._delete(db, instance_id)
            return record

    def _locked_instance(self, db: Connection, instance_id: str) -> InstanceRecord | None:
        row = db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE hub=? AND instance_id=?"
            f"{self.dialect.for_update}",
            (self.hub, instance_id),
        ).fetchone()
        return None if row is None else self._record(row, db)


class _EntityTables(_Payloads):
    """Durable timers, entities, their senders and the outbox."""

    # -- timers -------------------------------------------------------------------------

    def due_timers(self, now: float, limit: int = 1000) -> list[DueTimer]:
        """Timers due at ``now`` or before."""
        rows = self._read(
            "SELECT instance_id, execution_id, seq, fire_at FROM timers "
            "WHERE hub=? AND fire_at <= ? ORDER BY fire_at LIMIT ?",
            (self.hub, now, limit),
        )
        return [DueTimer(*row) for row in rows]

    def timer_stats(self) -> tuple[int, float | None]:
        """(pending timers, when the earliest is due)."""
        rows = self._read("SELECT COUNT(*), MIN(fire_at) FROM timers WHERE hub=?", (self.hub,))
        return rows[0][0], rows[0][1]

    def fire_timers(self, timers: list[DueTimer], messages: list[bytes | None]) -> list[int]:
        """Drop fired timers and queue each one's message (None: none) in one transaction."""
        ids = []
        with self._write() as db:
            for timer, blob in zip(timers, messages):
                db.execute(
                    "DELETE FROM timers WHERE hub=? AND instance_id=? AND execution_id=? AND seq=?",
                    (self.hub, timer.instance_id, timer.execution_id, timer.seq),
                )
                if blob is not None:
                    row = db.execute(
                        "INSERT INTO inbox (hub, instance_id, event) VALUES (?,?,?) RETURNING id",
                        (self.hub, timer.instance_id, self._put(db, timer.instance_id, blob)),
                    ).fetchone()
                    ids.append(int(row[0]))
        return ids

    # -- entities -----------------------------------------------------------------------

    def load_entity(self, name: str, key: str) -> tuple[bytes | None, bool, str | None] | None:
        """(state, exists, lock owner) of an entity, or None if it was never stored."""
        rows = self._read(
            "SELECT state, exists_, locked_by FROM entities WHERE hub=? AND name=? AND key=?",
            (self.hub, name, key),
        )
        return (rows[0][0], bool(rows[0][1]), rows[0][2]) if rows else None

    def load_sender(self, name: str, key: str, sender: str) -> tuple[int, bytes | None] | None:
        """(last sequence, last result) the entity processed from ``sender``."""
        rows = self._read(
            "SELECT last_seq, last_result FROM entity_senders "
            "WHERE hub=? AND name=? AND key=? AND sender=?",
            (self.hub, name, key, sender),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def commit_entities(self, checkpoints: list[EntityCheckpoint]) -> None:
        """Apply entity operations in one transaction (group commit)."""
        with self._write(blind=True) as db:
            self._write_entities(db, checkpoints, time.time())

    def _write_entities(
        self, db: Connection, checkpoints: list[EntityCheckpoint], now: float
    ) -> None:
        # Of a batch's operations on one entity, only the last state and each sender's
        # last number outlive the transaction: one row each, however many operations.
        states = {(cp.name, cp.key): cp for cp in checkpoints if cp.state_changed}
        senders = {(cp.name, cp.key, cp.sender): cp for cp in checkpoints}
        self._check_senders(db, checkpoints)
        db.executemany(
            "INSERT INTO entities (hub, name, key, state, exists_, last_modified, "
            "locked_by) VALUES (?,?,?,?,?,?,?) ON CONFLICT (hub, name, key) DO UPDATE "
            "SET state=excluded.state, exists_=excluded.exists_, "
            "last_modified=excluded.last_modified, locked_by=excluded.locked_by",
            [
                (self.hub, cp.name, cp.key, cp.state, int(cp.exists), now, cp.locked_by)
                for cp in states.values()
            ],
        )
        db.executemany(
            "INSERT INTO entity_senders (hub, name, key, sender, last_seq, last_result) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (hub, name, key, sender) DO UPDATE "
            "SET last_seq=excluded.last_seq, last_result=excluded.last_result",
            [(self.hub, cp.name, cp.key, cp.sender, cp.seq, cp.result) for cp in senders.values()],
        )
        for cp in checkpoints:
            self._add_outbox(db, f"{cp.name}@{cp.key}", cp.outbox)

    def _check_senders(self, db: Connection, checkpoints: list[EntityCheckpoint]) -> None:
        """Refuse the batch if a sender's stored number is not the one its writer read.

        The host keeps each sender's number in memory; only this check, inside the write
        transaction, makes a second writer of the same entity (a host cut off from the
        cluster beside its successor) fail instead of applying an operation twice.
        """
        expected: dict[tuple[str, str, str], int] = {}
        for cp in checkpoints:
            if cp.prev_seq is not None:
                expected.setdefault((cp.name, cp.key, cp.sender), cp.prev_seq)
        keys = list(expected)
        for start in range(0, len(keys), 300):
            chunk = keys[start : start + 300]
            rows = db.execute(
                "SELECT name, key, sender, last_seq FROM entity_senders WHERE hub=? AND "
                f"(name, key, sender) IN (VALUES {','.join(['(?,?,?)'] * len(chunk))})"
                f"{self.dialect.for_update}",
                (self.hub, *[part for key in chunk for part in key]),
            ).fetchall()
            stored = {(r[0], r[1], r[2]): int(r[3]) for r in rows}
            for key in chunk:
                if stored.get(key, 0) != expected[key]:
                    name, entity_key, sender = key
                    found = stored.get(key, 0)
                    raise StaleEntityWriteError(
                        f"{name}@{entity_key}", sender, expected[key], found
                    )

    def list_entities(
        self, name: str | None, limit: int, offset: int
    ) -> list[tuple[str, str, bool, float]]:
        """(name, key, exists, last_modified) of stored entities."""
        where, params = "hub=?", [self.hub]
        if name is not None:
            where += " AND name=?"
            params.append(name)
        rows = self._read(
            f"SELECT name, key, exists_, last_modified FROM entities WHERE {where} "
            "ORDER BY name, key LIMIT ? OFFSET ?",
            (*params, int(limit), int(offset)),
        )
        return [(r[0], r[1], bool(r[2]), r[3]) for r in rows]

    def clean_entities(self) -> int:
        """Remove entities without state; returns how many."""
        with self._write() as db:
            empty = db.execute(
                "SELECT name, key FROM entities WHERE hub=? AND exists_=0 AND locked_by IS NULL",
                (self.hub,),
            ).fetchall()
            for name, key in empty:
                db.execute(
                    "DELETE FROM entities WHERE hub=? AND name=? AND key=?", (self.hub, name, key)
                )
                db.execute(
                    "DELETE FROM entity_senders WHERE hub=? AND name=? AND key=?",
                    (self.hub, name, key),
                )
            return len(empty)

    def load_outbox(self, limit: int = 1000) -> list[OutboxMessage]:
        """Undelivered outbox messages, oldest first."""
        rows = self._read(
            "SELECT id, kind, target, payload, sender FROM outbox WHERE hub=? ORDER BY id LIMIT ?",
            (self.hub, limit),
        )
        return [OutboxMessage(*row) for row in rows]

    def delete_outbox(self, ids: list[int]) -> None:
        """Drop delivered outbox messages."""
        with self._write() as db:
            db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in ids])


#: The quarantine table's columns, in the order of ``Quarantined``'s fields.
_QUARANTINE_COLUMNS = (
    "id, kind, target, crashes, detail, quarantined_at, operation, sender, seq, input"
)


class _QuarantineTables(_InstanceTables, _EntityTables):
    """Crash counts of work that was running when its host died, and work set aside."""

    def record_crash(self, work_id: str) -> int:
        """Count one more host death while ``work_id`` ran; returns the count."""
        with self._write() as db:
            row = db.execute(
                "INSERT INTO crashes (hub, work_id, count, last_at) VALUES (?,?,1,?) "
                "ON CONFLICT (hub, work_id) DO UPDATE SET count=crashes.count+1, "
                "last_at=excluded.last_at RETURNING count",
                (self.hub, work_id, time.time()),
            ).fetchone()
            return int(row[0])

    def forget_crashes(self, work_id: str) -> None:
        """``work_id`` ran to its end: its count starts again from zero."""
        with self._write() as db:
            db.execute("DELETE FROM crashes WHERE hub=? AND work_id=?", (self.hub, work_id))

    def quarantine_instance(self, cp: Checkpoint, item: Quarantined) -> None:
        """Fail an instance as poison (``cp``) and list it, in one transaction."""
        with self._write() as db:
            self._apply(db, cp, time.time())
            self._list(db, item)

    def dead_letter(self, cp: EntityCheckpoint, item: Quarantined) -> None:
        """Answer an entity operation as poison (``cp``) and list it, in one transaction."""
        with self._write() as db:
            self._write_entities(db, [cp], time.time())
            self._list(db, item)

    def _list(self, db: Connection, item: Quarantined) -> None:
        db.execute("DELETE FROM crashes WHERE hub=? AND work_id=?", (self.hub, item.id))
        db.execute(
            f"INSERT INTO quarantine (hub, {_QUARANTINE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (hub, id) DO NOTHING",
            (self.hub, *dataclasses.astuple(item)),
        )

    def list_quarantined(self) -> list[Quarantined]:
        """Quarantined work, oldest first."""
        rows = self._read(
            f"SELECT {_QUARANTINE_COLUMNS} FROM quarantine WHERE hub=? ORDER BY quarantined_at, id",
            (self.hub,),
        )
        return [_quarantined(row) for row in rows]

    def release_quarantined(
        self, item_id: str, resend: Callable[[Quarantined], list[OutboxRow]] | None
    ) -> Quarantined | None:
        """Drop an item from the list; with ``resend``, let its work run again. None: unknown.

        Retrying an instance makes it Running again from its checkpoint (quarantine wrote
        no history event); retrying an entity operation queues the outbox rows ``resend``
        builds for it (a signal), in the same transaction.
        """
        with self._write() as db:
            row = db.execute(
                f"SELECT {_QUARANTINE_COLUMNS} FROM quarantine WHERE hub=? AND id=?"
                f"{self.dialect.for_update}",
                (self.hub, item_id),
            ).fetchone()
            if row is None:
                return None
            item = _quarantined(row)
            db.execute("DELETE FROM quarantine WHERE hub=? AND id=?", (self.hub, item_id))
            if resend is not None and item.kind == "orchestration":
                db.execute(
                    "UPDATE instances SET status='Running', failure=NULL, output=NULL, "
                    "last_updated_time=? WHERE hub=? AND instance_id=? AND status='Failed'",
                    (time.time(), self.hub, item.target),
                )
            elif resend is not None:
                self._add_outbox(db, "quarantine", resend(item))
            return item

    def health(self) -> HubHealth:
        """Counts for the hub's health gauges."""
        key = (self.hub,)
        quarantined = self._read("SELECT COUNT(*) FROM quarantine WHERE hub=?", key)[0][0]
        outbox = self._read("SELECT COUNT(*) FROM outbox WHERE hub=?", key)[0][0]
        oldest = self._read(
            "SELECT MIN(created_time) FROM instances WHERE hub=? AND status='Pending'", key
        )[0][0]
        return HubHealth(int(quarantined), int(outbox), oldest)


def _quarantined(row: Sequence[Any]) -> Quarantined:
    item_id, kind, target, crashes, detail, at, operation, sender, seq, input_blob = row
    blob = None if input_blob is None else bytes(input_blob)
    return Quarantined(item_id, kind, target, crashes, detail, at, operation, sender, seq, blob)


class _HubTables(_SqlBase):
    """The code registry, hub settings and the hub's lease."""

    # -- code registry and settings ---------------------------------------------------------

    def register_code(self, kind: str, name: str, version: str, blob: bytes) -> None:
        """Record (or replace) a registered function or class."""
        with self._write() as db:
            db.execute(
                "INSERT INTO code (hub, kind, name, version, blob, registered) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT (hub, kind, name, version) DO UPDATE "
                "SET blob=excluded.blob, registered=excluded.registered",
                (self.hub, kind, name, version, blob, time.time()),
            )

    def load_code(
        self, kind: str, name: str, version: str | None = None
    ) -> tuple[str, bytes] | None:
        """(version, blob) of the named code; the latest registration if no version."""
        if version is None:
            rows = self._read(
                "SELECT version, blob FROM code WHERE hub=? AND kind=? AND name=? "
                "ORDER BY registered DESC LIMIT 1",
                (self.hub, kind, name),
            )
        else:
            rows = self._read(
                "SELECT version, blob FROM code WHERE hub=? AND kind=? AND name=? AND version=?",
                (self.hub, kind, name, version),
            )
        return (rows[0][0], rows[0][1]) if rows else None

    def code_names(self, kind: str) -> list[str]:
        """Names registered of ``kind``."""
        rows = self._read(
            "SELECT DISTINCT name FROM code WHERE hub=? AND kind=? ORDER BY name", (self.hub, kind)
        )
        return [row[0] for row in rows]

    def get_meta(self, key: str) -> str | None:
        """A hub-level setting."""
        rows = self._read("SELECT value FROM meta WHERE hub=? AND key=?", (self.hub, key))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        """Store a hub-level setting."""
        with self._write() as db:
            db.execute(
                "INSERT INTO meta (hub, key, value) VALUES (?,?,?) "
                "ON CONFLICT (hub, key) DO UPDATE SET value=excluded.value",
                (self.hub, key, value),
            )

    # -- the hub's lease ---------------------------------------------------------------

    def acquire_lease(
        self, holder: LeaseHolder, ttl: float, gone: Callable[[Lease], bool]
    ) -> Lease:
        """Take the hub's lease for ``ttl`` seconds, or raise HubLeaseHeldError."""
        with self._write(fenced=False) as db:
            now = time.time()
            current = self._lease(db)
            if current is None:
                epoch = 1
            elif current.holder.cluster == holder.cluster:
                epoch = current.epoch
            elif current.expires_at <= now or gone(current):
                epoch = current.epoch + 1
            else:
                h = current.holder
                raise HubLeaseHeldError(
                    self.hub,
                    self.url,
                    h.host,
                    h.pid,
                    h.ray_address,
                    current.acquired_at,
                    current.expires_at,
                )
            lease = Lease(self.hub, epoch, holder, now, now + ttl)
            db.execute(
                "INSERT INTO lease (hub, epoch, host, machine, pid, ray_address, cluster, "
                "actor_id, acquired_at, expires_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (hub) DO UPDATE SET epoch=excluded.epoch, host=excluded.host, "
                "machine=excluded.machine, pid=excluded.pid, ray_address=excluded.ray_address, "
                "cluster=excluded.cluster, actor_id=excluded.actor_id, "
                "acquired_at=excluded.acquired_at, expires_at=excluded.expires_at",
                (
                    self.hub,
                    epoch,
                    *dataclasses.astuple(holder),
                    lease.acquired_at,
                    lease.expires_at,
                ),
            )
        return lease

    def renew_lease(self, epoch: int, ttl: float) -> Lease:
        """Extend the lease of ``epoch`` by ``ttl`` seconds; FencedError if it was taken."""
        with self._write(fenced=False) as db:
            lease = dataclasses.replace(self._check_epoch(db, epoch), expires_at=time.time() + ttl)
            db.execute("UPDATE lease SET expires_at=? WHERE hub=?", (lease.expires_at, self.hub))
        return lease

    def release_lease(self, epoch: int) -> None:
        """Let the lease of ``epoch`` expire now (a clean stop); the epoch stays."""
        with self._write(fenced=False) as db:
            db.execute(
                "UPDATE lease SET expires_at=? WHERE hub=? AND epoch=?",
                (time.time(), self.hub, epoch),
            )

    def load_lease(self) -> Lease | None:
        """The hub's lease, or None if it never had one."""

        def attempt() -> Lease | None:
            with self._connection() as db:
                return self._lease(db, locked=False)

        return self.dialect.retrying(attempt)


class SqlStore(_QuarantineTables, _HubTables):
    """A hub's store on a SQL database; the dialect adapts it to one database."""

    def overview(self, since: float) -> HubOverview:
        """Counts for the dashboard's overview; per-minute rates from ``since`` on."""
        key = (self.hub,)
        by_status = self._read(
            "SELECT status, COUNT(*) FROM instances WHERE hub=? GROUP BY status", key
        )
        minute = self.dialect.minute
        started = self._read(
            f"SELECT {minute.format('created_time')}, COUNT(*) FROM instances "
            "WHERE hub=? AND created_time >= ? GROUP BY 1",
            (self.hub, since),
        )
        finished = self._read(
            f"SELECT {minute.format('last_updated_time')}, COUNT(*) FROM instances "
            f"WHERE hub=? AND last_updated_time >= ? AND status IN (?,?,?) GROUP BY 1",
            (self.hub, since, *_TERMINAL),
        )
        entities = self._read(
            "SELECT name, COUNT(*) FROM entities WHERE hub=? AND exists_=1 GROUP BY name", key
        )
        hosts = self._read(
            "SELECT COALESCE(host, ''), COUNT(*) FROM instances "
            "WHERE hub=? AND status NOT IN (?,?,?) GROUP BY 1",
            (self.hub, *_TERMINAL),
        )
        pending, next_timer = self.timer_stats()
        return HubOverview(
            by_status={str(s): int(n) for s, n in by_status},
            started_per_minute={int(m): int(n) for m, n in started},
            finished_per_minute={int(m): int(n) for m, n in finished},
            entities_by_name={str(e): int(n) for e, n in entities},
            live_by_host={str(h): int(n) for h, n in hosts},
            pending_timers=int(pending),
            next_timer=next_timer,
            health=self.health(),
            lease=self.load_lease(),
        )


def _record_values(record: InstanceRecord, history_length: int) -> tuple[object, ...]:
    return (
        record.instance_id,
        record.name,
        record.version,
        record.status,
        record.execution_id,
        record.created_time,
        record.last_updated_time,
        record.input,
        record.output,
        record.custom_status,
        record.failure,
        record.parent_instance_id,
        record.parent_seq,
        record.host,
        history_length,
        record.start_id,
    )
