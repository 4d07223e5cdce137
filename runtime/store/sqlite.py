"""The default store: one SQLite file in WAL mode, shared by every process of the hub."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from ..errors import FencedError, HubConfigError, HubLeaseHeldError, InstanceExistsError
from .base import (
    Checkpoint,
    DueTimer,
    EntityCheckpoint,
    InboxMessage,
    InstanceQuery,
    InstanceRecord,
    Lease,
    LeaseHolder,
    OutboxMessage,
)

T = TypeVar("T")

#: How long a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT_SECONDS = 60.0

_TERMINAL = ("Completed", "Failed", "Terminated")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    hub TEXT NOT NULL, instance_id TEXT NOT NULL,
    name TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    created_time REAL NOT NULL, last_updated_time REAL NOT NULL,
    input BLOB, output BLOB, custom_status BLOB, failure BLOB,
    parent_instance_id TEXT, parent_seq INTEGER, host TEXT,
    history_length INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hub, instance_id)
);
CREATE INDEX IF NOT EXISTS instances_by_status ON instances (hub, status);
CREATE INDEX IF NOT EXISTS instances_by_host ON instances (hub, host);
CREATE TABLE IF NOT EXISTS history (
    hub TEXT NOT NULL, instance_id TEXT NOT NULL, idx INTEGER NOT NULL, event BLOB NOT NULL,
    PRIMARY KEY (hub, instance_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hub TEXT NOT NULL, instance_id TEXT NOT NULL, event BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_by_instance ON inbox (hub, instance_id);
CREATE TABLE IF NOT EXISTS timers (
    hub TEXT NOT NULL, instance_id TEXT NOT NULL, execution_id TEXT NOT NULL,
    seq INTEGER NOT NULL, fire_at REAL NOT NULL,
    PRIMARY KEY (hub, instance_id, execution_id, seq)
);
CREATE INDEX IF NOT EXISTS timers_by_time ON timers (hub, fire_at);
CREATE TABLE IF NOT EXISTS code (
    hub TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    blob BLOB NOT NULL, registered REAL NOT NULL,
    PRIMARY KEY (hub, kind, name, version)
);
CREATE TABLE IF NOT EXISTS entities (
    hub TEXT NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL, state BLOB,
    exists_ INTEGER NOT NULL, last_modified REAL NOT NULL, locked_by TEXT,
    PRIMARY KEY (hub, name, key)
);
CREATE TABLE IF NOT EXISTS entity_senders (
    hub TEXT NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL, sender TEXT NOT NULL,
    last_seq INTEGER NOT NULL, last_result BLOB,
    PRIMARY KEY (hub, name, key, sender)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hub TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, payload BLOB NOT NULL,
    sender TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    hub TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (hub, key)
);
CREATE TABLE IF NOT EXISTS lease (
    hub TEXT NOT NULL PRIMARY KEY, epoch INTEGER NOT NULL,
    host TEXT NOT NULL, machine TEXT NOT NULL, pid INTEGER NOT NULL,
    ray_address TEXT NOT NULL, cluster TEXT NOT NULL, actor_id TEXT NOT NULL,
    acquired_at REAL NOT NULL, expires_at REAL NOT NULL
);
"""

_INSTANCE_COLUMNS = (
    "instance_id, name, version, status, execution_id, created_time, last_updated_time, "
    "input, output, custom_status, failure, parent_instance_id, parent_seq, host, "
    "history_length"
)


class SqliteStore:
    """Store on one SQLite file; safe to open from many processes at once."""

    def __init__(self, url: str, hub: str, durability: str = "fsync") -> None:
        if durability not in ("fsync", "process"):
            raise HubConfigError(f"durability must be 'fsync' or 'process', not {durability!r}")
        self.url = url
        self.hub = hub
        self.path = url[len("sqlite:///") :]
        if not self.path:
            raise HubConfigError(f"store URL {url!r} names no file")
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self._lock = threading.RLock()
        # No busy timeout: SQLite's own handler sleeps at least a millisecond per try, more
        # than a whole fsync'd commit of the process holding the lock; _busy retries sooner.
        self._db = sqlite3.connect(
            self.path, timeout=0.0, isolation_level=None, check_same_thread=False
        )
        self._busy(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
        # fsync: a commit survives power loss; process: it survives a killed process only.
        sync = "FULL" if durability == "fsync" else "NORMAL"
        self._db.execute(f"PRAGMA synchronous={sync}")
        self.epoch: int | None = None
        self.on_fenced: Callable[[Exception], None] | None = None
        with self._write() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    @staticmethod
    def _busy(attempt: Callable[[], T]) -> T:
        """Run ``attempt``, retrying while another process holds the database."""
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        pause = 0.0001
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                message = str(exc)
                if "locked" not in message and "busy" not in message:
                    raise
                if time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    @contextmanager
    def _write(self, fenced: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            # IMMEDIATE takes the write lock up front: no deadlock on a read->write upgrade.
            self._busy(lambda: self._db.execute("BEGIN IMMEDIATE"))
            try:
                if fenced and self.epoch is not None:
                    self._check_epoch(self.epoch)
                yield self._db
            except BaseException as exc:
                self._db.execute("ROLLBACK")
                if isinstance(exc, FencedError) and self.on_fenced is not None:
                    self.on_fenced(exc)
                raise
            self._busy(lambda: self._db.execute("COMMIT"))

    def _check_epoch(self, epoch: int) -> Lease:
        # Inside the write transaction: the lease cannot change before this one commits.
        lease = self._lease()
        if lease is None or lease.epoch != epoch:
            raise FencedError(self.hub, epoch, None if lease is None else lease.epoch)
        return lease

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._busy(lambda: self._db.execute(sql, params).fetchall())

    # -- instances ----------------------------------------------------------------------

    def create_instance(
        self, record: InstanceRecord, events: list[bytes], inbox: Sequence[bytes] = ()
    ) -> None:
        """Insert a new instance (replacing a terminal one of the same id) with its history."""
        with self._write() as db:
            row = db.execute(
                "SELECT status FROM instances WHERE hub=? AND instance_id=?",
                (self.hub, record.instance_id),
            ).fetchone()
            if row is not None:
                if row[0] not in _TERMINAL:
                    raise InstanceExistsError(record.instance_id, row[0])
                self._delete(db, record.instance_id)
            db.execute(
                f"INSERT INTO instances ({_INSTANCE_COLUMNS}, hub) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*_record_values(record, len(events)), self.hub),
            )
            self._append(db, record.instance_id, 0, events)
            db.executemany(
                "INSERT INTO inbox (hub, instance_id, event) VALUES (?,?,?)",
                [(self.hub, record.instance_id, blob) for blob in inbox],
            )

    def load_instance(self, instance_id: str) -> InstanceRecord | None:
        """The instance row, or None."""
        rows = self._read(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE hub=? AND instance_id=?",
            (self.hub, instance_id),
        )
        return InstanceRecord(*rows[0]) if rows else None

    def load_history(self, instance_id: str) -> list[bytes]:
        """The pickled events of the instance's current execution, in order."""
        rows = self._read(
            "SELECT event FROM history WHERE hub=? AND instance_id=? ORDER BY idx",
            (self.hub, instance_id),
        )
        return [row[0] for row in rows]

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
        sql = (
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE {' AND '.join(where)} "
            "ORDER BY created_time, instance_id"
        )
        if query.limit is not None:
            sql += f" LIMIT {int(query.limit)} OFFSET {int(query.offset)}"
        return [InstanceRecord(*row) for row in self._read(sql, tuple(params))]

    def active_instances(self, host: str | None = None) -> list[InstanceRecord]:
        """Every instance that is not in a terminal status (placed on ``host``, if given)."""
        sql = f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE hub=? AND status NOT IN (?,?,?)"
        params: tuple[object, ...] = (self.hub, *_TERMINAL)
        if host is not None:
            sql, params = sql + " AND host=?", (*params, host)
        return [InstanceRecord(*row) for row in self._read(sql, params)]

    def children(self, instance_id: str) -> list[InstanceRecord]:
        """Sub-orchestrations started by the instance."""
        rows = self._read(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE hub=? AND parent_instance_id=?",
            (self.hub, instance_id),
        )
        return [InstanceRecord(*row) for row in rows]

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

    def _delete(self, db: sqlite3.Connection, instance_id: str) -> bool:
        key = (self.hub, instance_id)
        for table in ("history", "inbox", "timers"):
            db.execute(f"DELETE FROM {table} WHERE hub=? AND instance_id=?", key)
        return db.execute("DELETE FROM instances WHERE hub=? AND instance_id=?", key).rowcount > 0

    # -- the hot path -------------------------------------------------------------------

    def commit(self, checkpoints: list[Checkpoint]) -> None:
        """Apply checkpoints of one or more instances in one transaction (group commit)."""
        now = time.time()
        with self._write() as db:
            for cp in checkpoints:
                self._apply(db, cp, now)

    def _apply(self, db: sqlite3.Connection, cp: Checkpoint, now: float) -> None:
        iid = cp.instance_id
        if cp.replace_history:
            db.execute("DELETE FROM history WHERE hub=? AND instance_id=?", (self.hub, iid))
            db.execute("DELETE FROM timers WHERE hub=? AND instance_id=?", (self.hub, iid))
            db.execute(
                "UPDATE instances SET execution_id=?, input=?, output=NULL, failure=NULL "
                "WHERE hub=? AND instance_id=?",
                (cp.execution_id, cp.input, self.hub, iid),
            )
        self._append(db, iid, cp.first_index, cp.events)
        sets = ["last_updated_time=?", "history_length=?"]
        params: list[object] = [now, cp.first_index + len(cp.events)]
        for column in ("status", "output", "failure", "custom_status"):
            value = getattr(cp, column)
            if value is not None:
                sets.append(f"{column}=?")
                params.append(value)
        db.execute(
            f"UPDATE instances SET {', '.join(sets)} WHERE hub=? AND instance_id=?",
            (*params, self.hub, iid),
        )
        if cp.consumed_inbox:
            db.executemany(
                "DELETE FROM inbox WHERE id=?", [(msg_id,) for msg_id in cp.consumed_inbox]
            )
        db.executemany(
            "INSERT OR IGNORE INTO timers VALUES (?,?,?,?,?)",
            [(self.hub, iid, cp.execution_id, seq, at) for seq, at in cp.timers],
        )
        db.executemany(
            "INSERT INTO inbox (hub, instance_id, event) VALUES (?,?,?)",
            [(self.hub, target, blob) for target, blob in cp.outgoing],
        )
        self._add_outbox(db, iid, cp.outbox)

    def _add_outbox(
        self, db: sqlite3.Connection, sender: str, rows: list[tuple[str, str, bytes]]
    ) -> None:
        db.executemany(
            "INSERT INTO outbox (hub, kind, target, payload, sender) VALUES (?,?,?,?,?)",
            [(self.hub, kind, target, payload, sender) for kind, target, payload in rows],
        )

    def _append(self, db: sqlite3.Connection, iid: str, first: int, events: list[bytes]) -> None:
        db.executemany(
            "INSERT INTO history (hub, instance_id, idx, event) VALUES (?,?,?,?)",
            [(self.hub, iid, first + i, blob) for i, blob in enumerate(events)],
        )

    # -- inbox --------------------------------------------------------------------------

    def load_inbox(self, instance_id: str, after_id: int = 0) -> list[InboxMessage]:
        """Messages for the instance not recorded yet, with ids above ``after_id``, in order."""
        rows = self._read(
            "SELECT id, instance_id, event FROM inbox WHERE hub=? AND instance_id=? AND id>? "
            "ORDER BY id",
            (self.hub, instance_id, after_id),
        )
        return [InboxMessage(*row) for row in rows]

    def append_inbox(self, instance_id: str, event: bytes) -> int:
        """Durably accept a message for an instance; returns its id."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO inbox (hub, instance_id, event) VALUES (?,?,?)",
                (self.hub, instance_id, event),
            )
            return int(cursor.lastrowid or 0)

    def append_inbox_if(
        self,
        instance_id: str,
        event: bytes,
        statuses: tuple[str, ...],
        new_status: str | None = None,
    ) -> InstanceRecord | None:
        """Accept a message (and set ``new_status``) only while the status is in ``statuses``."""
        # One transaction: a completion committed by a host cannot slip between the check
        # and the write. The caller reads the answer from the record returned (as found).
        with self._write() as db:
            record = self._locked_instance(db, instance_id)
            if record is None or record.status not in statuses:
                return record
            if new_status is not None:
                db.execute(
                    "UPDATE instances SET status=?, last_updated_time=? "
                    "WHERE hub=? AND instance_id=?",
                    (new_status, time.time(), self.hub, instance_id),
                )
            db.execute(
                "INSERT INTO inbox (hub, instance_id, event) VALUES (?,?,?)",
                (self.hub, instance_id, event),
            )
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

    def _locked_instance(self, db: sqlite3.Connection, instance_id: str) -> InstanceRecord | None:
        row = db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE hub=? AND instance_id=?",
            (self.hub, instance_id),
        ).fetchone()
        return None if row is None else InstanceRecord(*row)

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
                    cursor = db.execute(
                        "INSERT INTO inbox (hub, instance_id, event) VALUES (?,?,?)",
                        (self.hub, timer.instance_id, blob),
                    )
                    ids.append(int(cursor.lastrowid or 0))
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
        now = time.time()
        with self._write() as db:
            for cp in checkpoints:
                if cp.state_changed:
                    db.execute(
                        "INSERT OR REPLACE INTO entities VALUES (?,?,?,?,?,?,?)",
                        (self.hub, cp.name, cp.key, cp.state, int(cp.exists), now, cp.locked_by),
                    )
                db.execute(
                    "INSERT OR REPLACE INTO entity_senders VALUES (?,?,?,?,?,?)",
                    (self.hub, cp.name, cp.key, cp.sender, cp.seq, cp.result),
                )
                self._add_outbox(db, f"{cp.name}@{cp.key}", cp.outbox)

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

    # -- code registry and settings ---------------------------------------------------------

    def register_code(self, kind: str, name: str, version: str, blob: bytes) -> None:
        """Record (or replace) a registered function or class."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO code VALUES (?,?,?,?,?,?)",
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
            db.execute("INSERT OR REPLACE INTO meta VALUES (?,?,?)", (self.hub, key, value))

    # -- the hub's lease ---------------------------------------------------------------

    def _lease(self) -> Lease | None:
        row = self._db.execute(
            "SELECT epoch, host, machine, pid, ray_address, cluster, actor_id, acquired_at, "
            "expires_at FROM lease WHERE hub=?",
            (self.hub,),
        ).fetchone()
        if row is None:
            return None
        return Lease(self.hub, row[0], LeaseHolder(*row[1:7]), row[7], row[8])

    def acquire_lease(
        self, holder: LeaseHolder, ttl: float, gone: Callable[[Lease], bool]
    ) -> Lease:
        """Take the hub's lease for ``ttl`` seconds, or raise HubLeaseHeldError."""
        with self._write(fenced=False) as db:
            now = time.time()
            current = self._lease()
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
                "INSERT OR REPLACE INTO lease VALUES (?,?,?,?,?,?,?,?,?,?)",
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
            lease = dataclasses.replace(self._check_epoch(epoch), expires_at=time.time() + ttl)
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
        with self._lock:
            return self._busy(self._lease)

    def close(self) -> None:
        """Release the connection."""
        with self._lock:
            self._db.close()


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
    )
