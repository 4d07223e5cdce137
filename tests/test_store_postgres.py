"""What only the PostgreSQL store has: its URL, its errors, and writers that take turns."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from runtime.errors import HubConfigError, StoreUnavailableError
from runtime.store import InstanceRecord, open_store
from runtime.store.postgres import libpq_url, redacted

PURE = True


def test_the_password_never_shows_and_password_env_reads_the_environment(monkeypatch):
    assert redacted("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    monkeypatch.setenv("DB_PASSWORD", "from-env")
    resolved = libpq_url("postgresql://u@db/x?password_env=DB_PASSWORD&sslmode=require")
    assert "password=from-env" in resolved and "sslmode=require" in resolved
    assert "password_env" not in resolved
    monkeypatch.delenv("DB_PASSWORD")
    with pytest.raises(HubConfigError, match="password_env names 'DB_PASSWORD', which is not set"):
        libpq_url("postgresql://u@db/x?password_env=DB_PASSWORD")


def test_an_unreachable_server_is_a_config_error_naming_host_and_port():
    with pytest.raises(HubConfigError) as refused:
        open_store("postgresql://u:s3cret@127.0.0.1:1/x", "h")
    text = str(refused.value)
    assert "127.0.0.1:1" in text and "s3cret" not in text and "***" in text


def test_a_missing_database_and_tls_options_reach_the_server(postgres):
    base = postgres.database()
    with pytest.raises(HubConfigError, match="does not exist"):
        open_store(base.rsplit("/", 1)[0] + "/no_such_db", "h")
    # The test server has no TLS: libpq refuses sslmode=require, so the option reached it.
    with pytest.raises(HubConfigError, match="SSL"):
        open_store(base + "?sslmode=require", "h")


def test_concurrent_writers_of_one_hub_keep_inbox_ids_in_commit_order(postgres):
    url = postgres.database()
    stores = [open_store(url, "shop", durability="process") for _ in range(4)]
    stores[0].create_instance(InstanceRecord("i", "flow", "1", "Running", "x", 0.0, 0.0), [])
    seen: list[int] = []
    errors: list[BaseException] = []

    def write(store, n: int) -> None:
        try:
            for k in range(25):
                store.append_inbox("i", f"{n}-{k}".encode())
        except BaseException as exc:  # reported below: a thread's error is otherwise lost
            errors.append(exc)

    def read() -> None:
        # A reader that trusts "after the last id seen" must never miss a message.
        last, deadline = 0, time.monotonic() + 30
        while len(seen) < 100 and not errors and time.monotonic() < deadline:
            for message in stores[0].load_inbox("i", last):
                seen.append(message.id)
                last = message.id

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader.join(timeout=30)
    assert not errors, errors
    assert len(seen) == 100 == len(set(seen)) and seen == sorted(seen)
    for store in stores:
        store.close()


def test_a_restarted_server_is_waited_for_and_nothing_is_lost(postgres):
    url = postgres.database()
    store = open_store(url, "shop", durability="process")
    store.create_instance(InstanceRecord("i", "flow", "1", "Running", "x", 0.0, 0.0), [])
    store.append_inbox("i", b"before")
    postgres.stop("immediate")  # as if it crashed: the store's connection is dead now
    restarting = threading.Timer(1.0, postgres.start)
    restarting.start()
    try:
        store.append_inbox("i", b"after")  # blocks, reconnects, then writes once
        assert [m.event for m in store.load_inbox("i")] == [b"before", b"after"]
    finally:
        restarting.join()
        store.close()


def test_reads_go_on_while_a_write_of_the_same_store_waits_for_the_hub_lock(postgres):
    import psycopg

    url = postgres.database()
    store = open_store(url, "shop", durability="process")
    store.create_instance(InstanceRecord("i", "flow", "1", "Running", "x", 0.0, 0.0), [b"e0"])
    other = psycopg.connect(url, autocommit=True)  # another host holding the hub's lock
    other.execute("BEGIN")
    other.execute("SELECT pg_advisory_xact_lock(%s)", (store.dialect.lock_key,))
    writer = threading.Thread(target=store.append_inbox, args=("i", b"m"))
    writer.start()
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype='advisory' AND NOT granted"
    while other.execute(waiting).fetchone()[0] == 0:
        time.sleep(0.01)  # until the writer waits for the lock
    read: list[list[bytes]] = []
    reader = threading.Thread(target=lambda: read.append(store.load_history("i")), daemon=True)
    reader.start()
    reader.join(timeout=20)  # a hang guard: with one connection the read waits for the lock
    finished_while_locked = not reader.is_alive()
    other.execute("COMMIT")
    writer.join()
    assert finished_while_locked and read == [[b"e0"]]
    assert [m.event for m in store.load_inbox("i")] == [b"m"]
    other.close()
    store.close()


def test_a_server_away_longer_than_the_store_waits_is_a_typed_error(postgres, monkeypatch):
    from runtime.store import postgres as dialect

    url = postgres.database()
    store = open_store(url, "shop", durability="process")
    store.create_instance(InstanceRecord("i", "flow", "1", "Running", "x", 0.0, 0.0), [b"e0"])
    monkeypatch.setattr(dialect, "RECONNECT_SECONDS", 0.5)
    postgres.stop("immediate")
    try:
        with pytest.raises(StoreUnavailableError) as read:
            store.load_history("i")
        with pytest.raises(StoreUnavailableError) as write:
            store.append_inbox("i", b"never")
    finally:
        postgres.start()
    assert "did not answer for 0.5 s" in str(read.value) and "127.0.0.1" in write.value.store
    assert store.load_history("i") == [b"e0"] and store.load_inbox("i") == []
    store.close()


def test_an_entity_host_reads_through_an_outage_instead_of_failing_the_operation():
    from runtime.actors.entity_host import _StoreLoader
    from runtime.entity_id import EntityId

    class Away:
        """A store whose database is away for the first two reads."""

        reads = 0

        def load_entity(self, name: str, key: str):
            self.reads += 1
            if self.reads <= 2:
                raise StoreUnavailableError("postgresql://db/x", 60.0, "connection refused")
            return (b"state", True, None)

    store = Away()
    loader = _StoreLoader(store, code=None)
    assert loader.load_entity(EntityId("Counter", "k")) == (b"state", True, None)
    assert store.reads == 3


def test_a_wrong_or_missing_password_is_a_config_error_that_never_shows_it(postgres, monkeypatch):
    base = postgres.password_role(f"pw_{uuid.uuid4().hex[:8]}", "right-one")
    scheme, rest = base.split("://", 1)
    user, host = rest.split("@", 1)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with pytest.raises(HubConfigError, match="password authentication failed") as wrong:
        open_store(f"{scheme}://{user}:not-it@{host}", "h")
    assert "not-it" not in str(wrong.value) and ":***@" in str(wrong.value)
    with pytest.raises(HubConfigError, match="password"):
        open_store(base, "h")  # none given at all
    monkeypatch.setenv("DB_SECRET", "right-one")
    store = open_store(base + "?password_env=DB_SECRET", "h")
    store.close()
