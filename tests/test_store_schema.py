"""Schema versions: an older store is migrated when opened, a newer one is refused untouched."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from helpers import event_loop
from test_host import FakeActors, chain, double, run_until_ended, start

from runtime.actors.hosts import HostCore
from runtime.errors import HubConfigError, StoreVersionError
from runtime.orchestration import history as h
from runtime.orchestration.codec import decode_event
from runtime.registry import encode_code
from runtime.serialization import loads
from runtime.store import open_store
from runtime.store.sql import SCHEMA_VERSION

PURE = True

GOLDEN = Path(__file__).resolve().parent / "golden"


def version_of(path: Path) -> int | None:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT version FROM schema_version").fetchone()[0]
    except sqlite3.OperationalError:
        return None  # no version table: written before versions were kept
    finally:
        db.close()


def test_a_store_written_before_schema_versions_is_migrated_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.db"
    shutil.copy(GOLDEN / "store-v1.db", path)
    assert version_of(path) is None
    store = open_store(f"sqlite:///{path}", "v1hub")
    assert version_of(path) == SCHEMA_VERSION
    record = store.load_instance("i1")
    assert record is not None and record.status == "Running" and record.host == "pool-0"
    assert store.load_history("i1") == [b"ev0", b"ev1", b"ev2"]
    assert [m.event for m in store.load_inbox("i1")] == [b"msg"]
    assert store.timer_stats() == (1, 500.0)
    assert store.load_entity("Counter", "k") == (b"state", True, None)
    assert store.load_sender("Counter", "k", "client-1") == (3, b"r")
    assert store.load_code("orchestrator", "wf") == ("1", b"code-blob")
    assert store.get_meta("spares") == "h1"
    store.append_inbox("i1", b"after")  # and it takes new writes
    store.close()
    again = open_store(f"sqlite:///{path}", "v1hub")  # opening again changes nothing
    assert [m.event for m in again.load_inbox("i1")] == [b"msg", b"after"]
    again.close()


def test_a_version_2_store_is_migrated_its_instances_read_and_resume(tmp_path):
    path = tmp_path / "v2.db"
    shutil.copy(GOLDEN / "store-v2.db", path)
    assert version_of(path) == 2
    url = f"sqlite:///{path}"
    store = open_store(url, "v2hub", payload_inline_limit=1024)
    assert version_of(path) == SCHEMA_VERSION
    done = store.load_instance("done")
    assert done.status == "Completed" and loads(done.output) == "x" * 400_000
    events = [decode_event(blob) for blob in store.load_history("done")]
    results = [e.result for e in events if isinstance(e, h.TaskCompleted)]
    assert results == ["x" * 200_000, "x" * 400_000]  # written inline by version 2: still read
    assert store.load_entity("Counter", "k") == (b"state", True, None)
    assert store.get_meta("spares") == "h1"
    with event_loop() as loop:
        for obj in (chain, double):  # the same code, registered by this test's own imports
            store.register_code(*encode_code(obj))
        actors = FakeActors()
        core = HostCore("v2hub", url, "process", None, None, {}, None, actors, 1024)
        resumed = run_until_ended(core, store, loop, "open")
        assert resumed.status == "Completed" and loads(resumed.output) == 4
        assert [(name, value) for name, value, _ in actors.ran] == [("double", 2)]
        fresh = run_until_ended(core, store, loop, start(store, "chain", "y" * 5000))
    assert loads(fresh.output) == "y" * 20_000
    store.close()
    db = sqlite3.connect(path)
    iid = fresh.instance_id
    largest = db.execute("SELECT max(length(event)) FROM history WHERE instance_id=?", (iid,))
    stored = db.execute("SELECT count(*) FROM payloads WHERE instance_id=?", (iid,))
    assert largest.fetchone()[0] < 1024 and stored.fetchone()[0] >= 4  # new writes: out of line
    db.close()


def test_a_new_store_starts_at_the_current_version(tmp_path):
    path = tmp_path / "new.db"
    open_store(f"sqlite:///{path}", "h").close()
    assert version_of(path) == SCHEMA_VERSION


def test_a_store_from_a_newer_schema_is_refused_naming_both_versions_and_left_alone(tmp_path):
    path = tmp_path / "newer.db"
    store = open_store(f"sqlite:///{path}", "h")
    store.set_meta("k", "v")
    store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version=?", (SCHEMA_VERSION + 7,))
    db.commit()
    db.close()
    with pytest.raises(StoreVersionError) as caught:
        open_store(f"sqlite:///{path}", "h")
    error = caught.value
    assert isinstance(error, HubConfigError)
    assert (error.found, error.supported) == (SCHEMA_VERSION + 7, SCHEMA_VERSION)
    text = str(error)
    assert f"version {SCHEMA_VERSION + 7}" in text and f"version {SCHEMA_VERSION}" in text
    assert str(path) in text and "upgrade" in text
    assert version_of(path) == SCHEMA_VERSION + 7
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='k'").fetchone() == ("v",)
    db.close()


def test_an_unknown_scheme_lists_the_supported_ones():
    with pytest.raises(HubConfigError, match=r"supported: sqlite:///path/to/file\.db"):
        open_store("mysql://db/x", "h")
