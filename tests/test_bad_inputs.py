"""One table of bad inputs for every public entry point, each refused typed, none stored.

Every row gives bad input to one entry point of a running hub: the Python client
(``DurableClient``, the declarations, the test helpers), the orchestration context and the
entity context (through real instances and operations), the HTTP API, the ``durable`` CLI
(in-process) and the configuration (``HubConfig``, YAML files, ``Runtime.start``). Each row
expects a specific typed error (a ``DurableError``; with the built-in class it also is, so
``except ValueError`` code keeps working), a specific 4xx with the API's JSON error body, or
a specific CLI exit status with one readable line. And each checks the store: every row of
every table (listed from the database's own catalogue) is dumped before and after, and must
be the same, except the rows a row says it may add (the failed instance that a bad
orchestration leaves, or the sender bookkeeping of an entity operation that ran and failed).

The table runs on the store ``--store`` picks (SQLite by default, ``--store postgresql`` on the
session's throw-away server). The exhaustive pure cases of the orchestration context are in
tests/test_engine.py (BAD_CALLS) and those of the configuration's keys in tests/test_config.py;
rows here take each entry point through the running hub.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import entity_defs as ed
import patterns
import pytest
import workflows as wf
from helpers import (
    NO_BODY,
    check_typed,
    http_request,
    one_line_error,
    seed_hub,
    settled_store,
    start_ray,
    stop_runtime,
)

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
    EntityOperationFailedError,
    HubConfig,
    HubConfigError,
    InstanceExistsError,
    InstanceNotFoundError,
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
from runtime.driver.cli import main as cli_main
from runtime.driver.http_api import serve_http, stop_http
from runtime.messages import SenderId
from runtime.testing import ManualClock


@dataclass
class Hub:
    """The running hub the table is given, and what it holds before the first row."""

    rt: Runtime
    done: str  # a Completed instance
    waiting: str  # a Running instance that waits for an event forever
    base: str  # the HTTP API's base URL
    files: Path  # a folder for the rows' YAML files

    @property
    def client(self) -> DurableClient:
        return self.rt.client

    @property
    def store(self) -> str:
        return self.rt.config.store


@dataclass(frozen=True)
class Case:
    """One row: ``act(hub)`` gives the bad input and checks the answer it gets."""

    label: str
    act: Callable[[Hub], Any]
    #: rows the act may add, as texts found in them (e.g. the id of the failed instance)
    leaves: Callable[[Hub], tuple[str, ...]] = field(default=lambda h: ())
    #: columns the act may change, per table (bookkeeping, not data)
    volatile: dict[str, tuple[str, ...]] = field(default_factory=dict)


def raises(label: str, call: Callable[[Hub], Any], error: type, also: type | None = None) -> Case:
    """A row whose call must raise ``error`` (typed, readable, picklable)."""

    def act(h: Hub) -> None:
        with pytest.raises(BaseException) as caught:
            call(h)
        check_typed(caught.value, error, also)

    return Case(label, act)


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
CLIENT_CASES = [
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
    # NUL: PostgreSQL's text cannot hold it, so no store takes it
    ("start id NUL", lambda c, d, w: c.start_new(wf.chain, instance_id="\x00"), BAD, ValueError),
    ("start name NUL", lambda c, d, w: c.start_new("ch\x00ain"), BAD, ValueError),
    ("start version NUL", lambda c, d, w: c.start_new("chain", version="1\x00"), BAD, ValueError),
    ("event name NUL", lambda c, d, w: c.raise_event(w, "e\x00"), BAD, ValueError),
    ("status id NUL", lambda c, d, w: c.get_status("a\x00"), BAD, ValueError),
    ("prefix NUL", lambda c, d, w: c.get_status_by(instance_id_prefix="\x00"), BAD, ValueError),
    ("entity key NUL", lambda c, d, w: c.signal_entity("Counter@\x00", "add"), BAD_ID, ValueError),
    ("operation NUL", lambda c, d, w: c.signal_entity("Counter@keep", "add\x00"), BAD, ValueError),
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
    ("terminate ended", lambda c, d, w: c.terminate(d), InvalidOperationError, None),
    ("terminate unknown", lambda c, d, w: c.terminate("nobody"), InstanceNotFoundError, None),
    ("suspend ended", lambda c, d, w: c.suspend(d), InvalidOperationError, None),
    ("restart unknown", lambda c, d, w: c.restart("nobody"), InstanceNotFoundError, None),
    ("sender id without ':'", lambda c, d, w: SenderId.parse("client-1"), BAD, ValueError),
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
    # past a 64-bit integer: the store could not bind them (an InternalError before)
    ("query top 2**64", lambda c, d, w: c.get_status_by(top=2**64), BAD, ValueError),
    ("query skip 2**64", lambda c, d, w: c.get_status_by(skip=2**64), BAD, ValueError),
    ("list page_size 2**64", lambda c, d, w: c.get_entities(page_size=2**64), BAD, ValueError),
    (
        "list token 2**64",
        lambda c, d, w: c.get_entities(continuation_token=2**64),
        BAD,
        ValueError,
    ),
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


def _client(label: str, call: Callable, error: type, also: type | None) -> Case:
    return raises(label, lambda h: call(h.client, h.done, h.waiting), error, also)


# -- the orchestration context, through real instances -----------------------------------


@orchestrator
def naive_timer(ctx, _):
    """Gives the orchestration API a bad argument: the instance fails with the typed error."""
    yield ctx.create_timer(NAIVE)


@orchestrator
def timer_as_text(ctx, _):
    yield ctx.create_timer("tomorrow")


@orchestrator
def retry_policy_as_number(ctx, _):
    yield ctx.call_activity_with_retry("inc", 3, 1)


@orchestrator
def unregistered_activity(ctx, _):
    yield ctx.call_activity("no_such_activity", 1)


@orchestrator
def unregistered_child(ctx, _):
    yield ctx.call_sub_orchestrator("no_such_orchestrator", 1)


@orchestrator
def call_entity_no_at(ctx, _):
    yield ctx.call_entity("no-at", "add", 1)


@orchestrator
def call_unknown_entity_type(ctx, _):
    yield ctx.call_entity("Ghost@1", "add", 1)


@orchestrator
def call_unknown_operation(ctx, _):
    yield ctx.call_entity("Counter@keep", "nope", 1)


@orchestrator
def child_id_nul(ctx, _):
    yield ctx.call_sub_orchestrator("chain", 1, instance_id="c\x00")


@orchestrator
def event_name_nul(ctx, _):
    yield ctx.wait_for_external_event("e\x00")


@orchestrator
def event_timeout_as_number(ctx, _):
    yield ctx.wait_for_external_event("e", 5)


CONTEXT_ORCHESTRATORS = [
    naive_timer,
    timer_as_text,
    retry_policy_as_number,
    unregistered_activity,
    unregistered_child,
    call_entity_no_at,
    call_unknown_entity_type,
    call_unknown_operation,
    event_timeout_as_number,
    child_id_nul,
    event_name_nul,
]


def fails_with(label: str, orch: Any, error: str, text: str) -> Case:
    """A row whose orchestration ends Failed with an ``error`` whose message names ``text``."""
    iid = f"bad-{label.replace(' ', '-')}-{uuid.uuid4().hex[:6]}"

    def act(h: Hub) -> None:
        h.client.start_new(orch, None, instance_id=iid)
        state = h.client.wait_for_completion(iid, timeout=60)
        assert state.runtime_status == "Failed", (label, state)
        details = state.failure_details
        assert details.error_type == error, (label, details)
        assert text in details.message, (label, details)
        assert "Traceback" not in details.message and "RayTaskError" not in details.message

    return Case(label, act, leaves=lambda h: (iid,))


FAILED = "TaskFailedError"
CONTEXT_CASES = [
    fails_with("timer naive", naive_timer, "InvalidArgumentError", "create_timer(fire_at)"),
    fails_with("timer as text", timer_as_text, "ArgumentTypeError", "create_timer(fire_at)"),
    fails_with("retry policy 3", retry_policy_as_number, "ArgumentTypeError", "RetryPolicy"),
    # refused where the call is carried out: the task fails, and the orchestrator could catch it
    fails_with("activity unregistered", unregistered_activity, FAILED, "ActivityNotFoundError"),
    fails_with("child unregistered", unregistered_child, FAILED, "OrchestratorNotFoundError"),
    fails_with("call entity 'no-at'", call_entity_no_at, "InvalidEntityIdError", "no-at"),
    fails_with("call entity type unknown", call_unknown_entity_type, FAILED, "NotRegisteredError"),
    fails_with("call operation unknown", call_unknown_operation, FAILED, "UnknownOperationError"),
    fails_with("event timeout 5", event_timeout_as_number, "ArgumentTypeError", "timeout"),
    fails_with("child id NUL", child_id_nul, "InvalidArgumentError", "instance_id"),
    fails_with("event name NUL", event_name_nul, "InvalidArgumentError", "name"),
]


# -- the entity context, through real operations -------------------------------------------


def operation_fails(label: str, operation: str, input: Any, error: type | str) -> Case:
    """A row whose entity operation fails: the caller gets the typed error the context
    raised (``error`` a class), or the operation's own error (its name) inside an
    EntityOperationFailedError; the entity's state stays as it was."""

    def act(h: Hub) -> None:
        with pytest.raises(DurableError) as caught:
            h.client.call_entity("Counter@keep", operation, input)
        if isinstance(error, type):
            check_typed(caught.value, error, None)
        else:
            check_typed(caught.value, EntityOperationFailedError, None)
            assert caught.value.details.error_type == error, caught.value.details
        assert h.client.call_entity("Counter@keep", "get") == 5

    # The operation ran: the client's sender row records its answer, and the entity's row
    # the time of its last operation (as Durable Functions' lastOperationTime).
    return Case(
        label,
        act,
        leaves=lambda h: (h.client._sender,),
        volatile={"entities": ("last_modified",)},
    )


ENTITY_CONTEXT_CASES = [
    operation_fails("signals 'no-at'", "forward", "no-at", InvalidEntityIdError),
    operation_fails("state unpicklable", "keep_unpicklable", None, SerializationError),
    operation_fails("raises after a change", "add_then_fail", 3, "ValueError"),
    operation_fails("input of a wrong type", "add", "five", "TypeError"),
]


# -- the HTTP API ----------------------------------------------------------------------------

JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}
HUGE = "9" * 20  # past any 64-bit integer


def http(
    label: str,
    method: str,
    path: str,
    status: int,
    error_type: str | None = None,
    text: str = "",
    *,
    body: Any = NO_BODY,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Case:
    """A row whose request must answer ``status`` with the API's JSON error body.

    ``path`` may name ``{done}``, ``{waiting}`` and ``{new}`` (an id nothing has).
    """

    def act(h: Hub) -> None:
        url = h.base + path.format(done=h.done, waiting=h.waiting, new=uuid.uuid4().hex)
        got, found, raw = http_request(method, url, body, data=data, headers=headers)
        assert got == status, (label, got, raw)
        assert found["content-type"] == "application/json", (label, found)
        answer = json.loads(raw)
        assert set(answer) == {"Message", "ExceptionMessage", "ExceptionType"}, answer
        assert text in answer["Message"] and "Traceback" not in answer["Message"], answer
        assert error_type is None or answer["ExceptionType"] == error_type, answer

    return Case(f"HTTP {label}", act)


VALIDATION = "ValidationError"
HTTP_CASES = [
    # starting
    http("start malformed JSON", "POST", "orchestrators/chain/{new}", 400, "JsonReaderException",
         "Invalid JSON", data=b"[1, 2", headers=JSON),
    http("start NaN", "POST", "orchestrators/chain/{new}", 400, "JsonReaderException",
         data=b"NaN", headers=JSON),
    http("start not UTF-8", "POST", "orchestrators/chain", 400, "JsonReaderException",
         data=b'"\xff"', headers=JSON),
    http("start deep JSON", "POST", "orchestrators/chain", 400, "JsonReaderException",
         data=b"[" * 100_000, headers=JSON),
    http("start unknown orchestrator", "POST", "orchestrators/no_such_orchestrator/{new}", 400,
         "OrchestratorNotFoundError", "no_such_orchestrator", body=1),
    http("start unknown version", "POST", "orchestrators/chain?version=99", 400,
         "OrchestratorNotFoundError", "99", body=1),
    http("start a live id", "POST", "orchestrators/waiting_child/{waiting}", 409,
         "InstanceExistsError", "already exists"),
    http("start too large", "POST", "orchestrators/chain", 413, None, "limit",
         body="x" * 1_048_576),
    http("start other hub", "POST", "orchestrators/chain?taskHub=another", 404, None,
         "another", body=1),
    # events and lifecycle
    http("event malformed JSON", "POST", "instances/{waiting}/raiseEvent/never", 400,
         "JsonReaderException", data=b"{oops", headers=JSON),
    http("event as text", "POST", "instances/{waiting}/raiseEvent/never", 400, None,
         "application/json", data=b"yes", headers=TEXT),
    http("event to ended", "POST", "instances/{done}/raiseEvent/e", 410, None, "Completed",
         body=1),
    http("event to unknown", "POST", "instances/{new}/raiseEvent/e", 404, None,
         "no orchestration instance", body=1),
    http("terminate unknown", "POST", "instances/{new}/terminate", 404),
    http("terminate ended", "POST", "instances/{done}/terminate?reason=x", 410),
    http("suspend ended", "POST", "instances/{done}/suspend", 410),
    http("unknown operation", "POST", "instances/{done}/explode", 404, None, "explode"),
    http("rewind running", "POST", "instances/{waiting}/rewind", 412, None, "not Failed"),
    http("restart unknown", "POST", "instances/{new}/restart", 404),
    http("restart live same id", "POST",
         "instances/{waiting}/restart?restartWithNewInstanceId=false", 409),
    http("restart flag 'maybe'", "POST",
         "instances/{done}/restart?restartWithNewInstanceId=maybe", 400, VALIDATION,
         "query parameter restartWithNewInstanceId"),
    http("purge running", "DELETE", "instances/{waiting}", 412, None, "terminate it"),
    http("purge unknown", "DELETE", "instances/{new}", 404),
    http("purge by no from", "DELETE", "instances?instanceIdPrefix=x", 400, None,
         "createdTimeFrom"),
    http("purge by bad from", "DELETE", "instances?createdTimeFrom=yesterday", 400, None,
         "createdTimeFrom"),
    http("purge by bad status", "DELETE",
         "instances?createdTimeFrom=2000-01-01&runtimeStatus=Done", 400, None, "Done"),
    # queries
    http("status flag '1'", "GET", "instances/{done}?showHistory=1", 400, VALIDATION,
         "query parameter showHistory"),
    http("status of unknown", "GET", "instances/{new}", 404, None, "no orchestration instance"),
    http("query top 0", "GET", "instances?top=0", 400, VALIDATION, "query parameter top"),
    http("query top 'ten'", "GET", "instances?top=ten", 400, VALIDATION, "query parameter top"),
    http("query top huge", "GET", f"instances?top={HUGE}", 400, VALIDATION,
         "query parameter top"),
    http("query status Bogus", "GET", "instances?runtimeStatus=Completed,Bogus", 400, None,
         "Bogus"),
    http("query bad time", "GET", "instances?createdTimeTo=2020-13-45", 400, None,
         "createdTimeTo"),
    http("query token 'abc'", "GET", "instances", 400, None, "x-ms-continuation-token",
         headers={"x-ms-continuation-token": "abc"}),
    http("query token huge", "GET", "instances", 400, None, "x-ms-continuation-token",
         headers={"x-ms-continuation-token": HUGE}),
    http("query other hub", "GET", "instances?taskHub=another", 404, None, "another"),
    http("unknown route", "GET", "nowhere", 404),
    # NUL: PostgreSQL's text cannot hold it (a 500 there), so no store takes it
    http("status id NUL", "GET", "instances/a%00", 400, "InvalidArgumentError", "NUL"),
    http("start id NUL", "POST", "orchestrators/chain/a%00", 400, "InvalidArgumentError", body=1),
    http("query prefix NUL", "GET", "instances?instanceIdPrefix=%00", 400,
         "InvalidArgumentError"),
    http("event name NUL", "POST", "instances/{waiting}/raiseEvent/e%00", 400,
         "InvalidArgumentError", body=1),
    http("signal key NUL", "POST", "entities/Counter/%00?op=add", 400, "InvalidEntityIdError",
         body=1),
    http("read key NUL", "GET", "entities/Counter/%00", 400, "InvalidEntityIdError"),
    http("wrong method", "PUT", "instances", 405, body=1),
    # entities
    http("signal no op", "POST", "entities/Counter/keep", 400, VALIDATION,
         "query parameter op", body=1),
    http("signal op ''", "POST", "entities/Counter/keep?op=", 400, VALIDATION,
         "query parameter op", body=1),
    http("signal unknown op", "POST", "entities/Counter/keep?op=nope", 400,
         "UnknownOperationError", "no operation 'nope'", body=1),
    http("signal private op", "POST", "entities/Counter/keep?op=_x", 400,
         "UnknownOperationError", body=1),
    http("signal malformed JSON", "POST", "entities/Counter/keep?op=add", 400,
         "JsonReaderException", data=b"{bad", headers=JSON),
    http("signal text not UTF-8", "POST", "entities/Counter/keep?op=add", 400, None,
         "UTF-8", data=b"\xff", headers=TEXT),
    http("signal unknown type", "POST", "entities/Ghost/k?op=add", 400, "NotRegisteredError",
         "Ghost", body=1),
    http("signal name with @", "POST", "entities/Co@unter/k?op=add", 400,
         "InvalidEntityIdError", body=1),
    http("delete unknown type", "DELETE", "entities/Ghost/k", 400, "NotRegisteredError"),
    http("read never stored", "GET", "entities/Counter/never", 404, None, "no state"),
    http("list top 0", "GET", "entities?top=0", 400, VALIDATION, "query parameter top"),
    http("list fetchState 'maybe'", "GET", "entities/Counter?fetchState=maybe", 400,
         VALIDATION, "query parameter fetchState"),
    http("list token huge", "GET", "entities", 400, None, "x-ms-continuation-token",
         headers={"x-ms-continuation-token": HUGE}),
]  # fmt: skip


# -- the CLI (in-process, on the session's Ray) ---------------------------------------------


def cli(label: str, argv: list[str], code: int, text: str) -> Case:
    """A row whose ``durable`` command must exit ``code`` with one line naming ``text``.

    Arguments may name ``{hub}``, ``{done}``, ``{waiting}`` and ``{files}`` (the YAML folder).
    """

    def act(h: Hub) -> None:
        names = {"hub": h.rt.config.hub, "done": h.done, "waiting": h.waiting, "files": h.files}
        args = [a.format(**names) for a in argv]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            got = cli_main(args)
        assert got == code, (label, got, out.getvalue(), err.getvalue())
        one_line_error(err.getvalue(), text)

    return Case(f"CLI {label}", act)


H = ["--hub", "{hub}"]
CLI_CASES = [
    cli("no command", [], 2, "required: COMMAND"),
    cli("unknown command", ["explode"], 2, "invalid choice: 'explode'"),
    cli("status without id", ["status"], 2, "the following arguments are required: ID"),
    cli("list top 'x'", [*H, "list", "--top", "x"], 2, "invalid int value: 'x'"),
    cli("list top -1", [*H, "list", "--top", "-1"], 1, "top"),
    cli("list bad status", [*H, "list", "--status", "Done"], 1, "--status: unknown status"),
    cli("list bad time", [*H, "list", "--from", "noon"], 1, "--from: expected an ISO 8601"),
    cli("unknown hub", ["--hub", "no-such-hub", "status", "x"], 1, "no running task hub"),
    cli("status unknown", [*H, "status", "nobody"], 1, "no orchestration instance"),
    cli("start bad JSON", [*H, "start", "chain", "--input", "[five"], 1, "--input is not"),
    cli("start unknown", [*H, "start", "no_such_orchestrator"], 1, "no orchestrator named"),
    cli("start live id", [*H, "start", "waiting_child", "--id", "{waiting}"], 1, "exists"),
    cli("start id ''", [*H, "start", "chain", "--id", ""], 1, "instance_id"),
    cli("raise to ended", [*H, "raise", "{done}", "Go"], 1, "it takes no more messages"),
    cli("raise to unknown", [*H, "raise", "nobody", "Go"], 1, "no orchestration instance"),
    cli("raise bad JSON", [*H, "raise", "{waiting}", "e", "--data", "[1"], 1, "--data is not"),
    cli("terminate unknown", [*H, "terminate", "nobody"], 1, "no orchestration instance"),
    cli("suspend ended", [*H, "suspend", "{done}"], 1, "Completed"),
    cli("purge running", [*H, "purge", "{waiting}"], 1, "can be purged"),
    cli("purge nothing named", [*H, "purge"], 1, "give an instance id, or at least one"),
    cli("purge bad status", [*H, "purge", "--status", "Done"], 1, "unknown status 'Done'"),
    cli("purge bad time", [*H, "purge", "--from", "yesterday"], 1, "--from: expected"),
    cli("signal bad id", [*H, "signal", "no-key", "add"], 1, "invalid entity id 'no-key'"),
    cli("signal unknown op", [*H, "signal", "Counter@keep", "nope"], 1, "no operation 'nope'"),
    cli("signal unknown type", [*H, "signal", "Ghost@1", "add"], 1, "Ghost"),
    cli("signal bad JSON", [*H, "signal", "Counter@keep", "add", "--input", "x"], 1, "--input"),
    cli("entity bad id", [*H, "entity", "no-key"], 1, "invalid entity id"),
    cli("watch unknown", [*H, "watch", "nobody"], 1, "no orchestration instance"),
    # were taken as 0.05 s (and a negative timeout gave up at once, naming no option)
    cli("watch interval -1", [*H, "watch", "{waiting}", "--interval", "-1"], 2, "--interval"),
    cli("watch interval 0", [*H, "watch", "{waiting}", "--interval", "0"], 2, "--interval"),
    cli("watch interval inf", [*H, "watch", "{waiting}", "--interval", "inf"], 2, "--interval"),
    cli("watch timeout -1", [*H, "watch", "{waiting}", "--timeout", "-1"], 2, "--timeout"),
    cli("watch timeout 'x'", [*H, "watch", "{waiting}", "--timeout", "x"], 2, "--timeout"),
    cli("config missing", ["--config", "{files}/missing.yaml", "list"], 1, "not found"),
    cli("config bad YAML", ["--config", "{files}/broken.yaml", "list"], 1, "not valid YAML"),
    cli("config unknown key", ["--config", "{files}/colour.yaml", "list"], 1, "colour"),
    cli("config bad value", ["--config", "{files}/port.yaml", "config"], 1, "http.port"),
]


# -- the configuration -----------------------------------------------------------------------

YAML_FILES = {
    "broken.yaml": "hub: a\nport: 1: 2\n",
    "colour.yaml": "colour: blue\n",
    "port.yaml": "http:\n  port: x\n",
    "list.yaml": "- hub\n",
    "retry.yaml": "activity_defaults:\n  retry: {max_number_of_attempts: 2}\n",
}


def _yaml(h: Hub, name: str) -> str:
    return str(h.files / name)


def _start_on_the_hubs_store(h: Hub, **settings: Any) -> None:
    """Runtime.start with bad settings, on the very store of the running hub."""
    Runtime.start(f"bad-{uuid.uuid4().hex[:6]}", store=h.store, **settings)


CONFIG_CASES = [
    raises("YAML syntax", lambda h: HubConfig.from_yaml(_yaml(h, "broken.yaml")), HubConfigError),
    raises("YAML list", lambda h: HubConfig.from_yaml(_yaml(h, "list.yaml")), HubConfigError),
    raises("YAML unknown key", lambda h: HubConfig.from_yaml(_yaml(h, "colour.yaml")),
           HubConfigError),
    raises("YAML bad value", lambda h: HubConfig.from_yaml(_yaml(h, "port.yaml")),
           HubConfigError),
    raises("YAML retry incomplete", lambda h: HubConfig.from_yaml(_yaml(h, "retry.yaml")),
           HubConfigError),
    raises("YAML missing", lambda h: HubConfig.from_yaml(_yaml(h, "none.yaml")), HubConfigError),
    raises("dict unknown key", lambda h: HubConfig.from_dict({"pool_sise": 4}), HubConfigError),
    raises("start placement 'x'", lambda h: _start_on_the_hubs_store(h, placement="x"),
           HubConfigError),
    raises("start unknown key", lambda h: _start_on_the_hubs_store(h, colour="blue"),
           HubConfigError),
    raises("start bad YAML", lambda h: _start_on_the_hubs_store(h, config=_yaml(h, "port.yaml")),
           HubConfigError),
    raises("start http port 'x'", lambda h: _start_on_the_hubs_store(h, http={"port": "x"}),
           HubConfigError),
    raises("start the running hub's store with payload limit 1",
           lambda h: _start_on_the_hubs_store(h, payload_inline_limit=1), HubConfigError),
]  # fmt: skip


# -- the table -------------------------------------------------------------------------------


def _kind(kind: str, cases: list[Case]) -> list[Case]:
    return [dataclasses.replace(c, label=f"{kind}: {c.label}") for c in cases]


CASES = [
    *_kind("client", [_client(*row) for row in CLIENT_CASES]),
    *_kind("orchestration", CONTEXT_CASES),
    *_kind("entity", ENTITY_CONTEXT_CASES),
    *HTTP_CASES,
    *CLI_CASES,
    *_kind("config", CONFIG_CASES),
]


@pytest.fixture(scope="module")
def hub(request, tmp_path_factory):
    """A hub on the store ``--store`` picks, holding an ended and a waiting instance and two
    entities with state, and its HTTP API."""
    start_ray()
    files = tmp_path_factory.mktemp("bad-inputs")
    for name, text in YAML_FILES.items():
        (files / name).write_text(text)
    if request.config.getoption("--store") == "postgresql":
        store = request.getfixturevalue("postgres").database()
    else:
        store = f"sqlite:///{files / 'hub.db'}"
    rt = Runtime.start(
        hub=f"bad-{uuid.uuid4().hex[:6]}",
        store=store,
        placement="pooled",
        pool_size=2,
        register=wf.ALL + patterns.ALL + ed.ALL + CONTEXT_ORCHESTRATORS,
    )
    done, waiting = seed_hub(rt.client)
    base = serve_http(rt.client, port=0)
    yield Hub(rt, done, waiting, base, files)
    stop_http()
    stop_runtime(rt)


def without(dump: dict[str, list[tuple]], marks: tuple[str, ...]) -> dict[str, list[tuple]]:
    """The dump less the rows in which a text value contains one of ``marks``."""

    def marked(row: tuple) -> bool:
        return any(isinstance(v, str) and any(m in v for m in marks) for v in row)

    return {table: [r for r in rows if not marked(r)] for table, rows in dump.items()}


def test_the_labels_are_unique():
    labels = [c.label for c in CASES]
    assert len(labels) == len(set(labels)), [x for x in labels if labels.count(x) > 1]


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_bad_input_is_refused_typed_and_changes_no_stored_row(hub, case):
    before = settled_store(hub.store, case.volatile)
    case.act(hub)
    marks = case.leaves(hub)
    after = settled_store(hub.store, case.volatile)
    assert without(after, marks) == without(before, marks), case.label
