"""The PostgreSQL store (``postgresql://user@host:port/db``): shared by the hosts of every node.

Writers of one hub take turns: each write transaction first takes a transaction-scoped
advisory lock named by the hub, as SQLite's one writer per file does. That keeps the store
contract the SQL relies on: an inbox or outbox id is drawn inside the lock, so ids grow in
commit order and a reader's "after the last id seen" never skips a message committed late
(with concurrent writers, sequence values do not follow commit order). Hubs on one
database do not wait for each other.

The password comes from the URL, from ``?password_env=NAME`` (the environment variable
NAME), or from libpq's own ``PGPASSWORD`` / ``~/.pgpass``; messages never show it.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import HubConfigError, StoreUnavailableError
from .sql import SCHEMA_VERSION_TABLE, Connection, Connections, Cursor, Dialect, SqlStore

T = TypeVar("T")

#: How long a write waits for the database to come back (a restart) before it fails.
RECONNECT_SECONDS = 60.0

#: Connections per store (per host actor): reads need not wait for a write's lock.
POOL_SIZE = 4

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS instances (
    hub TEXT NOT NULL, instance_id TEXT NOT NULL,
    name TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    created_time DOUBLE PRECISION NOT NULL, last_updated_time DOUBLE PRECISION NOT NULL,
    input BYTEA, output BYTEA, custom_status BYTEA, failure BYTEA,
    parent_instance_id TEXT, parent_seq BIGINT, host TEXT,
    history_length BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (hub, instance_id))""",
    "CREATE INDEX IF NOT EXISTS instances_by_status ON instances (hub, status)",
    "CREATE INDEX IF NOT EXISTS instances_by_host ON instances (hub, host)",
    """CREATE TABLE IF NOT EXISTS history (
    hub TEXT NOT NULL, instance_id TEXT NOT NULL, idx BIGINT NOT NULL, event BYTEA NOT NULL,
    PRIMARY KEY (hub, instance_id, idx))""",
    """CREATE TABLE IF NOT EXISTS inbox (
    id BIGSERIAL PRIMARY KEY,
    hub TEXT NOT NULL, instance_id TEXT NOT NULL, event BYTEA NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS inbox_by_instance ON inbox (hub, instance_id)",
    """CREATE TABLE IF NOT EXISTS timers (
    hub TEXT NOT NULL, instance_id TEXT NOT NULL, execution_id TEXT NOT NULL,
    seq BIGINT NOT NULL, fire_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (hub, instance_id, execution_id, seq))""",
    "CREATE INDEX IF NOT EXISTS timers_by_time ON timers (hub, fire_at)",
    """CREATE TABLE IF NOT EXISTS code (
    hub TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    blob BYTEA NOT NULL, registered DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (hub, kind, name, version))""",
    """CREATE TABLE IF NOT EXISTS entities (
    hub TEXT NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL, state BYTEA,
    exists_ INTEGER NOT NULL, last_modified DOUBLE PRECISION NOT NULL, locked_by TEXT,
    PRIMARY KEY (hub, name, key))""",
    """CREATE TABLE IF NOT EXISTS entity_senders (
    hub TEXT NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL, sender TEXT NOT NULL,
    last_seq BIGINT NOT NULL, last_result BYTEA,
    PRIMARY KEY (hub, name, key, sender))""",
    """CREATE TABLE IF NOT EXISTS outbox (
    id BIGSERIAL PRIMARY KEY,
    hub TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, payload BYTEA NOT NULL,
    sender TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS meta (
    hub TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (hub, key))""",
    """CREATE TABLE IF NOT EXISTS lease (
    hub TEXT NOT NULL PRIMARY KEY, epoch BIGINT NOT NULL,
    host TEXT NOT NULL, machine TEXT NOT NULL, pid BIGINT NOT NULL,
    ray_address TEXT NOT NULL, cluster TEXT NOT NULL, actor_id TEXT NOT NULL,
    acquired_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL)""",
]

_PLACEHOLDER = re.compile(r"\?")


@functools.lru_cache(maxsize=1024)
def _translated(sql: str) -> str:
    """The statement with psycopg's ``%s`` placeholders (the store's SQL is a fixed set)."""
    return _PLACEHOLDER.sub("%s", sql)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def libpq_url(url: str) -> str:
    """The URL libpq takes: ``password_env`` resolved from the environment, ``postgres://`` kept."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    names = [value for key, value in query if key == "password_env"]
    query = [(key, value) for key, value in query if key != "password_env"]
    if names:
        password = os.environ.get(names[0])
        if password is None:
            raise HubConfigError(
                f"store {redacted(url)}: password_env names {names[0]!r}, which is not set"
            )
        query.append(("password", password))
    return urlunsplit(parts._replace(query=urlencode(query)))


class _Translated:
    """A psycopg connection that takes the store's ``?`` placeholders."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def usable(self) -> bool:
        """Still connected and outside any transaction: fit for the next caller."""
        import psycopg

        raw = self.raw
        idle = psycopg.pq.TransactionStatus.IDLE
        return not (raw.closed or raw.broken) and raw.info.transaction_status == idle

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement (``?`` becomes ``%s``)."""
        return self.raw.execute(_translated(sql), tuple(params))  # type: ignore[no-any-return]

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        """Run one statement for each row."""
        if rows:
            with self.raw.cursor() as cursor:
                cursor.executemany(_translated(sql), [tuple(r) for r in rows])

    def commit(self) -> None:
        """End the transaction, keeping its writes."""
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        """End the transaction, dropping its writes (a dropped connection dropped them)."""
        import psycopg

        if not (self.raw.closed or self.raw.broken):
            try:
                self.raw.execute("ROLLBACK")
            except psycopg.OperationalError:
                pass  # the server went away: it dropped the transaction; the pool drops us

    def close(self) -> None:
        """Release the connection."""
        self.raw.close()


class _Pool:
    """Up to ``size`` connections of one store, opened as threads need them.

    Each caller has its connection to itself from ``acquire`` to ``release``, so reads go
    on while another thread's write waits for (or holds) the hub's advisory lock. A
    connection that broke is dropped with the idle ones, which a database restart broke
    too; the next caller opens a fresh one.
    """

    def __init__(self, first: _Translated, open_: Callable[[], _Translated], size: int) -> None:
        self._open = open_
        self._size = size
        self._idle = [first]
        self._count = 1
        self._closed = False
        self._cond = threading.Condition()

    def acquire(self) -> Connection:
        """An idle connection, a new one below the size, else the next one released."""
        with self._cond:
            while not self._idle and self._count >= self._size:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return self._open()
        except BaseException:
            self._forget([])
            raise

    def release(self, db: Connection) -> None:
        """Keep a usable connection for the next caller; drop a broken one and the idle."""
        assert isinstance(db, _Translated)
        if db.usable():
            with self._cond:
                if not self._closed:
                    self._idle.append(db)
                    self._cond.notify()
                    return
        with self._cond:
            stale, self._idle = self._idle, []
        self._forget([db, *stale])

    def _forget(self, dropped: list[_Translated]) -> None:
        with self._cond:
            self._count -= max(len(dropped), 1)
            self._cond.notify_all()
        for db in dropped:
            db.close()

    def close(self) -> None:
        """Close the idle connections (the store is closed once nobody uses it)."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for db in idle:
            db.close()


class PostgresDialect(Dialect):
    """PostgreSQL through psycopg 3: one writer per hub at a time, rows locked as read."""

    for_update = " FOR UPDATE"
    blob = "BYTEA"
    # A double cast to BIGINT rounds here, so the floor is taken first.
    minute = "CAST(FLOOR({} / 60) AS BIGINT) * 60"

    def __init__(self, url: str, hub: str) -> None:
        self.url = url
        self.hub = hub
        # A signed 64-bit key per hub for pg_advisory_xact_lock.
        self.lock_key = zlib.crc32(f"ray-durable/{hub}".encode()) - 2**31

    def connections(self) -> Connections:
        """A pool of POOL_SIZE autocommit connections (the store begins its transactions)."""
        return _Pool(_Translated(self._first()), lambda: _Translated(self._raw()), POOL_SIZE)

    def _raw(self) -> Any:
        try:
            import psycopg
        except ImportError:
            raise HubConfigError(
                f"store {redacted(self.url)} needs psycopg: pip install 'ray-durable[postgres]'"
            ) from None
        return psycopg.connect(libpq_url(self.url), autocommit=True, connect_timeout=10)

    def _first(self) -> Any:
        """The first connection: a server that refuses it is the store's config error."""
        import psycopg

        try:
            return self._raw()
        except psycopg.OperationalError as exc:
            parts = urlsplit(self.url)
            where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
            raise HubConfigError(
                f"store {redacted(self.url)}: cannot connect to PostgreSQL at {where}: "
                f"{_first_line(exc)}"
            ) from None

    def begin_write(self, db: Connection) -> None:
        """BEGIN, then the hub's advisory lock: writers of one hub take turns.

        Both in one round trip (a simple query of two statements: the key is our integer).
        """
        assert isinstance(db, _Translated)
        db.raw.execute(f"BEGIN; SELECT pg_advisory_xact_lock({int(self.lock_key)})")

    def batched(self, db: Connection, blind: bool) -> AbstractContextManager[object]:
        """Pipeline mode for a blind transaction: its statements and COMMIT in one trip
        (a fetch inside flushes what is queued: one more trip, the same results)."""
        assert isinstance(db, _Translated)
        return db.raw.pipeline() if blind else nullcontext()

    def commit(self, db: Connection) -> None:
        """COMMIT once: if the connection drops meanwhile, its fate is unknown (typed)."""
        import psycopg

        try:
            db.commit()
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(redacted(self.url), 0.0, _first_line(exc)) from exc

    def lost(self, exc: BaseException, url: str) -> Exception | None:
        """A write whose connection the database dropped: StoreUnavailableError."""
        import psycopg

        if isinstance(exc, psycopg.OperationalError):
            return StoreUnavailableError(url, 0.0, _first_line(exc))
        return None

    def retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt``; again after a deadlock the database broke, or once it is back.

        Only a statement that begins a transaction or reads comes here: one that fails
        inside a write transaction fails the whole operation, which its caller re-runs
        (availability traded for correctness: nothing is half-applied). Each attempt takes
        a connection from the pool, which has dropped the ones a restart broke.
        """
        import psycopg

        deadline = time.monotonic() + RECONNECT_SECONDS
        pause = 0.05
        while True:
            try:
                return attempt()
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise StoreUnavailableError(
                        redacted(self.url), RECONNECT_SECONDS, _first_line(exc)
                    ) from exc
                if isinstance(
                    exc, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
                ):
                    time.sleep(0.01)
                else:
                    time.sleep(pause)
                    pause = min(pause * 2, 1.0)

    def table_names(self, db: Connection) -> set[str]:
        """The tables of the connection's schema."""
        rows = db.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
        return {row[0] for row in rows}

    def create_schema(self) -> list[str]:
        """Every table of schema version 2 (later versions are migrations)."""
        return [*_SCHEMA, SCHEMA_VERSION_TABLE]

    def lock_schema(self, db: Connection) -> None:
        """Creating tables takes a database-wide lock: two hubs opening at once take turns."""
        db.execute("SELECT pg_advisory_xact_lock(?)", (0x5D0C,))


class PostgresStore(SqlStore):
    """Store on a PostgreSQL database; many hubs may share one database."""

    def __init__(self, url: str, hub: str) -> None:
        super().__init__(redacted(url), hub, PostgresDialect(url, hub))
