"""Helpers shared by the test modules: one copy of each, imported from here.

Ray is imported inside the functions that need it, so pure modules may import this one
without paying for Ray.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@contextmanager
def event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop for the thread (a HostCore's, a SupervisorCore's); its tasks end with it."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        asyncio.set_event_loop(None)


# address="local" starts a Ray of our own even when another cluster (a leftover `ray start`,
# a notebook) is recorded on this machine.
RAY_ARGS = {
    "address": "local",
    "num_cpus": 2,
    "include_dashboard": False,
    "log_to_driver": False,
}

#: a request without a body (None is a JSON body)
NO_BODY: Any = object()


def start_ray() -> None:
    """Start the session's local Ray (again, after a test stopped it)."""
    import ray

    if not ray.is_initialized():
        ray.init(**RAY_ARGS)


def start_runtime(hub_name, store_url, placement, clock=None):
    """A hub with every test workflow and pattern registered, on the session's Ray."""
    import patterns
    import workflows

    return start_hub(hub_name, store_url, placement, workflows.ALL + patterns.ALL, clock=clock)


def start_hub(hub_name, store_url, placement, register, **settings):
    """A hub of two pool hosts with ``register`` registered, on the session's Ray."""
    from runtime import Runtime

    start_ray()
    return Runtime.start(
        hub=hub_name,
        store=store_url,
        placement=placement,
        pool_size=2,
        register=register,
        **settings,
    )


def same_pool_host(prefix: str, count: int, pool: int = 2) -> list[str]:
    """Instance ids that a pooled hub of ``pool`` hosts places on one host (host 0)."""
    import itertools

    from runtime.actors.routing import pool_index

    ids = (f"{prefix}-{i}" for i in itertools.count())
    return list(itertools.islice((i for i in ids if pool_index(i, pool) == 0), count))


def stop_runtime(rt) -> None:
    """Shut a hub down, if a test has not stopped Ray itself already."""
    try:
        rt.shutdown()
    except Exception:
        pass  # a test may have stopped Ray itself


def wait_until(predicate: Callable[[], T], timeout: float = 60.0, every: float = 0.05) -> T:
    """Poll ``predicate`` until it returns a true value (returned); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def host_pid(client, iid) -> int:
    """The process id of instance ``iid``'s host."""
    import ray

    return ray.get(client.host_of(iid).pid.remote())


def kill_host(client, iid) -> int:
    """SIGKILL the host process of instance ``iid``; returns its pid."""
    pid = host_pid(client, iid)
    os.kill(pid, signal.SIGKILL)
    return pid


def entity_host_pid(client, hub: str, placement: str, eid: str, tries: int = 100) -> int:
    """The process id of the host entity ``eid`` lives on (waiting while it restarts)."""
    import ray

    from entities import EntityId
    from runtime.actors.routing import NAMESPACE, entity_host

    if placement == "dedicated":
        handle = ray.get_actor(entity_host(hub, EntityId.parse(eid)), namespace=NAMESPACE)
    else:
        handle = client._router.handle(EntityId.parse(eid)).actor
    for _ in range(tries):
        try:
            return ray.get(handle.pid.remote())
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            time.sleep(0.2)  # restarting after an earlier kill
    raise AssertionError("host never came back")


def durable_exe() -> str:
    """The installed console script (beside this Python, else on PATH)."""
    beside = Path(sys.executable).with_name("durable")
    exe = str(beside) if beside.exists() else shutil.which("durable")
    assert exe is not None, "the durable console script is not installed: pip install -e ."
    return exe


def one_line_error(stderr: str, text: str) -> None:
    """The CLI's refusal: one ``durable: error:`` line naming ``text``, no traceback."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("durable: error: ") and text in lines[0], stderr


def http_request(
    method: str,
    url: str,
    body: Any = NO_BODY,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, raw body) of one request; ``body`` is sent as JSON."""
    headers = dict(headers or {})
    if body is not NO_BODY:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, found = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, found = error.code, error.read(), error.headers
    return status, {k.lower(): v for k, v in found.items()}, raw


@contextmanager
def store_connection(url: str) -> Iterator[Callable[..., list[tuple]]]:
    """One connection to a hub's store (SQLite file or PostgreSQL), as ``rows(sql, params)``
    with ``?`` placeholders; bytes come back as bytes from either."""
    if url.startswith("sqlite:///"):
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(url[len("sqlite:///") :])) as db:
            yield lambda sql, params=(): db.execute(sql, params).fetchall()
        return
    import psycopg

    def rows(sql: str, params: tuple = ()) -> list[tuple]:
        found = pg.execute(sql.replace("?", "%s"), params).fetchall()
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in found]

    with psycopg.connect(url, autocommit=True) as pg:
        yield rows


def query_store(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of a raw query on a hub's store (SQLite file or PostgreSQL), ``?`` placeholders."""
    with store_connection(url) as rows:
        return rows(sql, params)


def completed_seqs(client, iid) -> list[int]:
    """The sequence numbers of an instance's recorded activity completions."""
    from runtime.orchestration import history as h

    state = client.get_status(iid, show_history=True)
    return [e.seq for e in state.history if isinstance(e, h.TaskCompleted)]


def assert_no_duplicate_completions(client, iid) -> None:
    """No activity completion recorded twice in the instance's history."""
    seqs = completed_seqs(client, iid)
    assert len(seqs) == len(set(seqs)), f"{iid}: a completion was recorded twice"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def history_lengths(store: str, iids: list[str]) -> dict[str, int]:
    """The stored history length of each of ``iids`` (SQLite or PostgreSQL)."""
    rows = query_store(store, "SELECT instance_id, history_length FROM instances")
    return {iid: n for iid, n in rows if iid in iids}


def write_store(url: str, sql: str, params: tuple = ()) -> None:
    """Run one write on a hub's store behind the runtime's back (re-delivery tests)."""
    if url.startswith("sqlite:///"):
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(url[len("sqlite:///") :])) as db:
            db.execute(sql, params)
            db.commit()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(sql.replace("?", "%s"), params)


#: Columns that change by themselves while a hub runs: the lease's heartbeat.
VOLATILE_COLUMNS = {"lease": ("expires_at",)}


def store_tables(rows: Callable[..., list[tuple]], sqlite: bool) -> list[str]:
    """The names of a store's tables, from the database's own catalogue."""
    if sqlite:
        sql = (
            "SELECT name FROM sqlite_master WHERE type='table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    else:
        sql = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
    return [name for (name,) in rows(sql)]


def _columns(rows: Callable[..., list[tuple]], sqlite: bool, table: str) -> list[str]:
    if sqlite:
        return [row[1] for row in rows(f'PRAGMA table_info("{table}")')]
    sql = (
        "SELECT column_name FROM information_schema.columns WHERE table_schema = "
        "current_schema() AND table_name = ? ORDER BY ordinal_position"
    )
    return [name for (name,) in rows(sql, (table,))]


def dump_store(url: str, skip: dict[str, tuple[str, ...]] | None = None) -> dict[str, list[tuple]]:
    """Every row of every table of a store, in a stable order, without the lease's heartbeat
    (and the columns ``skip`` names per table)."""
    sqlite = url.startswith("sqlite:///")
    dump = {}
    with store_connection(url) as rows:
        for table in store_tables(rows, sqlite):
            left_out = VOLATILE_COLUMNS.get(table, ()) + (skip or {}).get(table, ())
            columns = [c for c in _columns(rows, sqlite, table) if c not in left_out]
            names = ", ".join(f'"{c}"' for c in columns)
            order = ", ".join(str(i + 1) for i in range(len(columns)))
            dump[table] = rows(f'SELECT {names} FROM "{table}" ORDER BY {order}')
    return dump


def settled_store(
    url: str, skip: dict[str, tuple[str, ...]] | None = None, timeout: float = 30.0
) -> dict[str, list[tuple]]:
    """``dump_store`` once the store stopped changing and no message is in flight."""
    deadline = time.monotonic() + timeout
    last = dump_store(url, skip)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = dump_store(url, skip)
        if now == last and not now.get("outbox") and not now.get("inbox"):
            return now
        last = now
    raise AssertionError("the store kept changing")


def check_typed(error: BaseException, expected: type, also: type | None) -> None:
    """Typed, also its built-in class, readable, and the same once it crossed a process."""
    import pickle

    from runtime import DurableError

    assert isinstance(error, DurableError), f"{type(error).__name__}: {error}"
    assert isinstance(error, expected), f"{type(error).__name__}: {error}"
    assert also is None or isinstance(error, also)
    text = str(error)
    assert text and not text.startswith(("(", "<")) and "Traceback" not in text, text
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == text and again.args == error.args


def seed_hub(client) -> tuple[str, str]:
    """What a bad input must leave alone: a Completed instance, a Running one that waits
    forever, and two entities with state (``Counter@keep`` = 5, ``Account@keep`` = 7).
    Returns (the completed id, the waiting id)."""
    import patterns
    import workflows

    done = client.start_new(workflows.chain, 1)
    assert client.wait_for_completion(done, timeout=60).runtime_status == "Completed"
    waiting = client.start_new(patterns.waiting_child, None)
    client.signal_entity("Counter@keep", "add", 5)
    client.signal_entity("Account@keep", "deposit", 7)
    wait_until(lambda: client.get_status(waiting).runtime_status == "Running", timeout=30)
    return done, waiting


@contextmanager
def armed_ray(directory, entries: list[str]) -> Iterator[None]:
    """A local Ray whose processes have the fault points ``entries`` (``point@hub``) armed
    (runtime/faults.py); the session's Ray is stopped first and the next module starts a
    clean one."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    saved = {k: os.environ.get(k) for k in ("DURABLE_FAULTS", "DURABLE_FAULTS_DIR")}
    os.environ["DURABLE_FAULTS"] = ",".join(entries)
    os.environ["DURABLE_FAULTS_DIR"] = str(directory)
    try:
        start_ray()
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
