"""Every error the public API raises is a typed DurableError, readable, and picklable.

One table of bad inputs against a running hub: each row names the call, the error class
it must raise and the built-in class it must also be (so ``except ValueError`` code keeps
working). A refused call leaves the store exactly as it was: every row of the hub is
compared before and after each call.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import threading
import time
import uuid
from contextlib import closing
from datetime import datetime, timedelta, timezone

import entity_defs as ed
import patterns
import pytest
import ray
import workflows as wf
from helpers import start_ray, stop_runtime

import runtime.driver.client
from entities import (
    EntityId,
    InvalidEntityIdError,
    NoEntityContextError,
    UnknownOperationError,
    current_context,
    entity,
)
from runtime import (
    ArgumentTypeError,
    DurableClient,
    DurableError,
    EntityUnavailableError,
    HubConfig,
    HubConfigError,
    HubUnavailableError,
    InstanceExistsError,
    InstanceNotFoundError,
    InternalError,
    InvalidArgumentError,
    InvalidOperationError,
    NotRegisteredError,
    OperationTimeoutError,
    OrchestratorNotFoundError,
    RetryPolicy,
    Runtime,
    SerializationError,
    activity,
    orchestrator,
)
from runtime.actors.ray_seam import SupervisorHandle
from runtime.actors.routing import NAMESPACE
from runtime.actors.supervisor import supervisor_name
from runtime.driver.http_api import serve_http
from runtime.testing import ManualClock


@entity(name="Poison", placement="dedicated")
class Poison:
    """Its one operation kills the process of its host, every time it is tried."""

    def die(self) -> None:
        os._exit(1)


TABLES = ("instances", "history", "inbox", "timers", "entities", "entity_senders", "outbox")


def stored(rt: Runtime) -> dict[str, list]:
    """Every row the hub has in the store, table by table."""
    with closing(sqlite3.connect(rt.config.store[len("sqlite:///") :])) as db:
        return {
            table: sorted(
                db.execute(f"SELECT * FROM {table} WHERE hub=?", (rt.config.hub,)).fetchall(),
                key=repr,
            )
            for table in TABLES
        }


def settled(rt: Runtime, timeout: float = 30.0) -> dict[str, list]:
    """The store once it stopped changing (no message in flight)."""
    deadline = time.monotonic() + timeout
    last = stored(rt)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = stored(rt)
        if now == last and not now["outbox"] and not now["inbox"]:
            return now
        last = now
    raise AssertionError("the store kept changing")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    start_ray()
    path = tmp_path_factory.mktemp("errors") / "hub.db"
    rt = Runtime.start(
        hub=f"err-{uuid.uuid4().hex[:6]}",
        store=f"sqlite:///{path}",
        placement="pooled",
        pool_size=2,
        register=wf.ALL + patterns.ALL + ed.ALL + [Poison],
    )
    c = rt.client
    done = c.start_new(wf.chain, 1)
    assert c.wait_for_completion(done, timeout=60).runtime_status == "Completed"
    waiting = c.start_new(patterns.waiting_child, None)
    c.signal_entity("Counter@keep", "add", 5)
    c.signal_entity("Account@keep", "deposit", 7)
    deadline = time.monotonic() + 30
    while c.get_status(waiting).runtime_status != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    yield rt, done, waiting
    stop_runtime(rt)


NAIVE = datetime(2020, 1, 1)
NOW = datetime.now(timezone.utc)
SECOND = timedelta(seconds=1)


def advance(delta: object) -> None:
    """Move a new ManualClock by ``delta`` (and remove its file whatever happens)."""
    clock = ManualClock()
    try:
        clock.advance(delta)
    finally:
        clock.close()


BAD, TYPE, BAD_ID = InvalidArgumentError, ArgumentTypeError, InvalidEntityIdError
UNKNOWN_OP = UnknownOperationError

# (label, call(client, done_id, waiting_id), error class, the built-in class it also is)
CASES = [
    # orchestrations: starting
    ("start id ''", lambda c, d, w: c.start_new(wf.chain, 1, instance_id=""), BAD, ValueError),
    ("start id 123", lambda c, d, w: c.start_new(wf.chain, 1, instance_id=123), BAD, ValueError),
    ("start a lambda", lambda c, d, w: c.start_new(lambda ctx: None), TYPE, TypeError),
    ("start 123", lambda c, d, w: c.start_new(123), TYPE, TypeError),
    ("start ''", lambda c, d, w: c.start_new(""), BAD, ValueError),
    ("start version 99", lambda c, d, w: c.start_new("chain", 1, version=99), BAD, ValueError),
    (
        "start unknown name",
        lambda c, d, w: c.start_new("no_such_orchestrator"),
        OrchestratorNotFoundError,
        None,
    ),
    (
        "start a live id",
        lambda c, d, w: c.start_new(patterns.waiting_child, instance_id=w),
        InstanceExistsError,
        None,
    ),
    (
        "start unpicklable input",
        lambda c, d, w: c.start_new(wf.chain, threading.Lock()),
        SerializationError,
        None,
    ),
    ("register a lambda", lambda c, d, w: c.register(lambda: 1), TYPE, TypeError),
    # orchestrations: events and lifecycle
    ("event name ''", lambda c, d, w: c.raise_event(w, ""), BAD, ValueError),
    ("event name None", lambda c, d, w: c.raise_event(w, None), BAD, ValueError),
    ("event to id 123", lambda c, d, w: c.raise_event(123, "e"), BAD, ValueError),
    (
        "event to unknown id",
        lambda c, d, w: c.raise_event("no-such-id", "e"),
        InstanceNotFoundError,
        None,
    ),
    ("event to ended", lambda c, d, w: c.raise_event(d, "e"), InvalidOperationError, None),
    ("terminate id 123", lambda c, d, w: c.terminate(123), BAD, ValueError),
    ("terminate reason 5", lambda c, d, w: c.terminate(w, 5), BAD, ValueError),
    ("suspend id ''", lambda c, d, w: c.suspend(""), BAD, ValueError),
    ("resume id None", lambda c, d, w: c.resume(None), BAD, ValueError),
    ("restart id ''", lambda c, d, w: c.restart(""), BAD, ValueError),
    ("purge id 123", lambda c, d, w: c.purge_instance_history(123), BAD, ValueError),
    ("purge a live one", lambda c, d, w: c.purge_instance_history(w), InvalidOperationError, None),
    # orchestrations: queries
    ("status id ''", lambda c, d, w: c.get_status(""), BAD, ValueError),
    ("status ['Bogus']", lambda c, d, w: c.get_status_by(["Bogus"]), BAD, ValueError),
    ("status 'Bogus'", lambda c, d, w: c.get_status_by("Bogus"), BAD, ValueError),
    ("status [5]", lambda c, d, w: c.get_status_by([5]), BAD, ValueError),
    ("query naive time", lambda c, d, w: c.get_status_by(created_time_from=NAIVE), BAD, ValueError),
    (
        "query time as text",
        lambda c, d, w: c.get_status_by(created_time_to="2020-01-01"),
        TYPE,
        TypeError,
    ),
    ("query top -1", lambda c, d, w: c.get_status_by(top=-1), BAD, ValueError),
    ("query skip 'x'", lambda c, d, w: c.get_status_by(skip="x"), BAD, ValueError),
    ("query prefix 5", lambda c, d, w: c.get_status_by(instance_id_prefix=5), BAD, ValueError),
    (
        "purge naive time",
        lambda c, d, w: c.purge_instance_history_by(created_time_from=NAIVE),
        BAD,
        ValueError,
    ),
    (
        "purge status Bogus",
        lambda c, d, w: c.purge_instance_history_by(NOW, None, ["Bogus"]),
        BAD,
        ValueError,
    ),
    (
        "wait timeout",
        lambda c, d, w: c.wait_for_completion(w, timeout=0.2),
        OperationTimeoutError,
        TimeoutError,
    ),
    ("wait timeout -1", lambda c, d, w: c.wait_for_completion(w, timeout=-1), BAD, ValueError),
    ("wait id 123", lambda c, d, w: c.wait_for_completion(123), BAD, ValueError),
    # entities
    ("operation ''", lambda c, d, w: c.signal_entity("Counter@keep", ""), BAD, ValueError),
    ("operation None", lambda c, d, w: c.call_entity("Counter@keep", None), BAD, ValueError),
    (
        "operation 'nope'",
        lambda c, d, w: c.signal_entity("Counter@keep", "nope", 1),
        UNKNOWN_OP,
        ValueError,
    ),
    ("call 'nope'", lambda c, d, w: c.call_entity("Counter@keep", "nope"), UNKNOWN_OP, ValueError),
    (
        "operation '__init__'",
        lambda c, d, w: c.signal_entity("Counter@keep", "__init__"),
        UNKNOWN_OP,
        ValueError,
    ),
    (
        "operation '__lock__'",
        lambda c, d, w: c.signal_entity("Counter@keep", "__lock__", "x|1"),
        UNKNOWN_OP,
        ValueError,
    ),
    (
        "function entity '_x'",
        lambda c, d, w: c.signal_entity("Account@keep", "_x", wait=False),
        UNKNOWN_OP,
        ValueError,
    ),
    ("entity id 'no-at'", lambda c, d, w: c.signal_entity("no-at", "add", 1), BAD_ID, ValueError),
    ("entity id 5", lambda c, d, w: c.call_entity(5, "get"), BAD_ID, ValueError),
    (
        "entity type unknown",
        lambda c, d, w: c.signal_entity("Ghost@1", "add", 1),
        NotRegisteredError,
        None,
    ),
    (
        "entity unpicklable input",
        lambda c, d, w: c.signal_entity("Counter@keep", "add", threading.Lock()),
        SerializationError,
        None,
    ),
    (
        "call timeout -1",
        lambda c, d, w: c.call_entity("Counter@keep", "get", timeout=-1),
        BAD,
        ValueError,
    ),
    ("read state of ''", lambda c, d, w: c.read_entity_state(""), BAD_ID, ValueError),
    ("list page_size 0", lambda c, d, w: c.get_entities(page_size=0), BAD, ValueError),
    ("list name ''", lambda c, d, w: c.get_entities(name=""), BAD, ValueError),
    ("EntityId('', 'k')", lambda c, d, w: EntityId("", "k"), BAD_ID, ValueError),
    (
        "current_context() outside",
        lambda c, d, w: current_context(),
        NoEntityContextError,
        RuntimeError,
    ),
    # declarations and configuration
    ("@activity(bogus=1)", lambda c, d, w: activity(bogus=1), TYPE, TypeError),
    ("@entity(placement='x')", lambda c, d, w: entity(placement="x"), BAD, ValueError),
    ("@entity(bogus=1)", lambda c, d, w: entity(bogus=1), TYPE, TypeError),
    ("@entity(name='a@b')", lambda c, d, w: entity(name="a@b")(ed.Counter.target), BAD, ValueError),
    ("@entity(passivate_after=0)", lambda c, d, w: entity(passivate_after=0), BAD, ValueError),
    ("store mysql://x", lambda c, d, w: HubConfig(store="mysql://x"), HubConfigError, None),
    ("RetryPolicy attempts 0", lambda c, d, w: RetryPolicy(SECOND, 0), BAD, ValueError),
    ("RetryPolicy interval 5", lambda c, d, w: RetryPolicy(5, 3), TYPE, TypeError),
    (
        "RetryPolicy backoff 0.5",
        lambda c, d, w: RetryPolicy(SECOND, 3, backoff_coefficient=0.5),
        BAD,
        ValueError,
    ),
    # test helpers and the HTTP API's entry point
    ("ManualClock naive start", lambda c, d, w: ManualClock(NAIVE), BAD, ValueError),
    ("ManualClock start as text", lambda c, d, w: ManualClock("2020-01-01"), TYPE, TypeError),
    ("ManualClock back", lambda c, d, w: advance(-SECOND), BAD, ValueError),
    ("ManualClock advance 5", lambda c, d, w: advance(5), TYPE, TypeError),
    ("serve_http(5)", lambda c, d, w: serve_http(5), TYPE, TypeError),
    ("serve_http(None)", lambda c, d, w: serve_http(None), BAD, ValueError),
    ("serve_http other hub=", lambda c, d, w: serve_http(c, hub="other"), BAD, ValueError),
    ("serve_http hub=5", lambda c, d, w: serve_http(None, hub=5), BAD, ValueError),
    (
        "connect to no hub",
        lambda c, d, w: DurableClient.connect(hub="no-such-hub"),
        DurableError,
        None,
    ),
]


def check_typed(error: BaseException, expected: type, also: type | None) -> None:
    """Typed, also its built-in class, readable, and the same once it crossed a process."""
    assert isinstance(error, DurableError), f"{type(error).__name__}: {error}"
    assert isinstance(error, expected), f"{type(error).__name__}: {error}"
    assert also is None or isinstance(error, also)
    text = str(error)
    assert text and not text.startswith(("(", "<")) and "Traceback" not in text, text
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == text and again.args == error.args


@pytest.mark.parametrize("label, call, expected, also", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_typed_error_and_stores_nothing(hub, label, call, expected, also):
    rt, done, waiting = hub
    before = settled(rt)
    with pytest.raises(BaseException) as caught:
        call(rt.client, done, waiting)
    check_typed(caught.value, expected, also)
    assert stored(rt) == before, label


def test_unsupported_store_is_refused_before_anything_starts():
    start_ray()
    hub = f"mysql-{uuid.uuid4().hex[:6]}"
    with pytest.raises(HubConfigError) as caught:
        Runtime.start(hub=hub, store="mysql://x")
    check_typed(caught.value, HubConfigError, None)
    message = str(caught.value)
    assert "'mysql'" in message and "sqlite:///" in message, message
    with pytest.raises(ValueError):
        ray.get_actor(supervisor_name(hub), namespace=NAMESPACE)  # no supervisor was created


def test_store_the_supervisor_cannot_open_is_a_hub_config_error(tmp_path):
    start_ray()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = f"sqlite:///{blocker}/hub.db"  # its folder is a file
    with pytest.raises(HubConfigError) as caught:
        Runtime.start(hub=f"nodir-{uuid.uuid4().hex[:6]}", store=store)
    check_typed(caught.value, HubConfigError, None)
    assert store in str(caught.value) and "Error" in str(caught.value), str(caught.value)


def test_entity_whose_host_keeps_dying_raises_entity_unavailable(hub, monkeypatch):
    rt, _, _ = hub
    monkeypatch.setattr(runtime.driver.client, "RECONNECT_SECONDS", 3.0)
    started = time.monotonic()
    with pytest.raises(EntityUnavailableError) as caught:
        rt.client.call_entity("Poison@p", "die")
    check_typed(caught.value, EntityUnavailableError, None)
    assert "Poison@p" in str(caught.value) and "3 s" in str(caught.value)
    with pytest.raises(EntityUnavailableError):
        rt.client.signal_entity("Poison@q", "die", wait=False).result(timeout=120)
    assert time.monotonic() - started < 120
    assert rt.client.call_entity("Counter@keep", "get") == 5  # the rest of the hub is fine


@ray.remote(num_cpus=0)
class _Gone:
    """Stands in for a supervisor that died for good."""

    def get_status(self, instance_id: str, show_history: bool) -> None:
        pass


def test_hub_whose_supervisor_stays_gone_raises_hub_unavailable(monkeypatch):
    start_ray()
    handle = _Gone.remote()
    ray.get(handle.get_status.remote("x", False))
    ray.kill(handle, no_restart=True)
    # ray.kill is asynchronous: a call sent right after it may still be served.
    with pytest.raises(ray.exceptions.RayActorError):
        for _ in range(100):
            ray.get(handle.get_status.remote("x", False))
            time.sleep(0.1)
    monkeypatch.setattr(runtime.driver.client, "RECONNECT_SECONDS", 1.0)
    client = DurableClient(f"gone-{uuid.uuid4().hex[:6]}", handle)
    with pytest.raises(HubUnavailableError) as caught:
        client.get_status("x")
    check_typed(caught.value, HubUnavailableError, None)
    assert client.hub in str(caught.value)


@orchestrator
def naive_timer(ctx):
    """Gives the orchestration API a bad argument: the instance fails with the typed error."""
    yield ctx.create_timer(NAIVE)


def test_bad_input_to_the_orchestration_api_fails_the_instance_typed(hub):
    rt, _, _ = hub
    state = rt.client.wait_for_completion(rt.client.start_new(naive_timer), timeout=60)
    assert state.runtime_status == "Failed"
    assert state.failure_details.error_type == "InvalidArgumentError", state.failure_details
    assert "create_timer(fire_at)" in state.failure_details.message


def test_supervisor_bug_is_an_internal_error_naming_the_method(hub):
    rt, done, _ = hub
    before = settled(rt)
    with pytest.raises(InternalError) as caught:
        rt.client._call(SupervisorHandle.query, "not a query")  # it reads query.statuses
    check_typed(caught.value, InternalError, None)
    error = caught.value
    text = str(error)
    assert "bug in ray-durable" in text and "'query'" in text and rt.config.hub in text, text
    assert "AttributeError" in text and "statuses" in text, text
    assert error.details.error_type == "AttributeError"
    assert "supervisor.py" in error.details.stack_trace, error.details.stack_trace
    assert isinstance(error.__cause__, ray.exceptions.RayTaskError)
    assert stored(rt) == before
    assert rt.client.get_status(done).runtime_status == "Completed"  # the hub still serves
