"""The default store: one SQLite file in WAL mode, shared by every process of the hub."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar, cast

from .. import faults
from ..errors import HubConfigError, StoreCorruptError, StoreWriteRefusedError
from .sql import SCHEMA_VERSION_TABLE, Connection, Dialect, SqlStore

T = TypeVar("T")

#: How long a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT_SECONDS = 60.0

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


class SqliteDialect(Dialect):
    """SQLite: one file, one writer at a time (BEGIN IMMEDIATE), busy retries of our own."""

    #: the largest page count SQLite allows (its default limit)
    MAX_PAGES = 4294967294

    def __init__(self, path: str, durability: str, hub: str = "") -> None:
        self.path = path
        self.durability = durability
        self.hub = hub
        self._faults = faults.armed("store.full", hub) or faults.armed("store.read_only", hub)

    def connect(self) -> Connection:
        """The file's connection in WAL mode, synchronous as the durability asks."""
        # No busy timeout: SQLite's own handler sleeps at least a millisecond per try, more
        # than a whole fsync'd commit of the process holding the lock; retrying retries sooner.
        db = sqlite3.connect(self.path, timeout=0.0, isolation_level=None, check_same_thread=False)
        self.retrying(lambda: db.execute("PRAGMA journal_mode=WAL"))
        # fsync: a commit survives power loss; process: it survives a killed process only.
        db.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'fsync' else 'NORMAL'}")
        return cast(Connection, db)

    def begin_write(self, db: Connection) -> None:
        """IMMEDIATE takes the write lock up front: no deadlock on a read->write upgrade."""
        if self._faults:
            self._inject(db)
        db.execute("BEGIN IMMEDIATE")

    def _inject(self, db: Connection) -> None:
        """Storage faults a test switched on (runtime/faults.py), as SQLite raises them."""
        if faults.switched_on("store.read_only", self.hub):
            url = f"sqlite:///{self.path}"
            raise StoreWriteRefusedError(url, "attempt to write a readonly database")
        # A limit below the file's size holds it at its size: the next new page is "full".
        full = faults.switched_on("store.full", self.hub)
        db.execute(f"PRAGMA max_page_count={1 if full else self.MAX_PAGES}")

    def lost(self, exc: BaseException, url: str) -> Exception | None:
        """A write SQLite refused (disk full, read-only file): StoreWriteRefusedError."""
        if isinstance(exc, sqlite3.OperationalError):
            message = str(exc)
            if "full" in message or "readonly" in message or "read-only" in message:
                return StoreWriteRefusedError(url, message)
        return None

    def retrying(self, attempt: Callable[[], T]) -> T:
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

    def commit(self, db: Connection) -> None:
        """COMMIT, retried while a reader holds the WAL (busy: nothing was committed yet)."""
        self.retrying(db.commit)

    def table_names(self, db: Connection) -> set[str]:
        """The file's tables."""
        rows = db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        return {row[0] for row in rows}

    def create_schema(self) -> list[str]:
        """Every table of schema version 2 (later versions are migrations)."""
        return [s for s in _SCHEMA.split(";") if s.strip()] + [SCHEMA_VERSION_TABLE]


class SqliteStore(SqlStore):
    """Store on one SQLite file; safe to open from many processes at once."""

    def __init__(self, url: str, hub: str, durability: str = "fsync") -> None:
        if durability not in ("fsync", "process"):
            raise HubConfigError(f"durability must be 'fsync' or 'process', not {durability!r}")
        self.path = url[len("sqlite:///") :]
        if not self.path:
            raise HubConfigError(f"store URL {url!r} names no file")
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        try:
            super().__init__(url, hub, SqliteDialect(self.path, durability, hub))
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise  # locked, I/O: not a verdict on the file's content
            raise StoreCorruptError(url, str(exc)) from None
